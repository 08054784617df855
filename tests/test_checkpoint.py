"""The checkpoint format (softmax_cli.runs.checkpoint): contents, safe loading, validation, atomic writes.

Checkpoints are trained for real on the session's small synthetic dataset (conftest's
synthetic_data_dir, 600 train / 200 test images), mostly through training.fit for speed.
Bad files are refused both by load_checkpoint and by the two commands that read
checkpoints, `softmax eval` and `softmax train --resume`: one `error:` line, a non-zero
exit, never a traceback. The only fault injection is os.replace / torch.save in the
atomic-write tests.
"""

from __future__ import annotations

import io
import math
import os
import pathlib
import pickle
import random
from datetime import datetime
from pathlib import Path

import pytest
import torch
from torch import nn

from softmax_cli import atomic, evaluation
from softmax_cli.config import Hparams
from softmax_cli.errors import CheckpointError, TrainingDiverged
from softmax_cli.runs import checkpoint as ckpt
from tests import helpers
from tests.helpers import CPU, InterruptAt, fit, same_checkpoint

DOCUMENTED_KEYS = {
    "format",
    "version",
    "impl",
    "weight",
    "bias",
    "class_names",
    "hparams",
    "epoch",
    "history",
    "seed",
    "optimizer_state",
    "rng_state",
    "input_standardization",
    "torch_version",
    "created",
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


# --------------------------------------------------------------------------- helpers


def raw_load(path: Path):
    return torch.load(path, weights_only=True, map_location="cpu")


def plain_leaves(value, where="checkpoint"):
    """Yield (where, leaf); fails on any container that is not exactly a list or a dict."""
    if isinstance(value, dict):
        assert type(value) is dict, f"{where} is a {type(value).__name__}, not a plain dict"
        for key, item in value.items():
            assert type(key) in (str, int), f"{where} has a {type(key).__name__} key"
            yield from plain_leaves(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        assert type(value) is list, f"{where} is a {type(value).__name__}, not a list"
        for i, item in enumerate(value):
            yield from plain_leaves(item, f"{where}[{i}]")
    else:
        yield where, value


def assert_one_line_error(result, *needles: str) -> str:
    """A refused command: non-zero exit, no exception escaped, no traceback, stdout empty,
    and stderr exactly one line `error: ...` containing every needle. Returns that line."""
    assert result.exit_code != 0, result.output
    helpers.assert_clean(result)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def trained(synthetic_data_dir, tmp_path_factory) -> dict:
    """Two-epoch checkpoints: scratch, scratch with momentum, concise with momentum; plus their models."""
    base = tmp_path_factory.mktemp("ckpt-runs")
    runs = {}
    for name, hparams in {
        "scratch": {"impl": "scratch"},
        "scratch-momentum": {"impl": "scratch", "momentum": 0.9},
        "concise": {"impl": "concise", "momentum": 0.9},
        "concise-plain": {"impl": "concise"},
    }.items():
        runs[name] = helpers.fit_model(synthetic_data_dir, base / name, **hparams)
    return runs


@pytest.fixture(scope="module")
def good_path(trained) -> Path:
    return trained["scratch"][0].checkpoint


@pytest.fixture
def good(good_path) -> dict:
    """A fresh copy of a valid checkpoint dict, to damage."""
    return raw_load(good_path)


# --------------------------------------------------------------------------- 1. the format


@pytest.mark.parametrize("name", ["scratch", "scratch-momentum", "concise", "concise-plain"])
def test_checkpoint_loads_weights_only_and_holds_plain_data(trained, name):
    result, _ = trained[name]
    raw = raw_load(result.checkpoint)  # torch.load(weights_only=True, map_location="cpu") itself
    assert type(raw) is dict
    assert DOCUMENTED_KEYS <= raw.keys()
    for where, leaf in plain_leaves(raw):
        assert isinstance(leaf, torch.Tensor) or type(leaf) in (str, int, float, bool, type(None)), (
            f"{where} is a {type(leaf).__name__}"
        )
        if isinstance(leaf, torch.Tensor):
            assert leaf.device.type == "cpu", where
    assert raw["format"] == ckpt.FORMAT_NAME and raw["version"] == ckpt.FORMAT_VERSION
    assert raw["impl"] == result.hparams.impl
    assert raw["weight"].shape == (784, 10) and raw["weight"].dtype == torch.float32
    assert raw["bias"].shape == (10,) and raw["bias"].dtype == torch.float32
    assert raw["class_names"] == FASHION_MNIST_CLASSES
    assert raw["hparams"] == result.hparams.as_dict()
    assert raw["epoch"] == 2 and raw["seed"] == result.hparams.seed
    assert [entry["epoch"] for entry in raw["history"]] == [1, 2]
    assert raw["history"] == result.history
    assert raw["torch_version"] == str(torch.__version__) and type(raw["torch_version"]) is str
    assert datetime.fromisoformat(raw["created"]).tzinfo is not None
    assert raw["rng_state"]["shuffle"].dtype == torch.uint8
    assert raw["input_standardization"] is None
    # load_checkpoint accepts what training wrote, unchanged
    assert same_checkpoint(ckpt.load_checkpoint(result.checkpoint), raw)


def test_optimizer_state_is_kept_where_there_is_one(trained):
    assert raw_load(trained["scratch"][0].checkpoint)["optimizer_state"] is None  # plain SGD: nothing to keep

    scratch_result, scratch_model = trained["scratch-momentum"]
    buffers = raw_load(scratch_result.checkpoint)["optimizer_state"]["momentum_buffers"]
    assert torch.equal(buffers[0], scratch_model.momentum_buffers[0])
    assert torch.equal(buffers[1], scratch_model.momentum_buffers[1])

    concise_result, concise_model = trained["concise"]
    state = raw_load(concise_result.checkpoint)["optimizer_state"]
    expected = concise_model.trainer.state_dict()
    assert state["param_groups"] == expected["param_groups"]
    assert state["param_groups"][0]["momentum"] == 0.9
    for index in (0, 1):
        assert torch.equal(state["state"][index]["momentum_buffer"], expected["state"][index]["momentum_buffer"])


def test_weight_is_stored_in_one_canonical_784_by_10_layout(trained):
    concise_result, concise_model = trained["concise"]
    raw = raw_load(concise_result.checkpoint)
    linear = concise_model.net[1]
    assert torch.equal(raw["weight"], linear.weight.detach().T)
    assert torch.equal(raw["bias"], linear.bias.detach())

    scratch_result, scratch_model = trained["scratch"]
    raw = raw_load(scratch_result.checkpoint)
    assert torch.equal(raw["weight"], scratch_model.W.detach())
    assert torch.equal(raw["bias"], scratch_model.b.detach())


@pytest.mark.parametrize("source, other", [("scratch", "concise"), ("concise-plain", "scratch")])
def test_a_checkpoint_evaluates_the_same_with_either_implementation(trained, synthetic_data_dir, source, other):
    """The canonical layout means the same numbers run through nn.Linear or X @ W + b."""
    raw = raw_load(trained[source][0].checkpoint)
    as_other = {**raw, "impl": other, "hparams": {**raw["hparams"], "impl": other}, "optimizer_state": None}
    mine, _ = evaluation.evaluate_checkpoint(raw, synthetic_data_dir, CPU)
    theirs, model = evaluation.evaluate_checkpoint(as_other, synthetic_data_dir, CPU)
    assert model.impl == other
    assert torch.equal(mine.confusion, theirs.confusion)
    assert mine.accuracy == theirs.accuracy and mine.n == theirs.n == 200
    assert theirs.loss == pytest.approx(mine.loss, rel=1e-5)


def test_build_checkpoint_refuses_anything_that_would_not_load_weights_only(good):
    args = dict(
        impl="scratch",
        weight=good["weight"],
        bias=good["bias"],
        class_names=good["class_names"],
        hparams=good["hparams"],
        epoch=2,
        history=good["history"],
        seed=1,
        optimizer_state=None,
        rng_state=good["rng_state"],
        input_standardization=None,
    )
    assert type(ckpt.build_checkpoint(**args)) is dict
    with pytest.raises(TypeError, match="PosixPath"):
        ckpt.build_checkpoint(**{**args, "hparams": {**good["hparams"], "data_dir": Path("/tmp")}})
    with pytest.raises(TypeError, match="tuple"):
        ckpt.build_checkpoint(**{**args, "history": [{"epoch": 1, "pair": (1, 2)}]})


def test_save_and_load_round_trip(tmp_path, good):
    path = tmp_path / "deeper" / "folder" / "copy.pt"  # missing folders are created
    ckpt.save_checkpoint(good, path)
    assert same_checkpoint(ckpt.load_checkpoint(path), good)
    assert os.listdir(path.parent) == ["copy.pt"]


def test_checkpoint_file_gets_the_usual_mode_not_mkstemps_0600(tmp_path, good):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint(good, path)
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# --------------------------------------------------------------------------- 4. bad input


class MarkerTouch:
    """A pickle payload: unpickling it creates `marker` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class MarkerSystem:
    """The classic payload: os.system('touch marker') on unpickling."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def torch_file(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def damaged(good: dict, **changes) -> dict:
    return {**good, **changes}


# Each case: (id, build(tmp_path, good_path, good_dict) -> path, words the error line must contain)
BAD_INPUTS = [
    ("missing", lambda d, p, g: d / "nope.pt", ["no such file"]),
    ("directory", lambda d, p, g: d, ["is a directory"]),
    ("empty", lambda d, p, g: (d / "empty.pt", (d / "empty.pt").write_bytes(b""))[0], ["is empty"]),
    (
        "random-bytes",
        lambda d, p, g: (d / "r.pt", (d / "r.pt").write_bytes(random.Random(0).randbytes(4096)))[0],
        ["not a readable checkpoint"],
    ),
    ("text", lambda d, p, g: (d / "t.pt", (d / "t.pt").write_text("hello, world\n"))[0], ["not a readable checkpoint"]),
    (
        "truncated",
        lambda d, p, g: (d / "half.pt", (d / "half.pt").write_bytes(p.read_bytes()[: p.stat().st_size // 2]))[0],
        ["not a readable checkpoint"],
    ),
    (
        "bare-tensor",
        lambda d, p, g: torch_file(d / "tensor.pt", torch.zeros(784, 10)),
        ["not a softmax-cli checkpoint", "Tensor"],
    ),
    ("list", lambda d, p, g: torch_file(d / "list.pt", [1, 2, 3]), ["not a softmax-cli checkpoint", "list"]),
    (
        "linear-state-dict",
        lambda d, p, g: torch_file(d / "linear.pt", nn.Linear(784, 10).state_dict()),
        ["not a softmax-cli checkpoint"],
    ),
    (
        "foreign-dict",
        lambda d, p, g: torch_file(d / "foreign.pt", {"weight": g["weight"], "bias": g["bias"]}),
        ["not a softmax-cli checkpoint"],
    ),
    (
        "weight-shape",
        lambda d, p, g: torch_file(d / "ws.pt", damaged(g, weight=torch.zeros(784, 9))),
        ["weight", "shape"],
    ),
    (
        "weight-linear-layout",
        lambda d, p, g: torch_file(d / "wt.pt", damaged(g, weight=g["weight"].T.contiguous())),
        ["weight", "(10, 784)"],
    ),
    ("bias-shape", lambda d, p, g: torch_file(d / "bs.pt", damaged(g, bias=torch.zeros(1, 10))), ["bias", "shape"]),
    (
        "weight-dtype",
        lambda d, p, g: torch_file(d / "wd.pt", damaged(g, weight=g["weight"].double())),
        ["weight", "float64"],
    ),
    (
        "weight-int",
        lambda d, p, g: torch_file(d / "wi.pt", damaged(g, weight=torch.zeros(784, 10, dtype=torch.int64))),
        ["weight", "dtype"],
    ),
    (
        "weight-not-tensor",
        lambda d, p, g: torch_file(d / "wl.pt", damaged(g, weight=g["weight"].tolist())),
        ["weight", "not a tensor"],
    ),
    (
        "nan-weight",
        lambda d, p, g: torch_file(d / "nan.pt", damaged(g, weight=torch.full((784, 10), math.nan))),
        ["weight", "NaN"],
    ),
    (
        "inf-bias",
        lambda d, p, g: torch_file(d / "inf.pt", damaged(g, bias=torch.full((10,), math.inf))),
        ["bias", "infinite"],
    ),
    (
        "newer-version",
        lambda d, p, g: torch_file(d / "v2.pt", damaged(g, version=ckpt.FORMAT_VERSION + 1)),
        ["version 2", "newer", "upgrade"],
    ),
    ("version-not-int", lambda d, p, g: torch_file(d / "vs.pt", damaged(g, version="1")), ["version"]),
    (
        "missing-keys",
        lambda d, p, g: torch_file(d / "mk.pt", {k: v for k, v in g.items() if k not in ("weight", "history")}),
        ["lacks", "weight", "history"],
    ),
    ("unknown-impl", lambda d, p, g: torch_file(d / "ui.pt", damaged(g, impl="keras")), ["impl", "keras"]),
    ("class-names", lambda d, p, g: torch_file(d / "cn.pt", damaged(g, class_names=["a", "b"])), ["class_names"]),
    ("negative-epoch", lambda d, p, g: torch_file(d / "ne.pt", damaged(g, epoch=-1)), ["epoch"]),
    (
        "hparams-batch-size",
        lambda d, p, g: torch_file(d / "hb.pt", damaged(g, hparams={**g["hparams"], "batch_size": 0})),
        ["batch_size"],
    ),
    (
        "hparams-lr-type",
        lambda d, p, g: torch_file(d / "hl.pt", damaged(g, hparams={**g["hparams"], "lr": "fast"})),
        ["lr"],
    ),
    (
        "hparams-loader",
        lambda d, p, g: torch_file(d / "hd.pt", damaged(g, hparams={**g["hparams"], "loader": "disk"})),
        ["loader"],
    ),
    (
        "hparams-impl-mismatch",
        lambda d, p, g: torch_file(d / "hi.pt", damaged(g, hparams={**g["hparams"], "impl": "concise"})),
        ["impl", "contradicts"],
    ),
    ("rng-state", lambda d, p, g: torch_file(d / "rs.pt", damaged(g, rng_state={"shuffle": [1, 2]})), ["rng_state"]),
    (
        "optimizer-state",
        lambda d, p, g: torch_file(d / "os.pt", damaged(g, optimizer_state={"momentum_buffers": "x"})),
        ["optimizer_state"],
    ),
    (
        "optimizer-buffer-shape",
        lambda d, p, g: torch_file(
            d / "ob.pt", damaged(g, optimizer_state={"momentum_buffers": [torch.zeros(10, 784), torch.zeros(10)]})
        ),
        ["momentum buffer", "shape"],
    ),
    (
        "standardization-std",
        lambda d, p, g: torch_file(
            d / "st.pt", damaged(g, input_standardization={"mean": torch.zeros(784), "std": torch.zeros(784)})
        ),
        ["std", "positive"],
    ),
]
BAD_IDS = [case[0] for case in BAD_INPUTS]


@pytest.fixture
def bad_file(request, tmp_path, good_path, good):
    name, build, needles = request.param
    folder = tmp_path / "bad"
    folder.mkdir()
    return build(folder, good_path, good), needles


@pytest.mark.parametrize("bad_file", BAD_INPUTS, ids=BAD_IDS, indirect=True)
def test_bad_checkpoint_is_refused_with_one_clear_line(bad_file):
    """Every damage, once, where the rule lives (load_checkpoint); none of these files is a pickle
    that runs code, so none is called one. How each entry point reports the refusal is checked
    below on two cases each: they all go through load_checkpoint."""
    path, needles = bad_file
    with pytest.raises(CheckpointError) as caught:
        ckpt.load_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for needle in needles:
        assert needle in message
    assert "could run code" not in message


# Two cases for each entry point: a file that is not a checkpoint at all, and one whose tensors are wrong.
ENTRY_POINT_CASES = [case for case in BAD_INPUTS if case[0] in ("text", "bias-shape")]


@pytest.mark.parametrize("bad_file", ENTRY_POINT_CASES, ids=[case[0] for case in ENTRY_POINT_CASES], indirect=True)
def test_eval_and_resume_refuse_a_bad_checkpoint_in_one_line(bad_file, synthetic_data_dir, tmp_path):
    path, needles = bad_file
    result = helpers.invoke("eval", path, "--data-dir", synthetic_data_dir, "--device", "cpu", "--json")
    assert result.exit_code == 1
    assert_one_line_error(result, str(path), *needles)

    out = tmp_path / "out.pt"
    result = helpers.run_train(
        synthetic_data_dir, tmp_path, "--resume", path, "--epochs", "3", "--checkpoint", out, "--json"
    )
    assert result.exit_code == 1
    assert_one_line_error(result, str(path), *needles)
    assert not out.exists() and not (tmp_path / "runs").exists()  # refused before anything started


def test_the_malicious_payloads_are_live(tmp_path):
    """Guard for the tests below: unpickled unsafely, each payload does create its marker."""
    for payload in (MarkerTouch, MarkerSystem):
        marker = tmp_path / f"{payload.__name__}.marker"
        pickle.loads(pickle.dumps(payload(marker)))  # noqa: S301 - on purpose, with our own payload
        assert marker.exists()


MALICIOUS = {
    "raw-pickle-touch": lambda path, marker: path.write_bytes(pickle.dumps(MarkerTouch(marker))),
    "raw-pickle-protocol2-system": lambda path, marker: path.write_bytes(
        pickle.dumps(MarkerSystem(marker), protocol=2)
    ),
    "torch-save-touch": lambda path, marker: torch.save(MarkerTouch(marker), path),
    "torch-save-system-inside-our-format": lambda path, marker: torch.save(
        {"format": ckpt.FORMAT_NAME, "version": 1, "weight": MarkerSystem(marker)}, path
    ),
}


@pytest.mark.parametrize("how", MALICIOUS, ids=list(MALICIOUS))
def test_malicious_pickle_is_refused_without_running(how, tmp_path, synthetic_data_dir):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    MALICIOUS[how](path, marker)
    assert not marker.exists()

    with pytest.raises(CheckpointError) as caught:
        ckpt.load_checkpoint(path)
    assert "\n" not in str(caught.value)
    if how.startswith("torch-save"):
        assert "refused" in str(caught.value) and "could run code" in str(caught.value)

    result = helpers.invoke("eval", path, "--data-dir", synthetic_data_dir, "--device", "cpu")
    assert_one_line_error(result, str(path))
    result = helpers.run_train(synthetic_data_dir, tmp_path, "--resume", path)
    assert_one_line_error(result, str(path))
    assert not marker.exists()


# --------------------------------------------------------------------------- 5. atomic writes


def test_crash_between_write_and_rename_keeps_the_old_checkpoint(tmp_path, good, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint(good, path)
    before = path.read_bytes()
    calls = []

    def crash(src, dst):
        calls.append((src, dst))
        assert Path(src).stat().st_size > 0  # the new file was fully written, only the rename fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(CheckpointError, match="No space left on device"):
        ckpt.save_checkpoint(damaged(good, epoch=99), path)
    monkeypatch.undo()

    assert len(calls) == 1 and Path(calls[0][1]) == path
    assert path.read_bytes() == before
    assert same_checkpoint(ckpt.load_checkpoint(path), good)
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # no temporary file left behind


def test_ctrl_c_during_torch_save_keeps_the_old_checkpoint(tmp_path, good, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint(good, path)
    before = path.read_bytes()
    real_save = torch.save

    def interrupted_save(obj, handle, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        handle.write(buffer.getvalue()[:1000])  # half-written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(damaged(good, epoch=99), path)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert same_checkpoint(ckpt.load_checkpoint(path), good)
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_first_save_interrupted_leaves_nothing(tmp_path, good, monkeypatch):
    def crash(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(CheckpointError):
        ckpt.save_checkpoint(good, tmp_path / "checkpoint.pt")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_unwritable_checkpoint_location_is_a_clear_error(tmp_path, good, synthetic_data_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match="cannot write the checkpoint") as caught:
        ckpt.save_checkpoint(good, blocker / "checkpoint.pt")
    assert "\n" not in str(caught.value)

    result = helpers.run_train(synthetic_data_dir, tmp_path, "--epochs", "1", "--checkpoint", blocker / "ckpt.pt")
    assert result.exit_code == 1
    assert error_line(result).startswith("error: cannot write the checkpoint")


# --------------------------------------------------------------------------- Ctrl-C and divergence


@pytest.mark.parametrize("epoch", [1, 2])
def test_ctrl_c_keeps_the_last_completed_epochs_checkpoint(synthetic_data_dir, tmp_path, epoch):
    """The checkpoint is written before on_epoch_end, where the simulated Ctrl-C comes, so the
    interrupted epoch's is kept: the first epoch's too."""
    callback = InterruptAt(epoch=epoch)
    result = fit(synthetic_data_dir, tmp_path, callback, epochs=4)
    assert result.interrupted is True
    assert callback.ended is result  # on_train_end still ran
    assert result.checkpoint == tmp_path / "checkpoint.pt"
    loaded = ckpt.load_checkpoint(result.checkpoint)
    assert loaded["epoch"] == epoch and len(loaded["history"]) == epoch
    assert loaded["hparams"]["epochs"] == 4  # resuming without --epochs finishes the planned run
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def error_line(result) -> str:
    """The one `error: ...` line of a run that failed after training started (the table above it
    must end with a newline, so the error starts its own line)."""
    helpers.assert_clean(result)
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: "), errors[0]
    return errors[0]


def test_naive_softmax_diverges_at_a_huge_lr_and_the_stable_one_does_not(synthetic_data_dir, tmp_path, good_path):
    """lr 1e4 overflows the book's softmax in epoch 1: exit 1 and one error line, below the
    training table, naming the epoch, the overflow and the cure; a good checkpoint already at
    --checkpoint is left as it was. The LogSumExp form trains on at the same learning rate."""
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(good_path.read_bytes())
    before = target.read_bytes()
    result = helpers.run_train(
        synthetic_data_dir,
        tmp_path,
        "--impl",
        "scratch",
        "--naive-softmax",
        "--lr",
        "1e4",
        "--epochs",
        "3",
        "--checkpoint",
        target,
    )
    assert result.exit_code == 1
    error = error_line(result)
    assert error.startswith("error: training loss became")
    assert "in epoch 1" in error and "overflow" in error and "--naive-softmax" in error and "LogSumExp" in error
    assert "no checkpoint was written" in error
    assert target.read_bytes() == before

    stable = helpers.train_json(
        synthetic_data_dir, tmp_path / "stable", "--impl", "scratch", "--lr", "1e4", "--epochs", "2"
    )
    assert [entry["epoch"] for entry in stable["history"]] == [1, 2]
    assert all(math.isfinite(entry["train_loss"]) for entry in stable["history"])


def test_divergence_after_good_epochs_names_the_epoch_and_checkpoint(synthetic_data_dir, tmp_path):
    """lr 0.9 with the naive softmax overflows within a few epochs (exactly when depends on the
    numerics): the error names the epoch, and any checkpoint it calls the last good one holds
    the epoch before and loads (finite weights)."""
    target = tmp_path / "checkpoint.pt"
    result = helpers.run_train(
        synthetic_data_dir,
        tmp_path,
        "--impl",
        "scratch",
        "--naive-softmax",
        "--lr",
        "0.9",
        "--epochs",
        "8",
        "--checkpoint",
        target,
    )
    assert result.exit_code == 1
    error = error_line(result)
    epoch = int(error.split("in epoch ")[1].split(":")[0])
    if epoch == 1:
        assert "no checkpoint was written" in error and not target.exists()
    else:
        assert f"the last good checkpoint is {target}" in error
        assert ckpt.load_checkpoint(target)["epoch"] == epoch - 1
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_divergence_in_a_resumed_run_leaves_the_good_checkpoint(synthetic_data_dir, tmp_path):
    """Epoch 1 trains fine; continuing it with lr 1e4 (training.fit takes any hparams) overflows the
    naive softmax in epoch 2: TrainingDiverged names epoch 2 and epoch 1's file is untouched."""
    good = fit(synthetic_data_dir, tmp_path, impl="scratch", naive_softmax=True, epochs=1)
    before = good.checkpoint.read_bytes()
    with pytest.raises(TrainingDiverged, match="in epoch 2") as caught:
        fit(
            synthetic_data_dir,
            tmp_path,
            resume_from=ckpt.load_checkpoint(good.checkpoint),
            impl="scratch",
            naive_softmax=True,
            lr=1e4,
            epochs=3,
        )
    assert "--naive-softmax" in str(caught.value) and "LogSumExp" in str(caught.value)
    assert good.checkpoint.read_bytes() == before
    assert ckpt.load_checkpoint(good.checkpoint)["epoch"] == 1


def craft_exploding_checkpoint(path: Path) -> Path:
    """A valid, finite checkpoint (our format) at epoch 1 whose next step under the book's naive
    softmax has a finite loss but a non-finite gradient: with W = 0 and b = (-10, 88, 0, ...),
    softmax(b)[0] is ~3e-43 (a float32 denormal), so class 0's loss -log(p) ~ 98 is finite while
    d(-log p)/dp = -1/p overflows. One batch per epoch (batch 1000 > 600 images) means the
    epoch's reported loss is the one computed before that poisoned step."""
    bias = torch.zeros(10)
    bias[0], bias[1] = -10.0, 88.0
    hparams = Hparams(impl="scratch", epochs=1, lr=0.1, batch_size=1000, naive_softmax=True)
    checkpoint = ckpt.build_checkpoint(
        impl="scratch",
        weight=torch.zeros(784, 10),
        bias=bias,
        class_names=FASHION_MNIST_CLASSES,
        hparams=hparams.as_dict(),
        epoch=1,
        history=[],
        seed=hparams.seed,
        optimizer_state=None,
        rng_state={"shuffle": torch.Generator().manual_seed(hparams.seed).get_state()},
        input_standardization=None,
    )
    ckpt.save_checkpoint(checkpoint, path)
    return path


def test_last_good_checkpoint_has_finite_weights(synthetic_data_dir, tmp_path):
    """The epoch's loss is measured before each step, so the epoch whose last step poisons the
    weights must itself be reported as diverged, and never checkpointed."""
    resume = craft_exploding_checkpoint(tmp_path / "exploding.pt")
    target = tmp_path / "checkpoint.pt"
    result = helpers.run_train(
        synthetic_data_dir, tmp_path, "--resume", resume, "--epochs", "3", "--checkpoint", target
    )
    assert result.exit_code == 1
    error = error_line(result)
    assert "in epoch 2" in error  # the epoch whose step produced the NaN weights
    assert "no checkpoint was written" in error and not target.exists()
    assert ckpt.load_checkpoint(resume)["epoch"] == 1  # the resumed file is the good one, untouched


def test_learning_rate_beyond_float32_is_refused_cleanly(synthetic_data_dir, tmp_path):
    """The weights are float32: --lr 1e300 used to crash torch.optim.SGD with a traceback."""
    result = helpers.run_train(synthetic_data_dir, tmp_path, "--impl", "concise", "--lr", "1e300", "--epochs", "1")
    helpers.assert_clean(result)
    assert result.exit_code == 2
    assert "--lr" in result.stderr and result.stdout == ""
    assert not (tmp_path / "runs").exists()


def test_done_after_the_training_table_starts_its_own_line(synthetic_data_dir, tmp_path):
    """Off a terminal Rich's Live used to leave the table without a final newline, gluing
    'Done: ...' (or 'error: ...', which error_line checks in every failed run) to its bottom border."""
    result = helpers.run_train(synthetic_data_dir, tmp_path, "--impl", "scratch", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert any(line.startswith("Done: ") for line in result.stdout.splitlines()), result.stdout
