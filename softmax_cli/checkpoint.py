"""The checkpoint format: the one place that writes, reads and validates checkpoint files.

A checkpoint is a plain dict saved with torch.save and read back with
torch.load(weights_only=True, map_location="cpu"): only tensors and plain types
(str, int, float, bool, None, list, dict), so loading a file from somebody else can
never run code. Both implementations store the weight in ONE canonical layout:

    logits = X.reshape(-1, 784) @ weight + bias      weight: 784 x 10, bias: 10

which is the book's from-scratch layout; nn.Linear keeps weight.T (10 x 784).

Keys (version 1):
    format, version, impl, weight, bias, class_names, hparams, epoch, history, seed,
    optimizer_state (dict or None), rng_state ({"shuffle": uint8 tensor}),
    input_standardization (None or {"mean": 784, "std": 784}), torch_version, created

load_checkpoint checks everything eval and resume rely on (types, shapes, float32,
finite values, known hparams choices, an optimizer state that fits the impl), so a
damaged or foreign file is one CheckpointError line, never a traceback later on.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import warnings
from dataclasses import MISSING, fields
from datetime import datetime, timezone
from pathlib import Path

import torch

from softmax_cli.atomic import atomic_write
from softmax_cli.config import IMPLS, LOADERS, PRESETS, SCHEDULES, Hparams
from softmax_cli.errors import CheckpointError

FORMAT_NAME = "softmax-cli/checkpoint"
FORMAT_VERSION = 1
WEIGHT_SHAPE = (784, 10)
BIAS_SHAPE = (10,)
_REQUIRED_KEYS = (
    "format",
    "version",
    "impl",
    "weight",
    "bias",
    "class_names",
    "hparams",
    "epoch",
    "history",
    "seed",
    "rng_state",
)
_PLAIN_SCALARS = (str, int, float, bool, type(None))


def build_checkpoint(
    *,
    impl: str,
    weight: torch.Tensor,
    bias: torch.Tensor,
    class_names: list[str],
    hparams: dict,
    epoch: int,
    history: list[dict],
    seed: int,
    optimizer_state: dict | None,
    rng_state: dict[str, torch.Tensor],
    input_standardization: dict[str, torch.Tensor] | None,
) -> dict:
    """Assemble a checkpoint dict; tensors are detached CPU copies so saving never holds device memory.

    Raises TypeError if anything in it is not a tensor or plain data (a file that
    torch.load(weights_only=True) could not read back must never be written).
    """
    checkpoint = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "impl": impl,
        "weight": weight.detach().to("cpu", torch.float32).clone(),
        "bias": bias.detach().to("cpu", torch.float32).clone(),
        "class_names": list(class_names),
        "hparams": dict(hparams),
        "epoch": int(epoch),
        "history": [dict(entry) for entry in history],
        "seed": int(seed),
        "optimizer_state": optimizer_state,
        "rng_state": {name: state.cpu() for name, state in rng_state.items()},
        "input_standardization": input_standardization,
        "torch_version": str(torch.__version__),  # a TorchVersion object would not load weights-only
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _ensure_plain(checkpoint, "checkpoint")
    return checkpoint


def _ensure_plain(value: object, where: str) -> None:
    """Only tensors, str/int/float/bool/None, and lists and dicts of them (exact types: an Enum,
    numpy scalar or tuple would not load weights-only, or not as the same type)."""
    if isinstance(value, torch.Tensor) or type(value) in _PLAIN_SCALARS:
        return
    if type(value) is list:
        for i, item in enumerate(value):
            _ensure_plain(item, f"{where}[{i}]")
    elif type(value) is dict:
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where} has a key of type {type(key).__name__}; checkpoints hold plain data only")
            _ensure_plain(item, f"{where}[{key!r}]")
    else:
        raise TypeError(f"{where} is a {type(value).__name__}; checkpoints hold tensors and plain data only")


def save_checkpoint(checkpoint: dict, path: Path) -> None:
    """Write atomically (softmax_cli.atomic): a temporary file in the same folder, fsync, then rename over `path`.

    A crash or Ctrl-C mid-write leaves the previous checkpoint untouched and no partial file.
    A folder that cannot be created or written is a CheckpointError naming the path.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as handle:
            torch.save(checkpoint, handle)
    except OSError as exc:
        raise CheckpointError(f"cannot write the checkpoint {path}: {exc.strerror or exc}") from None


def load_checkpoint(path: Path) -> dict:
    """Read and validate a checkpoint; any problem is a CheckpointError with one clear line."""
    raw = _read_weights_only(path)
    _validate(raw, path)
    return raw


def _read_weights_only(path: Path) -> object:
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    if not data:
        raise CheckpointError(f"{path} is empty")
    try:
        with warnings.catch_warnings():
            # e.g. "Detected pickle protocol 4": noise around the one error line
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if refused:
            raise CheckpointError(
                f"{path} was refused: it holds a pickled {refused.group(1)}, not just tensors and plain data, "
                "and could run code when loaded; it was not made by softmax-cli"
            ) from None
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt, truncated or not a torch file)") from None
    # torch.load reports corrupt, truncated or foreign bytes through many exception types
    # (RuntimeError, EOFError, KeyError, zipfile.BadZipFile, ValueError, MemoryError, ...)
    except Exception:
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt, truncated or not a torch file)") from None


def _validate(raw: object, path: Path) -> None:
    """Everything eval and resume rely on, so a damaged or foreign file fails here with one line."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
        kind = type(raw).__name__
        raise CheckpointError(
            f"{path} is a torch file but not a softmax-cli checkpoint (it holds a {kind}); "
            "train one with `softmax train`"
        )
    version = raw.get("version")
    if not _is_int(version) or version < 1:
        raise CheckpointError(f"{path}: checkpoint version is missing or not a positive integer")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses checkpoint format version {version}, newer than the {FORMAT_VERSION} this "
            "softmax-cli reads; upgrade softmax-cli"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in raw]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    if raw["impl"] not in IMPLS:
        raise CheckpointError(f"{path}: unknown impl {raw['impl']!r} (expected one of {', '.join(IMPLS)})")
    weight = raw["weight"]
    if isinstance(weight, torch.Tensor) and tuple(weight.shape) == WEIGHT_SHAPE[::-1]:
        raise CheckpointError(
            f"{path}: weight has shape {tuple(weight.shape)}, nn.Linear's layout; checkpoints store the "
            f"{WEIGHT_SHAPE[0]} x {WEIGHT_SHAPE[1]} transpose"
        )
    _check_tensor(weight, "weight", WEIGHT_SHAPE, path)
    _check_tensor(raw["bias"], "bias", BIAS_SHAPE, path)
    names = raw["class_names"]
    if not (isinstance(names, list) and len(names) == BIAS_SHAPE[0] and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{path}: class_names must be a list of 10 strings")
    _check_hparams(raw["hparams"], raw["impl"], path)
    history = raw["history"]
    if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
        raise CheckpointError(f"{path}: history must be a list of per-epoch dicts")
    if not _is_int(raw["epoch"]) or raw["epoch"] < 0:
        raise CheckpointError(f"{path}: epoch must be a non-negative integer")
    if not _is_int(raw["seed"]):
        raise CheckpointError(f"{path}: seed must be an integer")
    rng = raw["rng_state"]
    if not (
        isinstance(rng, dict)
        and isinstance(rng.get("shuffle"), torch.Tensor)
        and rng["shuffle"].dtype == torch.uint8
        and rng["shuffle"].dim() == 1
    ):
        raise CheckpointError(f"{path}: rng_state must hold the shuffle generator's state as a uint8 tensor")
    _check_optimizer_state(raw.get("optimizer_state"), raw["impl"], path)
    stats = raw.get("input_standardization")
    if stats is not None:
        if not isinstance(stats, dict):
            raise CheckpointError(f"{path}: input_standardization must be a dict of mean and std")
        _check_tensor(stats.get("mean"), "input_standardization.mean", (WEIGHT_SHAPE[0],), path)
        _check_tensor(stats.get("std"), "input_standardization.std", (WEIGHT_SHAPE[0],), path)
        if not bool((stats["std"] > 0).all()):
            raise CheckpointError(f"{path}: input_standardization.std must be positive")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Values a stored hparam must take; fields not listed are checked by the type of their default.
_CHOICES = {"impl": IMPLS, "loader": LOADERS, "schedule": SCHEDULES, "preset": tuple(PRESETS)}
_RANGES = {
    "epochs": lambda v: v >= 1,
    "batch_size": lambda v: v >= 1,
    "lr": lambda v: v > 0,
    "momentum": lambda v: v >= 0,
    "weight_decay": lambda v: v >= 0,
    "val_split": lambda v: 0 <= v < 1,
}


def _check_hparams(hparams: object, impl: str, path: Path) -> None:
    """The stored settings must rebuild a valid Hparams: right types, known choices, sane ranges.

    Keys this version does not know are ignored (Hparams.from_dict drops them), and a
    missing key takes Hparams' default, as for a checkpoint from an older softmax-cli.
    """
    if not isinstance(hparams, dict):
        raise CheckpointError(f"{path}: hparams must be a dict")
    for spec in fields(Hparams):
        if spec.name not in hparams or spec.default is MISSING or spec.default is None:
            continue
        value = hparams[spec.name]
        expected = type(spec.default)
        if expected is bool:
            ok = isinstance(value, bool)
        elif expected is int:
            ok = _is_int(value)
        elif expected is float:
            ok = _is_number(value)
        else:
            ok = isinstance(value, expected)
        if ok and spec.name in _CHOICES:
            ok = value in _CHOICES[spec.name]
        if ok and spec.name in _RANGES:
            ok = _RANGES[spec.name](value)
        if not ok:
            raise CheckpointError(f"{path}: hparams {spec.name} has an invalid value {value!r}")
    if "impl" in hparams and hparams["impl"] != impl:
        raise CheckpointError(f"{path}: hparams impl {hparams['impl']!r} contradicts the checkpoint's impl {impl!r}")


def _check_optimizer_state(state: object, impl: str, path: Path) -> None:
    """None, or the state this impl's load_optimizer_state accepts (momentum buffers of the right shapes)."""
    if state is None:
        return
    bad = f"{path}: optimizer_state does not fit the {impl} implementation"
    if not isinstance(state, dict):
        raise CheckpointError(bad)
    if impl == "scratch":
        buffers = state.get("momentum_buffers")
        if not (isinstance(buffers, list) and len(buffers) == 2):
            raise CheckpointError(bad)
        for buffer, name, shape in zip(buffers, ("weight", "bias"), (WEIGHT_SHAPE, BIAS_SHAPE), strict=True):
            if buffer is not None:
                _check_tensor(buffer, f"optimizer_state momentum buffer of the {name}", shape, path)
        return
    # concise: torch.optim.SGD.state_dict() of nn.Linear(784, 10)'s [weight, bias]
    groups, per_param = state.get("param_groups"), state.get("state")
    if not (
        isinstance(groups, list)
        and len(groups) == 1
        and isinstance(groups[0], dict)
        and groups[0].get("params") == [0, 1]
        and isinstance(per_param, dict)
        and set(per_param) <= {0, 1}
        and all(isinstance(v, dict) for v in per_param.values())
    ):
        raise CheckpointError(bad)
    for index, name, shape in ((0, "weight", WEIGHT_SHAPE[::-1]), (1, "bias", BIAS_SHAPE)):
        buffer = per_param.get(index, {}).get("momentum_buffer")
        if buffer is not None:
            _check_tensor(buffer, f"optimizer_state momentum buffer of the {name}", shape, path)


def _check_tensor(value: object, name: str, shape: tuple[int, ...], path: Path) -> None:
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{path}: {name} is not a tensor")
    if tuple(value.shape) != shape:
        raise CheckpointError(f"{path}: {name} has shape {tuple(value.shape)}, expected {shape}")
    if value.dtype != torch.float32:
        raise CheckpointError(f"{path}: {name} has dtype {value.dtype}, expected torch.float32")
    if not bool(torch.isfinite(value).all()):
        raise CheckpointError(f"{path}: {name} holds NaN or infinite values")
