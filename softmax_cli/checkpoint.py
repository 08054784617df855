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
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import torch

from softmax_cli.config import IMPLS
from softmax_cli.errors import CheckpointError

FORMAT_NAME = "softmax-cli/checkpoint"
FORMAT_VERSION = 1
WEIGHT_SHAPE = (784, 10)
BIAS_SHAPE = (10,)
_REQUIRED_KEYS = (
    "format", "version", "impl", "weight", "bias", "class_names", "hparams", "epoch", "history", "seed",
)


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
    """Assemble a checkpoint dict; tensors are detached CPU copies so saving never holds device memory."""
    return {
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


def save_checkpoint(checkpoint: dict, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, fsync, then rename over `path`.

    A crash or Ctrl-C mid-write leaves the previous checkpoint untouched and no partial file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


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
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise CheckpointError(
                f"{path} was refused: it holds objects other than tensors and plain data, "
                "which could run code when loaded; it was not made by softmax-cli"
            ) from None
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated)") from None
    # torch.load reports corrupt, truncated or foreign bytes through many exception types
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, AttributeError, IndexError,
            KeyError, TypeError, UnicodeDecodeError, OverflowError, MemoryError):
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated)") from None


def _validate(raw: object, path: Path) -> None:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
        kind = type(raw).__name__
        raise CheckpointError(
            f"{path} is a torch file but not a softmax-cli checkpoint (it holds a {kind}); "
            "train one with `softmax train`"
        )
    version = raw.get("version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: checkpoint version is missing or not an integer")
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
    _check_tensor(raw["weight"], "weight", WEIGHT_SHAPE, path)
    _check_tensor(raw["bias"], "bias", BIAS_SHAPE, path)
    names = raw["class_names"]
    if not (isinstance(names, list) and len(names) == BIAS_SHAPE[0] and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{path}: class_names must be a list of 10 strings")
    if not isinstance(raw["hparams"], dict) or not isinstance(raw["history"], list):
        raise CheckpointError(f"{path}: hparams must be a dict and history a list")
    if not isinstance(raw["epoch"], int) or raw["epoch"] < 0:
        raise CheckpointError(f"{path}: epoch must be a non-negative integer")
    stats = raw.get("input_standardization")
    if stats is not None:
        if not isinstance(stats, dict):
            raise CheckpointError(f"{path}: input_standardization must be a dict of mean and std")
        _check_tensor(stats.get("mean"), "input_standardization.mean", (WEIGHT_SHAPE[0],), path)
        _check_tensor(stats.get("std"), "input_standardization.std", (WEIGHT_SHAPE[0],), path)
        if not bool((stats["std"] > 0).all()):
            raise CheckpointError(f"{path}: input_standardization.std must be positive")


def _check_tensor(value: object, name: str, shape: tuple[int, ...], path: Path) -> None:
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{path}: {name} is not a tensor")
    if tuple(value.shape) != shape:
        raise CheckpointError(f"{path}: {name} has shape {tuple(value.shape)}, expected {shape}")
    if value.dtype != torch.float32:
        raise CheckpointError(f"{path}: {name} has dtype {value.dtype}, expected torch.float32")
    if not bool(torch.isfinite(value).all()):
        raise CheckpointError(f"{path}: {name} holds NaN or infinite values")
