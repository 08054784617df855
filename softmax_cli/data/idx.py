"""The IDX format of the four Fashion-MNIST files: header checks, label checks, and reading one file safely.

An IDX file is a big-endian header (magic, then one 32-bit count per dimension) followed by
the payload. Fashion-MNIST uses two kinds, told apart by the name:

* images ("idx3"): magic 0x00000803, N, 28, 28, then N * 28 * 28 pixel bytes;
* labels ("idx1"): magic 0x00000801, N, then N label bytes, each a class index 0..9.

Why by hand rather than torchvision's parser: importing torchvision costs about as much as
importing torch, its parser signals a bad file with a bare `assert`, and it reads the whole
file before looking at the header. Here the header is checked against the file's size
*before* the payload is read, so a huge or endless file is refused without reading it, and
every message names the file. softmax_cli.data.batches turns the payload into a tensor with
`torch.frombuffer`, without a copy. (Not files.read_bounded, which checkpoints use: its bound
is fixed before reading and it returns immutable bytes; here the header sets the bound, and
the bytes land in a writable buffer that the tensor shares.)

Standard library only, never prints: failures are raised as IdxError (the file is not a
valid IDX file of its kind) or DataError (it cannot be opened or read), both naming it.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from softmax_cli.data.fashion_mnist import IMAGE_SIDE, NUM_CLASSES
from softmax_cli.errors import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
# Far more examples than any split of Fashion-MNIST (60,000): a header announcing more is
# refused before anything is read, so a crafted or runaway file cannot fill the memory.
MAX_EXAMPLES = 1_000_000


class IdxError(ValueError):
    """The bytes are not a valid IDX file of the kind its name says; the message names the file."""


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


def holds_images(name: str) -> bool:
    return "idx3" in name


def header_bytes(name: str) -> int:
    return 16 if holds_images(name) else 8


def item_bytes(name: str) -> int:
    return IMAGE_SIDE * IMAGE_SIDE if holds_images(name) else 1


def check_header(name: str, head: bytes, size: int) -> int:
    """Raise IdxError unless head is an IDX header for name's kind whose payload fills size bytes; return N."""
    expected_magic = IMAGES_MAGIC if holds_images(name) else LABELS_MAGIC
    length = header_bytes(name)
    if len(head) < length:
        raise IdxError(f"{name} has a wrong IDX header: only {size} bytes long")
    magic, count = struct.unpack(">II", head[:8])
    if magic != expected_magic:
        raise IdxError(f"{name} has a wrong IDX header: magic 0x{magic:08x}, expected 0x{expected_magic:08x}")
    if holds_images(name):
        rows, cols = struct.unpack(">II", head[8:16])
        if (rows, cols) != (IMAGE_SIDE, IMAGE_SIDE):
            raise IdxError(f"{name} has a wrong IDX header: images are {rows}x{cols}, expected 28x28")
    if count > MAX_EXAMPLES:
        raise IdxError(f"{name} has a wrong IDX header: it announces {count} items, more than {MAX_EXAMPLES}")
    expected_size = length + count * item_bytes(name)
    if size != expected_size:
        raise IdxError(
            f"{name} has a wrong IDX header: it announces {count} items ({expected_size} bytes) but holds {size} bytes"
        )
    return count


def check_labels(name: str, labels: bytes | memoryview) -> None:
    """Raise IdxError unless every label byte is a class index 0..NUM_CLASSES-1."""
    if labels and max(labels) >= NUM_CLASSES:
        index = next(i for i, label in enumerate(labels) if label >= NUM_CLASSES)
        raise IdxError(f"{name} holds label {labels[index]} at index {index}; labels must be 0..{NUM_CLASSES - 1}")


def check_payload(name: str, payload: bytes | memoryview) -> None:
    """What the header cannot say: for a labels file, that every label is in range."""
    if not holds_images(name):
        check_labels(name, payload)


def os_reason(exc: OSError) -> str:
    """A short, true phrase for why a path could not be used (a symlink loop is not "no such file")."""
    if exc.errno == errno.ELOOP:
        return "a symlink loop (too many levels of symbolic links)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "a folder, not a file"
    if isinstance(exc, NotADirectoryError):
        return "under something that is not a folder"
    return exc.strerror or str(exc)


def regular_file(path: Path) -> os.stat_result | None:
    """path's stat when it is a regular file, None when nothing is there; DataError when it cannot be used.

    Missing means missing (ENOENT, a dangling symlink included); a symlink loop, a folder,
    a FIFO or device, or a path that cannot be searched is reported as what it is.
    """
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {os_reason(exc)}") from None
    if not stat.S_ISREG(status.st_mode):
        kind = "a folder" if stat.S_ISDIR(status.st_mode) else "not a regular file (a FIFO, socket or device)"
        raise DataError(f"{path} is {kind}; it should be an IDX data file")
    return status


def open_data_file(path: Path):
    """Open path for reading without blocking (a FIFO would wait for a writer forever).

    The one place data files are opened, so that tests can make it fail as an unreadable
    file would. O_NONBLOCK changes nothing for a regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    return os.fdopen(os.open(path, flags), "rb")


def read_idx_file(path: Path, name: str | None = None) -> IdxFile:
    """Read one IDX file whole after checking its header against its size; IdxError or DataError otherwise.

    name: the official name whose kind the file must have (default: path's own name).
    Only regular files are read (a FIFO would block, a device never end); the size is
    taken from the open file itself, so it is the size of what is read.
    """
    name = name or path.name
    try:
        with open_data_file(path) as file:
            status = os.fstat(file.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise DataError(f"{path} is not a regular file (a FIFO, socket or device); it should be an IDX file")
            head = file.read(header_bytes(name))
            count = check_header(name, head, status.st_size)
            data = bytearray(status.st_size)
            data[: len(head)] = head
            view = memoryview(data)
            filled = len(head)
            while filled < len(data):
                got = file.readinto(view[filled:])
                if not got:
                    raise IdxError(f"{name} ended early: read {filled} of {len(data)} bytes (was it being written?)")
                filled += got
    except FileNotFoundError:
        raise DataError(f"missing dataset file {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {os_reason(exc)}") from None
    return IdxFile(data, header_bytes(name), count, status.st_size, status.st_mtime_ns)
