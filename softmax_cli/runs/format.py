"""What a softmax-cli checkpoint holds, and the checks that a loaded file holds it.

Keys (version 1):
    format, version, impl, weight, bias, class_names, hparams, epoch, history, seed,
    optimizer_state (dict or None), rng_state ({"shuffle": uint8 tensor}),
    input_standardization (None or {"mean": 784, "std": 784}), torch_version, created

Both implementations store the weight in ONE canonical layout:

    logits = X.reshape(-1, 784) @ weight + bias      weight: 784 x 10, bias: 10

which is the book's from-scratch layout; nn.Linear keeps weight.T (10 x 784).

`validate` checks everything eval and resume rely on (types, shapes, dense float32
tensors with finite values, known hparams choices within config.RANGES, a history of
plain values, an optimizer state whose momentum buffers fit the impl),
so a damaged, foreign or tampered file is one CheckpointError line, never a traceback or a
silently different training later on. softmax_cli.runs.checkpoint reads and writes the files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from softmax_cli.config import IMPLS, RANGES, Hparams, Range, hparam_problem
from softmax_cli.errors import CheckpointError

if TYPE_CHECKING:
    import torch

FORMAT_NAME = "softmax-cli/checkpoint"
FORMAT_VERSION = 1
WEIGHT_SHAPE = (784, 10)
BIAS_SHAPE = (10,)
REQUIRED_KEYS = (
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
# torch.Generator().get_state() is 5,056 bytes on the CPU and 16 on CUDA; anything much larger is not one.
_MAX_RNG_STATE_BYTES = 1 << 16


def validate(raw: object, path: Path) -> None:
    """Everything eval and resume rely on, so a damaged or foreign file fails here with one line.

    Replaces every tensor it checks by a canonical copy (see _check_tensor).
    """
    import torch

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
    missing = [key for key in REQUIRED_KEYS if key not in raw]
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
    raw["weight"] = _check_tensor(weight, "weight", WEIGHT_SHAPE, path)
    raw["bias"] = _check_tensor(raw["bias"], "bias", BIAS_SHAPE, path)
    names = raw["class_names"]
    if not (isinstance(names, list) and len(names) == BIAS_SHAPE[0] and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{path}: class_names must be a list of 10 strings")
    _check_hparams(raw["hparams"], raw["impl"], path)
    _check_history(raw["history"], path)
    if not (_is_int(raw["epoch"]) and raw["epoch"] in _EPOCH_RANGE):
        raise CheckpointError(f"{path}: epoch must be an integer {_EPOCH_RANGE}")
    if not (_is_int(raw["seed"]) and raw["seed"] in RANGES["seed"]):
        raise CheckpointError(f"{path}: seed must be an integer {RANGES['seed']}, not {_short(raw['seed'])}")
    rng = raw["rng_state"]
    shuffle = rng.get("shuffle") if isinstance(rng, dict) else None
    if not (
        _is_dense_cpu_tensor(shuffle)
        and shuffle.dtype == torch.uint8
        and shuffle.dim() == 1
        and 0 < shuffle.numel() <= _MAX_RNG_STATE_BYTES
    ):
        raise CheckpointError(f"{path}: rng_state must hold the shuffle generator's state as a uint8 tensor")
    rng["shuffle"] = shuffle.detach().clone(memory_format=torch.contiguous_format)
    hparams = Hparams.from_checkpoint(raw)
    raw["optimizer_state"] = _check_optimizer_state(raw.get("optimizer_state"), hparams, path)
    stats = raw.get("input_standardization")
    if stats is not None:
        if not isinstance(stats, dict):
            raise CheckpointError(f"{path}: input_standardization must be a dict of mean and std")
        for key in ("mean", "std"):
            stats[key] = _check_tensor(stats.get(key), f"input_standardization.{key}", (WEIGHT_SHAPE[0],), path)
        if not bool((stats["std"] > 0).all()):
            raise CheckpointError(f"{path}: input_standardization.std must be positive")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: object) -> str:
    """repr(value), cut to fit in an error line (a tampered field can hold anything)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# An epoch count torch can hold (TensorBoard steps are int64): the top of the --epochs range.
_EPOCH_RANGE = Range(0, RANGES["epochs"].high)


def _check_hparams(hparams: object, impl: str, path: Path) -> None:
    """The stored settings must rebuild a valid Hparams: config.hparam_problem finds nothing wrong.

    Keys this version does not know are ignored (Hparams.from_dict drops them), and a
    missing key takes Hparams' default, as for a checkpoint from an older softmax-cli.
    """
    if not isinstance(hparams, dict):
        raise CheckpointError(f"{path}: hparams must be a dict")
    problem = hparam_problem(hparams)
    if problem:
        raise CheckpointError(f"{path}: hparams {problem}")
    if "impl" in hparams and hparams["impl"] != impl:
        raise CheckpointError(f"{path}: hparams impl {hparams['impl']!r} contradicts the checkpoint's impl {impl!r}")


def _check_history(history: object, path: Path) -> None:
    """A list of per-epoch dicts of plain values: it is printed as JSON and copied into run summaries."""
    plain = (str, int, float, bool, type(None))
    if not (
        isinstance(history, list)
        and all(
            type(entry) is dict and all(type(k) is str and type(v) in plain for k, v in entry.items())
            for entry in history
        )
    ):
        raise CheckpointError(f"{path}: history must be a list of per-epoch dicts of plain values")


def _check_optimizer_state(state: object, hparams: Hparams, path: Path) -> dict | None:
    """None, or the state this impl's load_optimizer_state accepts; returns it with canonical buffers.

    Only what loading uses is checked: the layout of the state and its momentum buffers
    (tensors of the parameters' shapes). The optimizer's settings (lr, momentum, weight
    decay, dampening, nesterov, ...) are never read from the file: the models rebuild every
    one from the hyperparameters (models.sgd_settings), so a file's param_groups may hold
    any of them, or none, and a resume still trains as its hparams say.
    """
    if state is None:
        return None
    bad = CheckpointError(f"{path}: optimizer_state does not fit the {hparams.impl} implementation")
    if not isinstance(state, dict):
        raise bad
    if hparams.impl == "scratch":
        buffers = state.get("momentum_buffers")
        if not (isinstance(buffers, list) and len(buffers) == 2):
            raise bad
        state["momentum_buffers"] = [
            None
            if buffer is None
            else _check_tensor(buffer, f"optimizer_state momentum buffer of the {name}", shape, path)
            for buffer, name, shape in zip(buffers, ("weight", "bias"), (WEIGHT_SHAPE, BIAS_SHAPE), strict=True)
        ]
        return state
    # concise: torch.optim.SGD.state_dict() of nn.Linear(784, 10)'s [weight, bias]. Of its
    # param_groups only `params` matters: it says which state index is the weight, which the bias.
    groups, per_param = state.get("param_groups"), state.get("state")
    if not (
        isinstance(groups, list)
        and len(groups) == 1
        and isinstance(groups[0], dict)
        and groups[0].get("params") == [0, 1]
        and isinstance(per_param, dict)
        and set(per_param) <= {0, 1}
        and all(isinstance(v, dict) and set(v) <= {"momentum_buffer"} for v in per_param.values())
    ):
        raise bad
    for index, name, shape in ((0, "weight", WEIGHT_SHAPE[::-1]), (1, "bias", BIAS_SHAPE)):
        buffer = per_param.get(index, {}).get("momentum_buffer")
        if buffer is not None:
            per_param[index]["momentum_buffer"] = _check_tensor(
                buffer, f"optimizer_state momentum buffer of the {name}", shape, path
            )
    return state


def _is_dense_cpu_tensor(value: object) -> bool:
    import torch

    return isinstance(value, torch.Tensor) and value.layout == torch.strided and value.device.type == "cpu"


def _check_tensor(value: object, name: str, shape: tuple[int, ...], path: Path) -> torch.Tensor:
    """A float32 tensor of this shape with finite values, returned as a fresh dense contiguous copy.

    Refused before anything reads its values: a sparse, quantized or meta tensor, one of
    another shape (which also bounds the memory a crafted view could claim) or dtype.
    The copy drops whatever the file's layout was (strides, a shared or expanded storage,
    a view of a larger one), so in-place training steps and BLAS never meet it.
    """
    import torch

    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{path}: {name} is not a tensor")
    if value.layout != torch.strided:
        raise CheckpointError(f"{path}: {name} is a {value.layout} tensor; checkpoints hold dense tensors")
    if value.device.type != "cpu":
        raise CheckpointError(f"{path}: {name} is on the {value.device.type} device, which holds no values")
    if tuple(value.shape) != shape:
        raise CheckpointError(f"{path}: {name} has shape {tuple(value.shape)}, expected {shape}")
    if value.dtype != torch.float32:
        raise CheckpointError(f"{path}: {name} has dtype {value.dtype}, expected torch.float32")
    canonical = torch.empty(shape, dtype=torch.float32)
    with torch.no_grad():
        canonical.copy_(value)
    if not bool(torch.isfinite(canonical).all()):
        raise CheckpointError(f"{path}: {name} holds NaN or infinite values")
    return canonical
