"""Atomic file writes: the one way softmax-cli replaces a file that users rely on.

A checkpoint or a dataset file is either the complete old one or the complete new one,
never a half-written mix: a crash, a full disk or Ctrl-C mid-write must leave what was
there before untouched. `atomic_write(path)` gives that guarantee by writing a hidden
temporary file in the same folder (same file system, so the final rename is atomic),
flushing and fsyncing it, then renaming it over `path` and fsyncing the folder so the
rename itself survives a power cut. On any exception, KeyboardInterrupt included, the
temporary file is removed and the exception re-raised.

The temporary file is created with mode 0666 and O_EXCL, so the kernel applies the
process umask as it would for any new file (tempfile.mkstemp would make it 0600) and
no process-wide os.umask call is needed to find out what the umask is.

A process killed outright (SIGKILL, power loss) cannot clean up after itself, so each
write first sweeps the stale temporary files an earlier write of the same target left
behind (see `remove_stale_temp_files`).

Standard library only: the download code uses it without importing torch.
"""

from __future__ import annotations

import glob
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

__all__ = ["STALE_AFTER_S", "atomic_write", "remove_stale_temp_files"]

# A temporary file whose writer (the pid in its name) still runs is left alone until it
# is this old: then its pid was reused, or it was written from another host sharing the
# folder. A dead writer's file goes at once; the age rule is generous so that a slow
# download's file is never taken from under it.
STALE_AFTER_S = 3600.0
_TEMP_SUFFIX = ".tmp"


@contextmanager
def atomic_write(path: Path | str, mode: str = "wb") -> Iterator[IO]:
    """Yield a handle on a new temporary file that replaces `path` when the block ends without error.

    mode: "wb" or "w" (text, UTF-8). The handle's `.name` is the temporary path, so the
    caller may read back what it wrote (after flush) and check it before the rename.
    The folder must exist. OSErrors (creating, writing, fsync, rename) propagate as they
    are, after the temporary file has been removed; so does any exception of the block.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', not {mode!r}")
    target = Path(path)
    remove_stale_temp_files(target)
    temp, handle = _open_temp(target, mode)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with suppress(OSError):  # never mask the real failure with a cleanup failure
            temp.unlink()
        raise
    _fsync_folder(target.parent)


def remove_stale_temp_files(target: Path) -> list[Path]:
    """Remove the `.{name}.*.tmp` files of target's earlier writes that no live writer owns; return them.

    Stale: the pid in its name is no running process (POSIX only: Windows has no cheap
    check that cannot kill), or it has not been written to for STALE_AFTER_S. Only
    temporary files of this very target are touched, and any error is ignored: the sweep
    is housekeeping, never a reason for a write to fail.
    """
    removed = []
    now = time.time()
    try:
        candidates = list(target.parent.glob(f".{glob.escape(target.name)}.*{_TEMP_SUFFIX}"))
    except OSError:
        return removed
    for candidate in candidates:
        try:
            age = now - candidate.stat().st_mtime
            if age > STALE_AFTER_S or not _writer_alive(candidate, target):
                candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue
    return removed


def _open_temp(target: Path, mode: str) -> tuple[Path, IO]:
    """Create `.{name}.{pid}-{random}.tmp` next to target, exclusively, with mode 0666 less the umask."""

    def exclusive(path: str, flags: int) -> int:
        # open()'s own flags would add O_TRUNC; O_EXCL guarantees the file is ours alone.
        cloexec = getattr(os, "O_CLOEXEC", 0)
        binary = getattr(os, "O_BINARY", 0)  # Windows: no newline translation at the OS level
        return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | cloexec | binary, 0o666)

    encoding = None if "b" in mode else "utf-8"
    while True:
        temp = target.parent / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{_TEMP_SUFFIX}"
        try:
            return temp, open(temp, mode, encoding=encoding, opener=exclusive)
        except FileExistsError:
            continue  # a random name already taken: draw another


def _writer_alive(temp: Path, target: Path) -> bool:
    """Whether the process that created temp (pid in its name) still runs; True when unknown."""
    middle = temp.name[len(target.name) + 2 : -len(_TEMP_SUFFIX)]  # ".{name}." ... ".tmp"
    pid_text = middle.split("-", 1)[0]
    if os.name != "posix" or not pid_text.isdigit():
        return True  # e.g. a file from an older softmax-cli: only its age can tell
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's live process, or not a pid at all: leave it to the age rule
    return True


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows it (best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
