"""Where data lives: the ONE resolution of the data dir. Imports nothing heavy, so the CLI can use it on every path."""

from __future__ import annotations

import os
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
