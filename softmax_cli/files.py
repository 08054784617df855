"""Files read from users and files written for them: regular files only, bounded reads, one writer per path.

Reading a file a user names must neither hang nor swallow the machine: a FIFO blocks an
open() or read() forever, /dev/zero never ends, a 100 GB file fills RAM. `read_bounded`
looks before it reads (a regular file, no larger than the caller's bound) and reads at
most that much, so a mistaken path costs one error line and nothing else.

Writing a file that a run rewrites again and again (a checkpoint after every epoch) must
have one writer: `exclusive_lock` makes a second one fail fast, naming the first, and
`probe_lock` tells a reader, without taking anything over, whether that writer still lives.

Standard library only, like atomic.py: light commands use it without importing torch.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

try:  # POSIX; Windows has no flock (see exclusive_lock)
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None

# The first bytes of every lock file: a file of that name without them is not ours to take.
_LOCK_MARK = "softmax-cli lock: "

__all__ = [
    "LockHeld",
    "NotARegularFile",
    "TooLarge",
    "check_regular_file",
    "exclusive_lock",
    "lock_holder_pid",
    "lock_path_for",
    "probe_lock",
    "read_bounded",
]


class NotARegularFile(OSError):
    """The path names a directory, FIFO, socket or device rather than a regular file."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path} is a {kind}, not a regular file")
        self.path, self.kind = path, kind


class TooLarge(OSError):
    """The file is larger than the caller's bound; nothing of it was read past the bound."""

    def __init__(self, path: Path, size: int, limit: int) -> None:
        super().__init__(f"{path} is {size} bytes, more than {limit}")
        self.path, self.size, self.limit = path, size, limit


class LockHeld(Exception):
    """Another live process holds the lock; `holder` is what it wrote into the lock file (pid, what it does)."""

    def __init__(self, lock_path: Path, holder: str | None) -> None:
        super().__init__(f"{lock_path} is held by {holder or 'another process'}")
        self.lock_path, self.holder = lock_path, holder


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    for test, kind in (
        (stat.S_ISREG, None),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "special file"


def check_regular_file(path: Path) -> None:
    """Whether `path` is (or links to) a regular file, found with stat alone: nothing is opened.

    Raises NotARegularFile, or the OSError of stat (FileNotFoundError, PermissionError,
    ELOOP for a symlink loop, ...).
    """
    kind = _kind(os.stat(path).st_mode)
    if kind:
        raise NotARegularFile(path, kind)


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The whole content of the regular file `path`, which must hold at most max_bytes.

    Raises NotARegularFile (checked with stat before opening, since opening a FIFO blocks
    and opening some devices has effects), TooLarge (by its size before reading, and again
    by what was read, should it grow meanwhile), or the OSError of stat/open/read
    (FileNotFoundError, PermissionError, ELOOP for a symlink loop, ...).
    """
    check_regular_file(path)
    # O_NONBLOCK: should a FIFO have been swapped in since the stat, open() still returns at once.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    with open(fd, "rb", closefd=True) as handle:
        info = os.fstat(fd)
        kind = _kind(info.st_mode)
        if kind:
            raise NotARegularFile(path, kind)
        if info.st_size > max_bytes:
            raise TooLarge(path, info.st_size, max_bytes)
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge(path, len(data), max_bytes)
    return data


def lock_path_for(target: Path) -> Path:
    """The hidden lock file beside target: `.{name}.lock`."""
    return target.with_name(f".{target.name}.lock")


@contextmanager
def exclusive_lock(target: Path, holder: str) -> Iterator[None]:
    """Hold the lock on `target` for the block, or raise LockHeld naming who holds it.

    Why flock on a lock file beside the target rather than a marker file created with
    O_EXCL: the kernel releases a flock when its process ends in any way, SIGKILL
    included, so a killed run can never leave a stale lock that blocks the next one until
    someone deletes it by hand. `holder` (pid and what the process does) is written into
    the lock file for the refusal to name. The file is removed when the block ends.

    Where the platform (Windows) or the file system (ENOLCK, EOPNOTSUPP on some network
    mounts) offers no flock, the lock degrades to nothing rather than refusing every run.
    OSErrors creating the lock file (an unwritable folder) propagate.
    """
    fd = _acquire(lock_path_for(target), holder)
    try:
        yield
    finally:
        if fd is not None:
            # Unlinked while still held, so a process waiting on this inode re-checks the path.
            with suppress(OSError):
                lock_path_for(target).unlink()
            os.close(fd)


def probe_lock(target: Path) -> tuple[str, str | None] | None:
    """Whether a live process holds the lock on `target`, found without creating or changing anything.

    ("held", holder): a live process holds it; holder is what it wrote (see exclusive_lock).
    ("free", holder): a lock file of ours that no process holds: its writer ended without
    removing it, which only a kill -9, a crash or a power loss does.
    ("absent", None): no lock file, so no process holds it (exclusive_lock removes it at the end).
    None: this cannot be told (no flock here, an unreadable file, one not written by softmax-cli,
    or one a writer has just created and not yet marked).

    The probe takes a shared lock for an instant, and only when no process holds the file: a
    run that tried to claim the path in that instant would be refused as if it were held.
    """
    if fcntl is None:
        return None
    lock_path = lock_path_for(target)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(lock_path, flags)
    except (FileNotFoundError, NotADirectoryError):
        return "absent", None
    except (OSError, ValueError):
        return None
    try:
        if _kind(os.fstat(fd).st_mode) or os.pread(fd, len(_LOCK_MARK), 0) != _LOCK_MARK.encode():
            return None
        holder = _read_holder(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return "held", holder
        return "free", holder  # the lock goes with the descriptor, closed below
    except OSError:
        return None
    finally:
        os.close(fd)


def lock_holder_pid(holder: str | None) -> int | None:
    """The pid a lock's holder text names ("softmax train, pid 1234, started ..."), or None."""
    found = re.search(r"\bpid (\d+)\b", holder or "")
    return int(found[1]) if found else None


def _acquire(lock_path: Path, holder: str) -> int | None:
    if fcntl is None:
        return None
    # Bounded: each retry means the previous holder removed the file just as we locked it.
    for _ in range(100):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held_by = _read_holder(fd)
            os.close(fd)
            raise LockHeld(lock_path, held_by) from None
        except OSError:
            os.close(fd)
            return None  # no flock on this file system: run unlocked
        try:
            current = os.stat(lock_path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            previous = os.pread(fd, len(_LOCK_MARK), 0)
            if previous and previous != _LOCK_MARK.encode():
                os.close(fd)  # somebody's own file of that name: never overwritten
                raise FileExistsError(errno.EEXIST, f"{lock_path.name} exists and is not a lock file of softmax-cli")
            os.ftruncate(fd, 0)
            os.write(fd, (_LOCK_MARK + holder + "\n").encode("utf-8", "replace"))
            return fd
        os.close(fd)  # we locked a file its holder had already removed: try the new one
    raise LockHeld(lock_path, None)


def _read_holder(fd: int) -> str | None:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        return None
    return " ".join(text.removeprefix(_LOCK_MARK).split()) or None
