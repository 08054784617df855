"""Helpers shared by the test modules, imported as `from tests import helpers`; fixtures live in conftest.py.

Synthetic IDX datasets, the real data's location, running the `softmax` app in-process and
reading its results, and training through softmax_cli's own fit() with small defaults.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
from pathlib import Path

import torch

from softmax_cli import training
from softmax_cli.config import Hparams, RunPaths
from softmax_cli.data.paths import raw_dir
from softmax_cli.data.verified import record_verified

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


# --------------------------------------------------------------------------- the real data

# SOFTMAX_TEST_REAL_DATA names the folder holding the four official Fashion-MNIST .gz files
# (a relative path is taken from the project root). Unset, it is ../shared/data/fashion-mnist
# next to the project. The tests that need the real files skip, saying where they looked,
# when that folder does not hold all four.
REAL_DATA_ENV = "SOFTMAX_TEST_REAL_DATA"
DEFAULT_REAL_DATA = Path("..") / "shared" / "data" / "fashion-mnist"
REAL_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def real_data_location() -> Path:
    """Where the real .gz files should be: $SOFTMAX_TEST_REAL_DATA, or the default beside the project."""
    return (PROJECT_ROOT / (os.environ.get(REAL_DATA_ENV) or DEFAULT_REAL_DATA)).resolve()


# --------------------------------------------------------------------------- synthetic IDX data


def idx_images_bytes(images: bytes, n: int, rows: int = 28, cols: int = 28) -> bytes:
    """An IDX3 uint8 file: magic 0x00000803, N, rows, cols, then the pixels."""
    return struct.pack(">IIII", 0x00000803, n, rows, cols) + images


def idx_labels_bytes(labels: bytes) -> bytes:
    """An IDX1 uint8 file: magic 0x00000801, N, then the labels."""
    return struct.pack(">II", 0x00000801, len(labels)) + labels


def synthetic_split(n: int, seed: int) -> tuple[bytes, bytes]:
    """n images whose class is readable by a linear model: a class template plus noise."""
    gen = torch.Generator().manual_seed(1234)  # the same templates for every split
    templates = (torch.rand(10, 28 * 28, generator=gen) > 0.5).to(torch.float32)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=gen)]
    noise = torch.rand(n, 28 * 28, generator=gen)
    images = (templates[labels] * 0.6 + noise * 0.4) * 255
    return images.to(torch.uint8).numpy().tobytes(), labels.to(torch.uint8).numpy().tobytes()


def write_synthetic_dataset(data_dir: Path, n_train: int = 600, n_test: int = 200, gz: bool = False) -> Path:
    """Write the four IDX files (uncompressed, or .gz) into data_dir's raw folder; return that folder.

    Uncompressed files are then recorded as verified by softmax_cli.data.verified.record_verified, which
    checks their content (IDX header, labels, md5) against their own md5s before recording them, as
    `softmax download` records the official ones. That is how a CLI run (which always expects the
    official md5s) is given synthetic data honestly; without it every reader would refuse them for not
    being the official Fashion-MNIST files. In-process tests can instead pass the md5s to the readers
    (expected_md5s), with no record at all.
    """
    folder = raw_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    md5s = {}
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
                md5s[name] = hashlib.md5(payload).hexdigest()
    if md5s:
        record_verified(folder, md5s)
    return folder


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under folder (relative path -> md5): equal digests, same files with the same bytes."""
    return {str(path.relative_to(folder)): md5_of(path) for path in sorted(folder.rglob("*")) if path.is_file()}


# --------------------------------------------------------------------------- the CLI, in-process


def cli_app():
    """The `softmax` Typer app: the tests' only import of it, so a move of the CLI changes this one line.

    Self-contained on purpose: test_train_cli runs this function's source in a fresh interpreter.
    """
    from softmax_cli.cli import app

    return app


def invoke(*args):
    """Run `softmax ARGS` in-process (each argument str()-ed); result.stdout and result.stderr stay apart
    (result.output is both, interleaved)."""
    from typer.testing import CliRunner

    return CliRunner().invoke(cli_app(), [str(arg) for arg in args])


def assert_clean(result) -> None:
    """No exception escaped the command but SystemExit, and no traceback was printed."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def only_json(result) -> dict:
    """stdout must be exactly one JSON object on one line (human output goes to stderr)."""
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1, result.stdout
    payload = json.loads(result.stdout)
    assert isinstance(payload, dict)
    return payload


def flat(text: str) -> str:
    """text with every run of whitespace made one space: Rich's wrapping at 80 columns undone."""
    return " ".join(text.split())


def run_train(data_dir: Path, folder: Path, *options):
    """`softmax train OPTIONS` on the CPU, its runs under folder/runs; the result, whatever it is."""
    return invoke("train", "--data-dir", data_dir, "--runs-dir", folder / "runs", "--device", "cpu", *options)


def train_json(data_dir: Path, folder: Path, *options) -> dict:
    """run_train with --json, which must succeed cleanly; train's JSON."""
    result = run_train(data_dir, folder, "--json", *options)
    assert_clean(result)
    assert result.exit_code == 0, result.output
    return only_json(result)


def train_checkpoint(data_dir: Path, folder: Path, *options) -> tuple[Path, dict]:
    """train_json with --checkpoint folder/checkpoint.pt; (that checkpoint, train's JSON)."""
    path = folder / "checkpoint.pt"
    payload = train_json(data_dir, folder, "--checkpoint", path, *options)
    assert payload["checkpoint"] == str(path)
    return path, payload


# --------------------------------------------------------------------------- training through fit()


def fit(data_dir: Path, out: Path, callbacks=None, *, resume_from: dict | None = None, **hparams):
    """training.fit on the CPU, 2 epochs unless told otherwise, the checkpoint in out/checkpoint.pt."""
    out.mkdir(parents=True, exist_ok=True)
    paths = RunPaths(data_dir=data_dir, log_dir=out, checkpoint=out / "checkpoint.pt")
    return training.fit(Hparams(**{"epochs": 2, **hparams}), paths, CPU, callbacks, resume_from=resume_from)


class KeepModel(training.TrainingCallbacks):
    """Remembers the model the loop trained (a plain callback, not a mock)."""

    model = None

    def on_train_end(self, result, model):
        self.model = model


def fit_model(data_dir: Path, out: Path, **hparams):
    """fit, returning (result, the trained model)."""
    keep = KeepModel()
    result = fit(data_dir, out, keep, **hparams)
    return result, keep.model


class InterruptAt(training.TrainingCallbacks):
    """Simulates Ctrl-C: raises KeyboardInterrupt from on_epoch_end of the given epoch, which comes
    after that epoch's checkpoint is written; remembers the result on_train_end still receives."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.ended = None

    def on_epoch_end(self, metrics, model):
        if metrics.epoch == self.epoch:
            raise KeyboardInterrupt

    def on_train_end(self, result, model):
        self.ended = result


def same_checkpoint(a, b) -> bool:
    """Deep equality of checkpoints or their parts: tensors by dtype and torch.equal (bit for bit),
    containers and plain values by type and value."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_checkpoint(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_checkpoint(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def tensorboard_events(run_dir: Path):
    """A run folder's TensorBoard events, read back with TensorBoard's own reader, nothing sampled away."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def session_status(accumulator) -> str:
    """How the run said it ended, in the HPARAMS tab's terms (STATUS_SUCCESS, ...)."""
    from tensorboard.plugins.hparams import api_pb2, metadata

    content = accumulator.PluginTagToContent("hparams")[metadata.SESSION_END_INFO_TAG]
    return api_pb2.Status.Name(metadata.parse_session_end_info_plugin_data(content).status)


def figure_pixels(figure) -> tuple[int, int]:
    """The size in pixels a figure is saved at: its size in inches times its dpi (save_png keeps both)."""
    width, height = figure.get_size_inches() * figure.dpi
    return round(width), round(height)


def default_stop_signals() -> None:
    """preexec_fn for a child the tests stop with signals: SIGINT, SIGTERM and SIGHUP at their
    defaults, as from a terminal. A suite started in the background by a non-interactive shell
    (`pytest &`) inherits SIGINT ignored, and the tool rightly keeps an ignored signal ignored."""
    import signal

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
