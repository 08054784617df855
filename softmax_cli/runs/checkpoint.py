"""Checkpoint files: the one place that writes, reads and claims them (the format is checkpoint_format's).

A checkpoint is a plain dict saved with torch.save and read back with
torch.load(weights_only=True, map_location="cpu"): only tensors and plain types
(str, int, float, bool, None, list, dict), so loading a file from somebody else can
never run code. Before torch.load sees a file, it must be a regular file (a FIFO would
block, /dev/zero never end) of at most MAX_CHECKPOINT_BYTES, and a zip archive (what
torch.save writes) whose entries declare no more than that in all, so neither a huge
file nor a zip bomb is ever unpacked. check_checkpoint_file makes the first of these checks
(a regular file, with stat alone, in the same words) and, as torch is imported only inside
the functions that read or write, commands run it before they import torch. Writes are
atomic (softmax_cli.atomic), and a
training run claims its checkpoint path first (claim_checkpoint_path): it never
replaces a file that is not a checkpoint, and two runs never write the same one.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from softmax_cli import files
from softmax_cli.atomic import atomic_write
from softmax_cli.errors import CheckpointError, CheckpointInUse, UsageError
from softmax_cli.runs.format import BIAS_SHAPE, FORMAT_NAME, FORMAT_VERSION, WEIGHT_SHAPE, validate

if TYPE_CHECKING:
    import torch

__all__ = [
    "BIAS_SHAPE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_CHECKPOINT_BYTES",
    "WEIGHT_SHAPE",
    "build_checkpoint",
    "check_checkpoint_file",
    "claim_checkpoint_path",
    "is_checkpoint_file",
    "load_checkpoint",
    "save_checkpoint",
]

# A checkpoint of this 784 x 10 model is at most about 80 KB (weight, bias, momentum buffers,
# input statistics, the batch-order generator's 5 KB state; measured) plus about 90 bytes of
# history per epoch, so 16 MiB holds some 180,000 epochs, and still refuses /dev/zero, a
# 100 GB file or a zip bomb before a byte of it is unpacked. It bounds the pickle too, whose
# objects take at most some 30 times its size in memory.
MAX_CHECKPOINT_BYTES = 16 * 2**20
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
    import torch

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
    import torch

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
    import torch

    # Serialized in memory first (about 80 kB): torch.save straight into the file reports a full
    # disk as a RuntimeError from its zip writer ("unexpected pos"), where a plain write says ENOSPC.
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as handle:
            handle.write(buffer.getbuffer())
    except OSError as exc:
        raise CheckpointError(f"cannot write the checkpoint {path}: {exc.strerror or exc}") from None


def load_checkpoint(path: Path) -> dict:
    """Read and validate a checkpoint; any problem is a CheckpointError with one clear line.

    The tensors of the returned dict are fresh, dense, contiguous float32 copies, whatever
    layout the file gave them, so nothing downstream meets a view it cannot write to.
    """
    raw = _read_weights_only(path)
    validate(raw, path)
    return raw


def is_checkpoint_file(path: Path) -> bool:
    """Whether path holds a file this tool wrote (its format name), damaged or not: what a run may replace."""
    try:
        raw = _read_weights_only(path)
    except CheckpointError:
        return False
    return isinstance(raw, dict) and raw.get("format") == FORMAT_NAME


def check_checkpoint_file(path: Path) -> None:
    """Refuse, in one CheckpointError line, a path that cannot be a checkpoint file: missing, a
    dangling symbolic link or a loop of them, a directory, a FIFO or device, unreadable.

    Looks with stat alone and needs no torch, so a command can call it before importing
    torch; load_checkpoint makes the same checks, worded the same, through _refusals.
    """
    with _refusals(path):
        files.check_regular_file(path)


def _read_file(path: Path) -> bytes:
    """The file's bytes, refusing before reading whatever no checkpoint can be (see softmax_cli.files)."""
    with _refusals(path):
        return files.read_bounded(path, MAX_CHECKPOINT_BYTES)


@contextmanager
def _refusals(path: Path) -> Iterator[None]:
    """The one wording of why `path` is not a file a checkpoint can be read from (files' errors as CheckpointError)."""
    try:
        yield
    except files.NotARegularFile as exc:
        if exc.kind == "directory":
            raise CheckpointError(f"{path} is a directory, not a checkpoint file") from None
        raise CheckpointError(f"{path} is a {exc.kind}, not a checkpoint file; only regular files are read") from None
    except files.TooLarge as exc:
        raise CheckpointError(
            f"{path} is {exc.size:,} bytes, far more than any softmax-cli checkpoint "
            f"(at most {MAX_CHECKPOINT_BYTES // 2**20} MiB); refused without reading it"
        ) from None
    except FileNotFoundError:
        if os.path.islink(path):
            raise CheckpointError(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist") from None
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CheckpointError(f"{path} is a symbolic link loop, not a checkpoint file") from None
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read_weights_only(path: Path) -> object:
    import torch

    data = _read_file(path)
    if not data:
        raise CheckpointError(f"{path} is empty")
    _check_archive(data, path)
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


def _check_archive(data: bytes, path: Path) -> None:
    """torch.save writes a zip archive; its entries' declared sizes must fit a checkpoint before torch.load.

    torch.load allocates each entry at its declared size and inflates compressed ones, so a
    small crafted file could make it take gigabytes; the central directory tells the sizes
    without unpacking anything. torch's older non-zip format is refused too: this tool never
    wrote it, and it allocates storages at sizes the pickle declares.
    """
    unreadable = CheckpointError(f"{path} is not a readable checkpoint (corrupt, truncated or not a torch file)")
    if not data.startswith(b"PK\x03\x04"):
        raise unreadable
    try:
        entries = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, NotImplementedError):
        raise unreadable from None
    unpacked = sum(entry.file_size for entry in entries)
    if unpacked > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"{path} would unpack to {unpacked:,} bytes, far more than any softmax-cli checkpoint "
            f"(at most {MAX_CHECKPOINT_BYTES // 2**20} MiB); refused before loading it"
        )


@contextmanager
def claim_checkpoint_path(path: Path, *, overwrite: bool = False) -> Iterator[None]:
    """Make `path` this run's checkpoint for the block: checked before training, locked while it runs.

    Refused as a usage error (exit 2, before any training): a directory, a FIFO, device or
    other non-regular file, and an existing file that is not a softmax-cli checkpoint,
    unless `overwrite` (which still never replaces a directory or a device). Refused with
    CheckpointInUse: a path another live run holds (the lock names its pid). A folder
    that cannot be created or written is a CheckpointError, found now and not after an epoch.
    """
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory; give a file path such as {path / 'checkpoint.pt'}", "--checkpoint")
    if os.path.exists(path) and not os.path.isfile(path):
        raise UsageError(f"{path} is not a regular file; a checkpoint can only replace a file", "--checkpoint")
    holder = f"softmax train, pid {os.getpid()}, started {datetime.now().astimezone().isoformat(timespec='seconds')}"
    with ExitStack() as stack:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(files.exclusive_lock(path, holder))
        except files.LockHeld as exc:
            raise CheckpointInUse(
                f"{path} is being written by another run ({exc.holder or 'pid unknown'}); "
                "wait for it to end or choose another --checkpoint"
            ) from None
        except OSError as exc:
            raise CheckpointError(f"cannot write the checkpoint {path}: {exc.strerror or exc}") from None
        if os.path.lexists(path) and not overwrite and not is_checkpoint_file(path):
            raise UsageError(
                f"{path} exists and is not a softmax-cli checkpoint; it is left as it is "
                "(choose another --checkpoint, or add --overwrite to replace it)",
                "--checkpoint",
            )
        yield
