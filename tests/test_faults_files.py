"""Issue 10, the files a user hands to `softmax`: nothing of theirs is lost, nothing hangs, nothing is silently wrong.

Grouped by the issue's failure classes. Every case goes through the real CLI (CliRunner, or a
subprocess where a hang or another process is the point) on the session's synthetic data,
with checkpoints trained for real and then damaged the way a user or an attacker could.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from softmax_cli import files
from softmax_cli.config import Hparams
from softmax_cli.errors import CheckpointError
from softmax_cli.models import model_from_checkpoint
from softmax_cli.runs import checkpoint as ckpt
from tests import helpers
from tests.helpers import CPU, assert_clean, invoke, run_train

POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="needs POSIX file types, signals and flock")


def one_error(result, *needles: str) -> str:
    """A refused command: non-zero exit, no traceback, nothing on stdout, and one `error:` (or click's
    `Error:`) line; every needle appears in stderr."""
    assert result.exit_code != 0, result.output
    assert_clean(result)
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in helpers.flat(result.stderr), (needle, result.stderr)
    return errors[0]


def evaluate(path: Path, data_dir: Path, *options):
    return invoke("eval", path, "--data-dir", data_dir, "--device", "cpu", *options)


@pytest.fixture(scope="module")
def concise_momentum(synthetic_data_dir, tmp_path_factory) -> Path:
    """A one-epoch concise checkpoint with momentum, so it carries torch.optim.SGD's state."""
    folder = tmp_path_factory.mktemp("faults-concise")
    return helpers.train_checkpoint(
        synthetic_data_dir, folder, "--impl", "concise", "--momentum", "0.9", "--epochs", "1", "--batch-size", "64"
    )[0]


@pytest.fixture
def good(concise_momentum) -> dict:
    """The checkpoint as torch.load gives it, to damage."""
    return torch.load(concise_momentum, weights_only=True)


def saved(tmp_path: Path, name: str, checkpoint: dict) -> Path:
    path = tmp_path / name
    torch.save(checkpoint, path)
    return path


# --------------------------------------------------------------------------- 1. data loss


FOREIGN_FILES = {
    "text": lambda path, good: path.write_text("my notes\n"),
    "empty": lambda path, good: path.write_bytes(b""),
    "torch-file-not-ours": lambda path, good: torch.save(nn.Linear(784, 10).state_dict(), path),
    "our-format-name-in-a-text": lambda path, good: path.write_text(ckpt.FORMAT_NAME),
}


@pytest.mark.parametrize("kind", FOREIGN_FILES, ids=list(FOREIGN_FILES))
def test_checkpoint_never_replaces_a_file_that_is_not_a_checkpoint(kind, good, synthetic_data_dir, tmp_path):
    target = tmp_path / "notes.txt"
    FOREIGN_FILES[kind](target, good)
    before = target.read_bytes()
    result = run_train(synthetic_data_dir, tmp_path, "--epochs", "1", "--checkpoint", target, "--json")
    assert result.exit_code == 2
    one_error(result, str(target), "not a softmax-cli checkpoint", "--overwrite")
    assert target.read_bytes() == before
    assert not (tmp_path / "runs").exists()  # refused before anything started

    replaced = helpers.train_json(synthetic_data_dir, tmp_path, "--epochs", "1", "--checkpoint", target, "--overwrite")
    assert replaced["checkpoint"] == str(target) and ckpt.load_checkpoint(target)["epoch"] == 1


@POSIX_ONLY
def test_checkpoint_through_a_symlink_to_a_foreign_file_is_refused(synthetic_data_dir, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    for link, points_to in ((tmp_path / "link.pt", notes), (tmp_path / "dangling.pt", tmp_path / "nowhere")):
        link.symlink_to(points_to)
        result = run_train(synthetic_data_dir, tmp_path, "--epochs", "1", "--checkpoint", link)
        assert result.exit_code == 2
        one_error(result, "not a softmax-cli checkpoint")
        assert link.is_symlink()
    assert notes.read_text() == "keep me\n"


def start_training(data_dir: Path, folder: Path, *options) -> subprocess.Popen:
    """`python -m softmax_cli train` in its own process: CPU, one thread, many short epochs."""
    command = [sys.executable, "-m", "softmax_cli", "train", "--data-dir", data_dir, "--device", "cpu"]
    command += ["--runs-dir", folder / "runs", "--batch-size", "32", *options]
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.Popen(
        [str(part) for part in command],
        cwd=helpers.PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=helpers.default_stop_signals,
    )


def wait_for(condition, process: subprocess.Popen, seconds: float = 120) -> None:
    """Poll condition() until it holds; fail (killing the process) if it has not within `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, err = process.communicate(timeout=30)
            pytest.fail(f"condition never met (exit {process.returncode}): {err[-2000:]}")
        time.sleep(0.05)


def saved_epoch(path: Path) -> int:
    try:
        return ckpt.load_checkpoint(path)["epoch"]
    except CheckpointError:
        return 0


@POSIX_ONLY
def test_a_second_run_on_the_same_checkpoint_is_refused_and_the_lock_dies_with_the_first(synthetic_data_dir, tmp_path):
    target = tmp_path / "c.pt"
    first = start_training(synthetic_data_dir, tmp_path / "first", "--epochs", "100000", "--checkpoint", target)
    try:
        wait_for(lambda: saved_epoch(target) >= 1, first)
        second = run_train(synthetic_data_dir, tmp_path / "second", "--epochs", "2", "--checkpoint", target)
        assert second.exit_code == 1
        one_error(second, str(target), "another run", f"pid {first.pid}", "--checkpoint")
        assert not (tmp_path / "second" / "runs").exists()
    finally:
        first.send_signal(signal.SIGKILL)  # no clean-up at all: the kernel still drops its flock
        first.communicate(timeout=60)

    epoch = ckpt.load_checkpoint(target)["epoch"]  # whole, though its writer was killed (atomic writes)
    third = helpers.train_json(
        synthetic_data_dir, tmp_path / "third", "--resume", target, "--checkpoint", target, "--epochs", epoch + 1
    )
    assert third["epochs"] == epoch + 1 and ckpt.load_checkpoint(target)["epoch"] == epoch + 1
    leftovers = [name for name in os.listdir(tmp_path) if name.endswith((".tmp", ".lock"))]
    assert leftovers == []  # the killed run's temporary file was swept, the lock file removed


@POSIX_ONLY
def test_the_lock_refuses_a_live_holder_and_names_it(tmp_path):
    target = tmp_path / "c.pt"
    with files.exclusive_lock(target, "softmax train, pid 4242"):
        assert files.lock_path_for(target).read_text().endswith("softmax train, pid 4242\n")
        with pytest.raises(files.LockHeld) as held:
            with files.exclusive_lock(target, "another"):
                pass
        assert held.value.holder == "softmax train, pid 4242"
    assert not files.lock_path_for(target).exists()
    with files.exclusive_lock(target, "the next one"):  # free again
        pass
    files.lock_path_for(target).write_text("somebody's own notes\n")  # a file that only shares the name
    with pytest.raises(FileExistsError):
        with files.exclusive_lock(target, "a run"):
            pass
    assert files.lock_path_for(target).read_text() == "somebody's own notes\n"


# --------------------------------------------------------------------------- 2. the optimizer state's settings


# What a concise checkpoint's param_groups may say, tampered or from a torch that wrote fewer
# settings: none of it is read back, every setting comes from the hparams (models.sgd_settings).
ALTERED_GROUPS = {
    "maximize": lambda group: group.update(maximize=True),
    "nesterov": lambda group: group.update(nesterov=True),
    "dampening": lambda group: group.update(dampening=0.5),
    "momentum": lambda group: group.update(momentum=0.1),
    "weight-decay": lambda group: group.update(weight_decay=1.0),
    "momentum-type": lambda group: group.update(momentum="0.9"),
    "lr-above-hparams": lambda group: group.update(lr=5.0),
    "lr-negative": lambda group: group.update(lr=-0.1),
    "without-momentum-dampening-nesterov": lambda group: [group.pop(k) for k in ("momentum", "dampening", "nesterov")],
    "params-only": lambda group: [group.pop(key) for key in list(group) if key != "params"],
}


@pytest.fixture(scope="module")
def resumed_from_good(concise_momentum, synthetic_data_dir, tmp_path_factory) -> dict:
    """The checkpoint a resume of the unaltered file to epoch 2 writes, to compare the altered ones with."""
    folder = tmp_path_factory.mktemp("resumed-good")
    out = folder / "out.pt"
    helpers.train_json(synthetic_data_dir, folder, "--resume", concise_momentum, "--epochs", "2", "--checkpoint", out)
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("case", ALTERED_GROUPS, ids=list(ALTERED_GROUPS))
def test_the_optimizer_settings_of_a_resumed_run_are_the_hparams_whatever_the_state_says(
    case, good, resumed_from_good, synthetic_data_dir, tmp_path
):
    ALTERED_GROUPS[case](good["optimizer_state"]["param_groups"][0])
    path, out = saved(tmp_path, "altered.pt", good), tmp_path / "out.pt"
    payload = helpers.train_json(synthetic_data_dir, tmp_path, "--resume", path, "--epochs", "2", "--checkpoint", out)
    assert payload["epochs"] == 2
    resumed = torch.load(out, weights_only=True)
    assert resumed["epoch"] == 2
    group = resumed["optimizer_state"]["param_groups"][0]
    hparams = Hparams.from_checkpoint(good)
    assert hparams.momentum == 0.9 and hparams.weight_decay == 0.0
    settings = {key: group[key] for key in ("momentum", "dampening", "nesterov", "maximize", "weight_decay")}
    assert settings == {"momentum": 0.9, "dampening": 0, "nesterov": False, "maximize": False, "weight_decay": 0.0}
    assert group["lr"] == hparams.lr
    # trained exactly as the unaltered file resumes: same steps, same momentum buffers
    assert torch.equal(resumed["weight"], resumed_from_good["weight"])
    assert torch.equal(resumed["bias"], resumed_from_good["bias"])
    assert helpers.same_checkpoint(resumed["optimizer_state"], resumed_from_good["optimizer_state"])
    assert not torch.equal(resumed["weight"], good["weight"])  # it did train


def test_the_optimizer_is_rebuilt_from_the_hparams_whatever_the_state_says(good):
    """Only the momentum buffers come from the file; every setting from the hparams."""
    good["optimizer_state"]["param_groups"][0].update(maximize=True, lr=50.0, momentum=0.1, nesterov=True)
    model = model_from_checkpoint(good, CPU)
    group = model.trainer.param_groups[0]
    hparams = Hparams.from_checkpoint(good)
    assert (group["maximize"], group["nesterov"]) == (False, False)
    assert (group["lr"], group["momentum"]) == (hparams.lr, hparams.momentum)
    buffer = model.trainer.state[model.net[1].weight]["momentum_buffer"]
    assert torch.equal(buffer, good["optimizer_state"]["state"][0]["momentum_buffer"])


# --------------------------------------------------------------------------- 3. tracebacks: what a checkpoint holds


def test_markup_in_class_names_is_shown_literally(good, synthetic_data_dir, tmp_path):
    names = ["[/]", "[bold]", "[red]x[/red]", "a]", "[link=http://x]y", "$x$", "\\", "%s", "{}", "[/bold]"]
    path = saved(tmp_path, "markup.pt", {**good, "class_names": names})
    result = evaluate(path, synthetic_data_dir)
    assert_clean(result)
    assert result.exit_code == 0, result.output
    table = result.output.split("Per class")[1]
    assert all(name in table for name in names)
    result = invoke("predict", path, "--data-dir", synthetic_data_dir, "--device", "cpu", "--out", tmp_path / "p.png")
    assert_clean(result)
    assert result.exit_code == 0, result.output
    assert any(name in result.output for name in names)


ODD_BUT_VALID = {
    "transposed-view": lambda g: {**g, "weight": g["weight"].T.contiguous().T},
    "view-of-a-larger-storage": lambda g: {**g, "weight": torch.zeros(784, 20)[:, ::2].copy_(g["weight"])},
    "expanded-bias": lambda g: {**g, "bias": g["bias"][:1].expand(10)},
    "parameter": lambda g: {**g, "weight": nn.Parameter(g["weight"].clone())},
}


@pytest.mark.parametrize("case", ODD_BUT_VALID, ids=list(ODD_BUT_VALID))
def test_oddly_laid_out_dense_tensors_are_copied_and_work(case, good, synthetic_data_dir, tmp_path):
    """Strides, views and expanded storages are legal torch; the loader hands out plain copies,
    so evaluation matches the same values stored plainly and a resume can step in place."""
    odd = ODD_BUT_VALID[case](copy.deepcopy(good))
    plain = {**good, "weight": odd["weight"].detach().contiguous(), "bias": odd["bias"].contiguous()}
    odd_path, plain_path = saved(tmp_path, "odd.pt", odd), saved(tmp_path, "plain.pt", plain)
    loaded = ckpt.load_checkpoint(odd_path)
    assert loaded["weight"].is_contiguous() and not loaded["weight"].requires_grad
    odd_eval, plain_eval = (
        evaluate(odd_path, synthetic_data_dir, "--json"),
        evaluate(plain_path, synthetic_data_dir, "--json"),
    )
    assert odd_eval.exit_code == 0, odd_eval.output
    assert helpers.only_json(odd_eval)["test_acc"] == helpers.only_json(plain_eval)["test_acc"]
    resumed = helpers.train_json(synthetic_data_dir, tmp_path, "--resume", odd_path, "--epochs", "2")
    assert resumed["epochs"] == 2


REFUSED_CONTENT = {
    "sparse-coo-weight": (lambda g: {**g, "weight": g["weight"].to_sparse()}, ["weight", "sparse"]),
    "sparse-csr-weight": (lambda g: {**g, "weight": g["weight"].to_sparse_csr()}, ["weight", "sparse"]),
    "sparse-momentum-buffer": (
        lambda g: _with_buffer(g, g["optimizer_state"]["state"][1]["momentum_buffer"].to_sparse()),
        ["momentum buffer", "sparse"],
    ),
    "huge-expanded-weight": (lambda g: {**g, "weight": torch.zeros(1).expand(10**6, 10**6)}, ["weight", "shape"]),
    "seed-2**100": (lambda g: {**g, "seed": 2**100}, ["seed"]),
    "seed-negative": (lambda g: {**g, "seed": -1}, ["seed"]),
    "epoch-2**100": (lambda g: {**g, "epoch": 2**100}, ["epoch"]),
    "hparams-batch-size-2**100": (lambda g: {**g, "hparams": {**g["hparams"], "batch_size": 2**100}}, ["batch_size"]),
    "hparams-momentum-above-1": (lambda g: {**g, "hparams": {**g["hparams"], "momentum": 5.0}}, ["momentum"]),
    "history-holding-a-tensor": (lambda g: {**g, "history": [{"epoch": 1, "x": torch.zeros(3)}]}, ["history"]),
    "optimizer-without-state": (lambda g: _without(g, "state"), ["optimizer_state"]),
    "optimizer-without-param-groups": (lambda g: _without(g, "param_groups"), ["optimizer_state"]),
    "optimizer-group-not-a-dict": (lambda g: _with_groups(g, [[0, 1]]), ["optimizer_state"]),
    "optimizer-buffer-of-ints": (
        lambda g: _with_buffer(g, torch.zeros(10, dtype=torch.int64)),
        ["momentum buffer", "dtype"],
    ),
    "optimizer-unknown-per-parameter-key": (
        lambda g: _with_state(g, {0: {"momentum_buffer": None, "step": torch.zeros(10**3)}}),
        ["optimizer_state"],
    ),
    "rng-state-huge": (lambda g: {**g, "rng_state": {"shuffle": torch.zeros(10**7, dtype=torch.uint8)}}, ["rng_state"]),
}


def _without(good: dict, key: str) -> dict:
    return {**good, "optimizer_state": {k: v for k, v in good["optimizer_state"].items() if k != key}}


def _with_groups(good: dict, groups) -> dict:
    return {**good, "optimizer_state": {**good["optimizer_state"], "param_groups": groups}}


def _with_state(good: dict, state) -> dict:
    return {**good, "optimizer_state": {**good["optimizer_state"], "state": state}}


def _with_buffer(good: dict, buffer: torch.Tensor) -> dict:
    return _with_state(good, {0: good["optimizer_state"]["state"][0], 1: {"momentum_buffer": buffer}})


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("case", REFUSED_CONTENT, ids=list(REFUSED_CONTENT))
def test_content_that_would_crash_later_is_refused_in_one_line(case, good, synthetic_data_dir, tmp_path):
    build, needles = REFUSED_CONTENT[case]
    path = saved(tmp_path, "bad.pt", build(copy.deepcopy(good)))
    result = evaluate(path, synthetic_data_dir)
    assert result.exit_code == 1
    one_error(result, str(path), *needles)
    result = run_train(synthetic_data_dir, tmp_path, "--resume", path, "--epochs", "3")
    assert result.exit_code == 1
    one_error(result, str(path), *needles)


@pytest.mark.parametrize("option", ["--epochs", "--batch-size", "--seed"])
def test_integers_too_large_for_torch_are_usage_errors(option, synthetic_data_dir, tmp_path):
    result = run_train(synthetic_data_dir, tmp_path, option, str(2**100))
    assert result.exit_code == 2
    assert_clean(result)
    assert option in result.stderr and not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- 4. hangs and memory blow-ups


def run_cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m softmax_cli ARGS` in its own process, so a hang fails the test instead of the session."""
    return subprocess.run(
        [sys.executable, "-m", "softmax_cli", *map(str, args)],
        cwd=helpers.PROJECT_ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@POSIX_ONLY
def test_a_fifo_is_refused_at_once_wherever_a_checkpoint_goes(synthetic_data_dir, tmp_path):
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    for args, code in (
        (["eval", fifo], 1),
        (["predict", fifo], 1),
        (["train", "--resume", fifo, "--epochs", "2"], 1),
        (["train", "--checkpoint", fifo, "--epochs", "1"], 2),
    ):
        done = run_cli(*args, "--data-dir", synthetic_data_dir, "--device", "cpu", timeout=60)
        assert done.returncode == code, done.stderr
        assert "FIFO" in done.stderr or "not a regular file" in done.stderr
        assert "Traceback" not in done.stderr


def test_dev_zero_and_a_huge_file_are_refused_before_reading(synthetic_data_dir, tmp_path):
    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as handle:
        handle.truncate(100 * 2**30)  # 100 GB, sparse: no disk space used
    candidates = [huge] + ([Path("/dev/zero")] if Path("/dev/zero").exists() else [])
    for path in candidates:
        done = run_cli("eval", path, "--data-dir", synthetic_data_dir, "--device", "cpu", timeout=60)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and ("bytes" in done.stderr or "device" in done.stderr)


def zip_bomb(good_path: Path, path: Path, inflated_bytes: int) -> Path:
    """A real checkpoint's archive plus one entry that deflates `inflated_bytes` of zeros into a few KB."""
    with zipfile.ZipFile(good_path) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bomb:
        for info in source.infolist():
            bomb.writestr(info, source.read(info.filename))  # as torch wrote them: stored
        prefix = source.namelist()[0].split("/")[0]
        with bomb.open(f"{prefix}/data/99", "w", force_zip64=True) as entry:
            chunk = bytes(2**20)
            for _ in range(inflated_bytes // len(chunk)):
                entry.write(chunk)
    return path


def test_a_zip_bomb_is_refused_by_its_declared_sizes(concise_momentum, synthetic_data_dir, tmp_path):
    bomb = zip_bomb(concise_momentum, tmp_path / "bomb.pt", 2 * ckpt.MAX_CHECKPOINT_BYTES)
    assert bomb.stat().st_size < ckpt.MAX_CHECKPOINT_BYTES // 100
    torch.load(bomb, weights_only=True)  # torch itself would load it (the extra entry is unused)
    result = evaluate(bomb, synthetic_data_dir)
    assert result.exit_code == 1
    one_error(result, str(bomb), "unpack")


# --------------------------------------------------------------------------- 7. --checkpoint usage errors


@pytest.mark.parametrize("value", ["", "DIR", "."])
def test_a_checkpoint_that_is_empty_or_a_directory_is_a_usage_error(value, synthetic_data_dir, tmp_path):
    value = str(tmp_path) if value == "DIR" else value
    result = run_train(synthetic_data_dir, tmp_path, "--epochs", "1", "--checkpoint", value)
    assert result.exit_code == 2, result.output
    assert_clean(result)
    assert "--checkpoint" in result.stderr and not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- 8. paths that are no checkpoint file

# Every command that reads a checkpoint, given PATH and the data dir; what it writes goes beside PATH.
READERS = {
    "eval": lambda p, data: ["eval", p, "--data-dir", data, "--device", "cpu", "--runs-dir", p.parent],
    "predict": lambda p, data: ["predict", p, "--data-dir", data, "--device", "cpu", "--out", p.parent / "p.png"],
    "plot": lambda p, data: ["plot", p, "--out", p.parent / "curves.png"],
    "train-resume": lambda p, data: ["train", "--resume", p, "--data-dir", data, "--runs-dir", p.parent / "runs"],
}


def run_module(folder: Path, *args) -> subprocess.CompletedProcess:
    """`python -X importtime -m softmax_cli ARGS` in folder: a fresh interpreter, whose stderr lists every import."""
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "softmax_cli", *map(str, args)],
        cwd=folder,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def imported_torch(done: subprocess.CompletedProcess) -> bool:
    """Whether the -X importtime listing has torch itself (`import time: ... | torch`)."""
    return any(line.split("|")[-1].strip() == "torch" for line in done.stderr.splitlines() if "|" in line)


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.lower().startswith("error:")]


@POSIX_ONLY
@pytest.mark.parametrize("command", READERS, ids=list(READERS))
def test_a_symlink_loop_is_called_one_by_every_command(command, synthetic_data_dir, tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop.name)  # `ln -s loop loop`
    result = invoke(*READERS[command](loop, synthetic_data_dir))
    assert result.exit_code == 1
    line = one_error(result, f"{loop} is a symbolic link loop, not a checkpoint file")
    assert "no such file" not in line and "does not exist" not in line
    assert os.listdir(tmp_path) == ["loop"]  # nothing written: no run, no picture


# Paths eval, predict and plot refuse before importing torch, and the words each refusal has.
BAD_PATHS = {
    "missing": (lambda folder: folder / "missing.pt", ["missing.pt: no such file"], "does not exist"),
    "loop": (lambda folder: (folder / "loop", (folder / "loop").symlink_to("loop"))[0], ["symbolic link loop"], None),
    "dangling-link": (
        lambda folder: (folder / "link.pt", (folder / "link.pt").symlink_to("nowhere.pt"))[0],
        ["link.pt is a symbolic link to nowhere.pt, which does not exist"],
        None,
    ),
    "fifo": (lambda folder: (folder / "pipe.pt", os.mkfifo(folder / "pipe.pt"))[0], ["FIFO", "not a checkpoint"], None),
}


@POSIX_ONLY
@pytest.mark.parametrize("command", ["eval", "predict", "plot"])
@pytest.mark.parametrize("case", BAD_PATHS, ids=list(BAD_PATHS))
def test_a_bad_checkpoint_path_is_refused_before_torch_is_imported(command, case, synthetic_data_dir, tmp_path):
    build, needles, plot_usage_error = BAD_PATHS[case]
    path = build(tmp_path)
    done = run_module(tmp_path, *READERS[command](path, synthetic_data_dir))
    errors = error_lines(done)
    assert len(errors) == 1, done.stderr[-3000:]
    if command == "plot" and plot_usage_error:  # a missing argument path is a usage error, as before
        assert done.returncode == 2 and plot_usage_error in errors[0]
    else:
        assert done.returncode == 1
        assert all(needle in errors[0] for needle in needles), errors[0]
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not imported_torch(done)


def test_the_import_probe_sees_torch_where_a_command_needs_it(concise_momentum, synthetic_data_dir, tmp_path):
    """The control: evaluating a real checkpoint does import torch, and the probe says so."""
    done = run_module(tmp_path, "eval", concise_momentum, "--data-dir", synthetic_data_dir, "--device", "cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    assert imported_torch(done)
