"""Fixtures shared by the test modules; the helpers they call are in tests/helpers.py."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

# Before anything imports torch: one torch thread in every test process and in the CLI processes
# the tests start, as the command line runs (softmax_cli.cli). pytest-xdist keeps every core busy,
# and torch's default of a thread per core would have OpenMP's threads spin against the other
# workers (docs/performance.md, "A busy machine"); in-process and CLI runs also get the same bits.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from tests import helpers  # noqa: E402


def pytest_configure(config):
    """The package's bytecode, compiled once before any test: the suite starts well over a hundred
    fresh interpreters, and where PYTHONDONTWRITEBYTECODE is set (some CI images set it) each of
    them would compile the package anew (0.05-0.2 s a process). Reading .pyc files is never off."""
    import compileall

    import softmax_cli

    compileall.compile_dir(Path(softmax_cli.__file__).parent, quiet=1)


@pytest.fixture(autouse=True)
def no_columns_from_the_caller(monkeypatch):
    """Output width is part of what the tests check: $COLUMNS from the shell that runs pytest (or from
    pytest-xdist's workers) would wrap what a file or pipe gets unwrapped. Tests that want a width set it."""
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture(autouse=True)
def stop_signal_handlers_restored():
    """Each test starts with the stop signals as from a terminal (a suite started in the background by a
    non-interactive shell inherits SIGINT ignored, which the tool rightly keeps ignored). A command stopped
    in-process leaves them ignored, as a real process ending must: the test process gets its own back."""
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    saved = {name: signal.getsignal(getattr(signal, name)) for name in names if hasattr(signal, name)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in names[1:]:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    yield
    for name, handler in saved.items():
        signal.signal(getattr(signal, name), handler)


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory) -> Path:
    """A data dir holding a small synthetic dataset (600 train, 200 test images), written once per session.

    Shared by every test that asks for it, so those tests only read it: one that changes its data
    dir takes writable_data_dir. At the end of the session the files are checked to be unchanged.
    """
    data_dir = tmp_path_factory.mktemp("synthetic-data")
    helpers.write_synthetic_dataset(data_dir)
    before = helpers.tree_digest(data_dir)
    yield data_dir
    assert helpers.tree_digest(data_dir) == before, (
        f"a test changed the shared synthetic dataset in {data_dir}; it should use writable_data_dir"
    )


@pytest.fixture
def writable_data_dir(synthetic_data_dir, tmp_path) -> Path:
    """This test's own copy of the synthetic data dir, free to damage."""
    return Path(shutil.copytree(synthetic_data_dir, tmp_path / "data"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder with the four official .gz files (see helpers.REAL_DATA_ENV); skips the test where
    they are absent, saying where it looked."""
    folder = helpers.real_data_location()
    missing = [name for name in helpers.REAL_FILES if not (folder / name).is_file()]
    if missing:
        found = f"{folder} lacks {', '.join(missing)}" if folder.is_dir() else f"no folder {folder}"
        hint = f"set {helpers.REAL_DATA_ENV} to the folder of the four official .gz files"
        pytest.skip(f"real Fashion-MNIST not found: {found} ({hint})")
    return folder


@pytest.fixture(scope="session")
def imported_real_data_dir(real_data_dir, tmp_path_factory) -> Path:
    """A data dir into which `softmax download --from` imported the real files, once per session; read only."""
    data_dir = tmp_path_factory.mktemp("real-data")
    result = helpers.invoke("download", "--from", real_data_dir, "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    return data_dir
