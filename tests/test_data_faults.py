"""Data files that are wrong, unreadable or odd: one `error:` line naming the file, never a traceback or a hang.

Through the real CLI where a user meets each case (train, eval, download). The files are
the synthetic ones (which the test helper records as verified, as a download records the
official ones); the tests that need the official md5s use the real files and skip without
them. What cannot be made on a CI machine running as root (an unreadable file) is
simulated by making the one function that opens data files raise PermissionError.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from softmax_cli.data import batches as data
from softmax_cli.data import download as dl
from softmax_cli.data import paths
from softmax_cli.data.fashion_mnist import SPLIT_FILES
from softmax_cli.data.verified import STAMP_NAME
from tests import helpers

TEST_IMAGES, TEST_LABELS = SPLIT_FILES["test"]
TRAIN_IMAGES, TRAIN_LABELS = SPLIT_FILES["train"]


def error_line(result, code: int = 1) -> str:
    """The command failed with `code`, printed exactly one error line and no traceback; that line, unwrapped."""
    helpers.assert_clean(result)
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def checkpoint(synthetic_data_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults-checkpoint")
    return helpers.train_checkpoint(synthetic_data_dir, folder, "--epochs", "1", "--batch-size", "64")[0]


def evaluate(checkpoint: Path, data_dir: Path):
    return helpers.invoke("eval", checkpoint, "--data-dir", data_dir, "--device", "cpu")


def train(data_dir: Path, folder: Path):
    return helpers.run_train(data_dir, folder, "--epochs", "1", "--batch-size", "64")


def swap(folder: Path, a: str, b: str) -> None:
    (folder / a).rename(folder / "swap")
    (folder / b).rename(folder / a)
    (folder / "swap").rename(folder / b)


# --------------------------------------------------------------------------- not the official content


def test_swapped_train_and_test_files_are_refused(writable_data_dir, tmp_path):
    raw = data.raw_dir(writable_data_dir)
    swap(raw, TRAIN_IMAGES, TEST_IMAGES)
    swap(raw, TRAIN_LABELS, TEST_LABELS)  # renames keep the mtimes: only the sizes give them away

    line = error_line(train(writable_data_dir, tmp_path))

    assert f"{raw / TRAIN_IMAGES} is not the official Fashion-MNIST file" in line
    assert "softmax download --data-dir" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("checkpoint.pt"))


@pytest.mark.realdata
def test_real_files_swapped_say_so_and_download_repairs_them(imported_real_data_dir, tmp_path, checkpoint):
    data_dir = Path(shutil.copytree(imported_real_data_dir, tmp_path / "data"))  # copy2 keeps the mtimes
    raw = data.raw_dir(data_dir)
    swap(raw, TRAIN_IMAGES, TEST_IMAGES)

    line = error_line(evaluate(checkpoint, data_dir))  # all four files are checked before any work
    assert f"{raw / TRAIN_IMAGES} is not the official Fashion-MNIST file" in line
    assert "it holds 10,000 images where the official one holds 60,000" in line
    assert "(as the test split's does: train and test swapped?)" in line

    repaired = helpers.invoke("download", "--data-dir", data_dir)  # the verified .gz files are there: no network
    assert repaired.exit_code == 0, repaired.output
    assert "re-extracting" in helpers.flat(repaired.stderr)
    assert f"Repaired: {TRAIN_IMAGES} and {TEST_IMAGES} were swapped" in helpers.flat(repaired.stderr)
    assert helpers.md5_of(raw / TEST_IMAGES) == dl.RAW_MD5[TEST_IMAGES]
    assert evaluate(checkpoint, data_dir).exit_code == 0


@pytest.mark.realdata
def test_random_payload_with_a_good_header_is_refused(imported_real_data_dir, tmp_path, checkpoint):
    data_dir = Path(shutil.copytree(imported_real_data_dir, tmp_path / "data"))
    path = data.raw_dir(data_dir) / TEST_IMAGES
    content = bytearray(path.read_bytes())
    content[16:] = os.urandom(len(content) - 16)
    path.write_bytes(content)

    line = error_line(evaluate(checkpoint, data_dir))
    assert f"{path} is not the official Fashion-MNIST file (md5 " in line

    again = helpers.invoke("download", "--data-dir", data_dir)
    assert again.exit_code == 0, again.output
    assert f"{path} is not the official Fashion-MNIST file" in helpers.flat(again.stderr)
    assert helpers.md5_of(path) == dl.RAW_MD5[TEST_IMAGES]


def test_a_label_outside_0_to_9_is_an_error(writable_data_dir, checkpoint):
    path = data.raw_dir(writable_data_dir) / TEST_LABELS
    content = bytearray(path.read_bytes())
    content[8 + 5] = 10
    path.write_bytes(content)

    line = error_line(evaluate(checkpoint, writable_data_dir))

    assert f"{path} holds label 10 at index 5; labels must be 0..9" in line


def test_a_label_outside_0_to_9_is_never_called_valid_by_download(writable_data_dir):
    """Even when its md5 is the one download was told to expect."""
    raw = data.raw_dir(writable_data_dir)
    path = raw / TEST_LABELS
    content = bytearray(path.read_bytes())
    content[8] = 10
    path.write_bytes(content)
    source = writable_data_dir.parent / "source"
    shutil.copytree(raw, source)
    md5s = {name: helpers.md5_of(raw / name) for name in dl.RAW_MD5}
    resources = [(name + ".gz", "0" * 32) for name in dl.RAW_MD5]

    with pytest.raises(dl.DataError, match=f"cannot import {source / TEST_LABELS}: {TEST_LABELS} holds label 10"):
        dl.fetch_dataset(writable_data_dir, source_dir=source, resources=resources, uncompressed_md5s=md5s)


def test_verification_is_remembered_and_redone_when_a_file_changes(writable_data_dir, monkeypatch):
    """Later runs only stat the files; a changed file is verified again (and here found wrong)."""
    import hashlib

    raw = data.raw_dir(writable_data_dir)
    assert (raw / STAMP_NAME).is_file()

    def no_hashing(*args, **kwargs):
        raise AssertionError("a verified, unchanged file was hashed again")

    monkeypatch.setattr(hashlib, "md5", no_hashing)
    assert len(data.read_split(writable_data_dir, "test")) == 200  # from the stamp alone
    monkeypatch.undo()

    path = raw / TEST_IMAGES
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))  # same bytes, a new mtime
    with pytest.raises(data.DataError, match="is not the official Fashion-MNIST file"):
        data.read_split(writable_data_dir, "test")


# --------------------------------------------------------------------------- unreadable, odd or missing


def test_an_unreadable_data_file_is_one_line(writable_data_dir, checkpoint, monkeypatch):
    target = data.raw_dir(writable_data_dir) / TEST_IMAGES
    real_open = paths.open_data_file

    def denied(path):
        if Path(path) == target:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(paths, "open_data_file", denied)

    line = error_line(evaluate(checkpoint, writable_data_dir))

    assert f"cannot read {target}: permission denied" in line


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_data_folder_is_one_line(writable_data_dir, checkpoint):
    raw = data.raw_dir(writable_data_dir)
    raw.chmod(0)
    try:
        line = error_line(evaluate(checkpoint, writable_data_dir))
    finally:
        raw.chmod(0o755)
    assert "permission denied" in line and str(raw) in line


def test_a_symlink_loop_is_not_called_missing(writable_data_dir, checkpoint):
    path = data.raw_dir(writable_data_dir) / TEST_LABELS
    path.unlink()
    path.symlink_to(path.name)  # points at itself

    result = evaluate(checkpoint, writable_data_dir)

    line = error_line(result)
    assert f"cannot read {path}: a symlink loop" in line
    assert "not found" not in result.stderr and "downloading" not in result.stderr


def test_download_replaces_a_symlink_loop(synthetic_data_dir, tmp_path):
    source = helpers.write_synthetic_dataset(tmp_path / "source", n_train=20, n_test=10, gz=True)
    resources = [(path.name, helpers.md5_of(path)) for path in sorted(source.glob("*.gz"))]
    dl.fetch_dataset(tmp_path / "data", source_dir=source, resources=resources)
    path = data.raw_dir(tmp_path / "data") / TEST_LABELS
    path.unlink()
    path.symlink_to(path.name)

    results = dl.fetch_dataset(tmp_path / "data", source_dir=source, resources=resources)

    assert [r.status for r in results] == ["present", "repaired", "present", "present"]  # rebuilt from its .gz
    assert "symlink loop" in dl.describe_repairs(results)[0]
    assert not path.is_symlink() and len(data.read_split(tmp_path / "data", "test")) == 10


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_folder_or_fifo_in_place_of_a_data_file_is_one_line(writable_data_dir, checkpoint, kind):
    """In a subprocess with a time limit: reading a FIFO would block forever."""
    if kind == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path = data.raw_dir(writable_data_dir) / TEST_LABELS
    path.unlink()
    path.mkdir() if kind == "folder" else os.mkfifo(path)

    done = subprocess.run(
        [sys.executable, "-m", "softmax_cli", "eval", str(checkpoint), "--data-dir", str(writable_data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"{path} is {'a folder' if kind == 'folder' else 'not a regular file'}" in helpers.flat(done.stderr)


def test_a_malformed_file_is_named_exactly(writable_data_dir, tmp_path):
    path = data.raw_dir(writable_data_dir) / TRAIN_LABELS
    path.write_bytes(path.read_bytes()[:-3])

    line = error_line(train(writable_data_dir, tmp_path))

    assert f"{path} has a wrong IDX header: it announces 600 items (608 bytes) but holds 605 bytes" in line


# --------------------------------------------------------------------------- ~user paths


UNKNOWN_USER = "~softmax-no-such-user-7d1"


@pytest.mark.parametrize("command", [["download"], ["train", "--epochs", "1"], ["bench", "--epochs", "1"]])
def test_an_unknown_user_in_data_dir_is_a_usage_error(command):
    result = helpers.invoke(*command, "--data-dir", f"{UNKNOWN_USER}/data")

    line = helpers.flat(result.output)
    assert result.exit_code == 2, result.output
    assert f"user '{UNKNOWN_USER[1:]}' is unknown" in line and "Traceback" not in result.output


def test_an_unknown_user_in_from_is_a_usage_error(tmp_path):
    result = helpers.invoke("download", "--from", f"{UNKNOWN_USER}/files", "--data-dir", tmp_path)

    assert result.exit_code == 2, result.output
    assert "--from" in result.output and "is unknown" in helpers.flat(result.output)


def test_an_unknown_user_in_the_environment_is_one_line(monkeypatch, checkpoint):
    monkeypatch.setenv("SOFTMAX_DATA_DIR", f"{UNKNOWN_USER}/data")

    for result in (helpers.invoke("download"), helpers.invoke("eval", checkpoint, "--device", "cpu")):
        line = error_line(result)
        assert f"in $SOFTMAX_DATA_DIR {UNKNOWN_USER}/data" in line and "is unknown" in line


def test_a_symlink_loop_as_the_from_folder_is_not_called_missing(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop.name)

    line = error_line(helpers.invoke("download", "--from", loop, "--data-dir", tmp_path / "data"))

    assert f"cannot read --from folder {loop}: a symlink loop" in line


def test_an_unreadable_from_file_is_one_line(tmp_path, monkeypatch):
    source = helpers.write_synthetic_dataset(tmp_path / "source", n_train=20, n_test=10, gz=True)
    target = source / "train-images-idx3-ubyte.gz"
    real_open = paths.open_data_file

    def denied(path):
        if Path(path) == target:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(paths, "open_data_file", denied)

    line = error_line(helpers.invoke("download", "--from", source, "--data-dir", tmp_path / "data"))

    assert f"cannot read {target}: permission denied" in line
