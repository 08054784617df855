"""Every check of a data file's content, in one place: the IDX header against the name and
size, labels 0..9, the md5 against the expected one, and why a file is not the official one.

Two entry points, both given the file, the official name whose kind it must have, and the
md5 it must have (None: no md5 check):

* `check_file` reads an uncompressed IDX file to use it and returns it (an IdxFile), or
  raises DataFileRejected naming the file and what is wrong;
* `file_problem` says in one sentence what is wrong with a file (a .gz too), or None: what
  download and repair use to decide what to replace.

Both may be given the verification stamp of the file's folder (softmax_cli.data.verified):
a file whose size and mtime still match its entry was verified before and is not hashed
again; one whose md5 is checked here and found right is recorded in it.

An IDX file is a big-endian header (magic, then one 32-bit count per dimension) followed by
the payload. Fashion-MNIST uses two kinds, told apart by the name:

* images ("idx3"): magic 0x00000803, N, 28, 28, then N * 28 * 28 pixel bytes;
* labels ("idx1"): magic 0x00000801, N, then N label bytes, each a class index 0..9.

Why by hand rather than torchvision's parser: importing torchvision costs about as much as
importing torch, its parser signals a bad file with a bare `assert`, and it reads the whole
file before looking at the header. Here the header is checked against the file's size
*before* the payload is read, so a huge or endless file is refused without reading it, and
every message names the file. softmax_cli.data.batches turns the payload into a tensor with
`torch.frombuffer`, without a copy (the bytes land in a writable buffer that the tensor shares).

Standard library only, never prints. A file that fails a check is DataFileRejected; one that
cannot be opened or read is a DataError saying why.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

from softmax_cli.data import paths
from softmax_cli.data.fashion_mnist import IMAGE_SIDE, NUM_CLASSES, RAW_MD5, SPLIT_FILES, SPLIT_SIZES
from softmax_cli.errors import DataError, DataFileRejected

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
# Far more examples than any split of Fashion-MNIST (60,000): a header announcing more is
# refused before anything is read, so a crafted or runaway file cannot fill the memory.
MAX_EXAMPLES = 1_000_000
CHUNK_BYTES = 1 << 20


class Stamp(Protocol):
    """What was verified in a folder (softmax_cli.data.verified.VerifiedStamp)."""

    def matching(self, name: str, size: int, mtime_ns: int) -> dict | None: ...

    def record(self, name: str, size: int, mtime_ns: int, md5: str) -> None: ...


@dataclass(frozen=True)
class IdxFile:
    """A whole file read into memory: `data` (header included, writable, so torch.frombuffer can share it)."""

    data: bytearray
    header_bytes: int
    count: int
    size: int
    mtime_ns: int

    @property
    def payload(self) -> memoryview:
        return memoryview(self.data)[self.header_bytes :]

    @cached_property
    def md5(self) -> str:
        return hashlib.md5(self.data, usedforsecurity=False).hexdigest()


def check_file(
    path: Path,
    name: str,
    expected_md5: str | None = None,
    *,
    stamp: Stamp | None = None,
    shown: str | None = None,
    count: int | None = None,
) -> IdxFile:
    """Read the uncompressed IDX file at path and check it; DataFileRejected naming it when it fails.

    name: the official name whose kind it must have. expected_md5: the md5 it must have
    (None: any), not computed again when stamp says the file was verified as it is.
    shown: how messages name the file (default: its path), for bytes checked in a temp
    file before they are put in place; their md5 message is then "md5 mismatch for SHOWN".
    count: how many items it must hold (a labels file: as many as its images).
    """
    label = shown or str(path)
    idx_file = _read(path, name, label)
    if not _holds_images(name):
        _check_labels(label, idx_file.payload)
    if count is not None and idx_file.count != count:
        what, partner = ("images", "labels") if _holds_images(name) else ("labels", "images")
        raise DataFileRejected(f"{label} holds {idx_file.count:,} {what} but its {partner} file holds {count:,}")
    trusted = stamp is not None and stamp.matching(name, idx_file.size, idx_file.mtime_ns) is not None
    if expected_md5 is not None and not trusted:
        if idx_file.md5 != expected_md5:
            raise DataFileRejected(_md5_problem(label, name, idx_file.md5, expected_md5, idx_file.count, shown))
        if stamp is not None:
            stamp.record(name, idx_file.size, idx_file.mtime_ns, idx_file.md5)
    return idx_file


def file_problem(
    path: Path, name: str, expected_md5: str | None, *, stamp: Stamp | None = None, shown: str | None = None
) -> str | None:
    """None when the file at path passes check_file's checks, else a sentence saying what is wrong.

    A file the stamp says was verified as it is now costs a stat, nothing is read. A .gz
    file (name ending in .gz) is checked by its md5 alone, read in chunks.
    """
    try:
        status = paths.regular_file(path)
        if status is None:
            return f"missing dataset file {path}"
        if stamp is not None and stamp.matching(name, status.st_size, status.st_mtime_ns) is not None:
            return None
        if not name.endswith(".gz"):
            check_file(path, name, expected_md5, stamp=stamp, shown=shown)
            return None
        digest = hashlib.md5(usedforsecurity=False)
        with paths.open_data_file(path) as file:
            while chunk := file.read(CHUNK_BYTES):
                digest.update(chunk)
    except DataError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read {path}: {paths.os_reason(exc)}"
    actual = digest.hexdigest()
    if expected_md5 is not None and actual != expected_md5:
        return _md5_problem(shown or str(path), name, actual, expected_md5, None, shown)
    if expected_md5 is not None and stamp is not None:
        stamp.record(name, status.st_size, status.st_mtime_ns, actual)
    return None


# --------------------------------------------------------------------------- the checks themselves


def _holds_images(name: str) -> bool:
    return "idx3" in name


def _header_bytes(name: str) -> int:
    return 16 if _holds_images(name) else 8


def _check_header(label: str, name: str, head: bytes, size: int) -> int:
    """Raise DataFileRejected unless head is an IDX header for name's kind whose payload fills size bytes; return N."""
    expected_magic = IMAGES_MAGIC if _holds_images(name) else LABELS_MAGIC
    wrong = f"{label} has a wrong IDX header"
    if len(head) < _header_bytes(name):
        raise DataFileRejected(f"{wrong}: only {size} bytes long")
    magic, count = struct.unpack(">II", head[:8])
    if magic != expected_magic:
        raise DataFileRejected(f"{wrong}: magic 0x{magic:08x}, expected 0x{expected_magic:08x}")
    if _holds_images(name):
        rows, cols = struct.unpack(">II", head[8:16])
        if (rows, cols) != (IMAGE_SIDE, IMAGE_SIDE):
            raise DataFileRejected(f"{wrong}: images are {rows}x{cols}, expected 28x28")
    if count > MAX_EXAMPLES:
        raise DataFileRejected(f"{wrong}: it announces {count} items, more than {MAX_EXAMPLES}")
    if count == 0:
        raise DataFileRejected(f"{wrong}: it announces no items")
    expected_size = _header_bytes(name) + count * (IMAGE_SIDE * IMAGE_SIDE if _holds_images(name) else 1)
    if size != expected_size:
        raise DataFileRejected(f"{wrong}: it announces {count} items ({expected_size} bytes) but holds {size} bytes")
    return count


def _check_labels(label: str, labels: memoryview) -> None:
    """Raise DataFileRejected unless every label byte is a class index 0..NUM_CLASSES-1."""
    if labels and max(labels) >= NUM_CLASSES:
        index = next(i for i, value in enumerate(labels) if value >= NUM_CLASSES)
        raise DataFileRejected(
            f"{label} holds label {labels[index]} at index {index}; labels must be 0..{NUM_CLASSES - 1}"
        )


def _md5_problem(label: str, name: str, actual: str, expected: str, count: int | None, shown: str | None) -> str:
    """Why the md5 is wrong, with the likeliest cause when the size tells (train and test swapped)."""
    if shown is not None:  # bytes on their way in: what a transfer or an import says
        return f"md5 mismatch for {shown}: expected {expected}, got {actual}"
    if name.endswith(".gz"):
        return f"{label} is damaged (md5 {actual}, expected {expected})"
    if RAW_MD5.get(name) != expected:
        return f"{label} is not the expected file (md5 {actual}, expected {expected})"
    reason = f"{label} is not the official Fashion-MNIST file (md5 {actual}, expected {expected})"
    split = next((split for split, files in SPLIT_FILES.items() if name in files), None)
    if split is not None and count is not None and count != SPLIT_SIZES[split]:
        what = "images" if _holds_images(name) else "labels"
        others = [other for other, size in SPLIT_SIZES.items() if size == count and other != split]
        guess = f" (as the {others[0]} split's does: train and test swapped?)" if others else ""
        reason += f"; it holds {count:,} {what} where the official one holds {SPLIT_SIZES[split]:,}{guess}"
    return reason


def _read(path: Path, name: str, label: str) -> IdxFile:
    """Read one IDX file whole after checking its header against its size; DataFileRejected or DataError otherwise.

    Only regular files are read (a FIFO would block, a device never end); the size is
    taken from the open file itself, so it is the size of what is read.
    """
    try:
        with paths.open_data_file(path) as file:  # looked up at call time: the one place data files are opened
            status = os.fstat(file.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise DataError(f"{path} is not a regular file (a FIFO, socket or device); it should be an IDX file")
            head = file.read(_header_bytes(name))
            count = _check_header(label, name, head, status.st_size)
            data = bytearray(status.st_size)
            data[: len(head)] = head
            view = memoryview(data)
            filled = len(head)
            while filled < len(data):
                got = file.readinto(view[filled:])
                if not got:
                    raise DataFileRejected(
                        f"{label} ended early: read {filled} of {len(data)} bytes (was it being written?)"
                    )
                filled += got
    except FileNotFoundError:
        raise DataError(f"missing dataset file {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {paths.os_reason(exc)}") from None
    return IdxFile(data, _header_bytes(name), count, status.st_size, status.st_mtime_ns)
