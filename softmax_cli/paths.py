"""Where data lives. Imports nothing heavy, so the CLI can use it on every path."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "SOFTMAX_DATA_DIR"


def default_data_dir() -> Path:
    """The per-user default: $XDG_DATA_HOME/softmax-cli, else ~/.local/share/softmax-cli."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "softmax-cli"


def resolve_data_dir(option: Path | None) -> Path:
    """--data-dir if given, else $SOFTMAX_DATA_DIR, else the per-user default."""
    if option is not None:
        return option.expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return default_data_dir()


def raw_dir(data_dir: Path) -> Path:
    """The folder holding the IDX files.

    It is torchvision's own layout (<root>/FashionMNIST/raw), so that
    torchvision.datasets.FashionMNIST(root=data_dir) reads the same files for the
    book's DataLoader pipeline.
    """
    return data_dir / "FashionMNIST" / "raw"
