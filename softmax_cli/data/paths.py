"""Where data lives: the ONE resolution of the data dir, and opening the files in it safely.

Imports nothing heavy, so the CLI can use it on every path.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from softmax_cli.errors import DataError

DATA_DIR_ENV = "SOFTMAX_DATA_DIR"


def expand_user(path: Path, given_as: str) -> Path:
    """path with a leading `~` or `~user` expanded; DataError naming where it came from when it cannot be.

    Path.expanduser raises a bare RuntimeError for an unknown user (`~nosuchuser/data`) or
    when no home folder can be found; `given_as` ("--data-dir", "$SOFTMAX_DATA_DIR", ...)
    says in the message where the path came from.
    """
    try:
        return path.expanduser()
    except RuntimeError:
        head = path.parts[0] if path.parts else str(path)
        who = f"user {head[1:]!r}" if head != "~" else "your home folder"
        raise DataError(f"cannot expand {head} in {given_as} {path}: {who} is unknown on this system") from None


def default_data_dir() -> Path:
    """The per-user default: $XDG_DATA_HOME/softmax-cli, else ~/.local/share/softmax-cli.

    A relative $XDG_DATA_HOME is ignored, as the XDG spec asks.
    """
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "softmax-cli"
    try:
        home = Path.home()
    except RuntimeError:
        raise DataError(
            f"cannot find your home folder for the default data dir; give --data-dir DIR or set ${DATA_DIR_ENV}"
        ) from None
    return home / ".local" / "share" / "softmax-cli"


def resolve_data_dir(option: Path | None) -> Path:
    """--data-dir if given, else $SOFTMAX_DATA_DIR, else the per-user default; DataError for an unknown `~user`."""
    if option is not None:
        return expand_user(option, "--data-dir")
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return expand_user(Path(env), f"${DATA_DIR_ENV}")
    return default_data_dir()


def raw_dir(data_dir: Path) -> Path:
    """The folder holding the IDX files.

    It is torchvision's own layout (<root>/FashionMNIST/raw), so that
    torchvision.datasets.FashionMNIST(root=data_dir) reads the same files for the
    book's DataLoader pipeline.
    """
    return data_dir / "FashionMNIST" / "raw"


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
