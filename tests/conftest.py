"""Shared fixtures: small synthetic IDX datasets written by the tests, and the real data where present."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import pytest

from softmax_cli.paths import raw_dir

REAL_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"
REAL_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def idx_images_bytes(images: bytes, n: int, rows: int = 28, cols: int = 28) -> bytes:
    """An IDX3 uint8 file: magic 0x00000803, N, rows, cols, then the pixels."""
    return struct.pack(">IIII", 0x00000803, n, rows, cols) + images


def idx_labels_bytes(labels: bytes) -> bytes:
    """An IDX1 uint8 file: magic 0x00000801, N, then the labels."""
    return struct.pack(">II", 0x00000801, len(labels)) + labels


def synthetic_split(n: int, seed: int) -> tuple[bytes, bytes]:
    """n images whose class is readable by a linear model: a class template plus noise."""
    import torch

    gen = torch.Generator().manual_seed(1234)  # the same templates for every split
    templates = (torch.rand(10, 28 * 28, generator=gen) > 0.5).to(torch.float32)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=gen)]
    noise = torch.rand(n, 28 * 28, generator=gen)
    images = (templates[labels] * 0.6 + noise * 0.4) * 255
    return images.to(torch.uint8).numpy().tobytes(), labels.to(torch.uint8).numpy().tobytes()


def write_synthetic_dataset(data_dir: Path, n_train: int = 600, n_test: int = 200, gz: bool = False) -> Path:
    """Write the four IDX files (uncompressed, or .gz) into data_dir's raw folder; return that folder."""
    folder = raw_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = synthetic_split(n, seed)
        for kind, payload in (
            ("images-idx3-ubyte", idx_images_bytes(images, n)),
            ("labels-idx1-ubyte", idx_labels_bytes(labels)),
        ):
            name = f"{split}-{kind}"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(payload, mtime=0))
            else:
                (folder / name).write_bytes(payload)
    return folder


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def synthetic_data_dir(tmp_path: Path) -> Path:
    """A data dir holding a small synthetic dataset (600 train, 200 test images)."""
    data_dir = tmp_path / "data"
    write_synthetic_dataset(data_dir)
    return data_dir


@pytest.fixture(scope="module")
def one_torch_thread():
    """The models in tests are tiny (784 x 10): a second intra-op thread only adds
    synchronisation, which on a busy 2-core machine costs more than it saves. Restored after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder with the four official .gz files; skips the test where it is absent."""
    if not all((REAL_DATA_DIR / name).is_file() for name in REAL_FILES):
        pytest.skip(f"real Fashion-MNIST not found at {REAL_DATA_DIR} (needs the four official .gz files)")
    return REAL_DATA_DIR


def invoke(*args):
    """Run the real `softmax` Typer app in-process; stdout and stderr stay apart on the result."""
    from typer.testing import CliRunner

    from softmax_cli.cli import app

    return CliRunner().invoke(app, [str(arg) for arg in args])
