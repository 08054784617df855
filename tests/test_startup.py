"""Start-up: which heavy modules each command imports, checked in a fresh interpreter per command.

torchvision costs about as much to import as torch itself (it pulls in torch._dynamo), so
the memory loader's paths (train with the default loader, eval, predict) must not import
it, and commands that need no tensors (a no-op download, runs) must not import torch. How
long anything takes is benchmarks/startup.py's business, not a test's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests import helpers

HEAVY = ("torch", "torchvision", "tensorboard", "matplotlib", "torch._dynamo", "onnx", "onnxscript")

# Runs the app in this fresh interpreter, once per command (a JSON list of argument lists, second),
# then writes each exit code and the heavy modules imported by them all to the file named first.
PROBE = textwrap.dedent("""
    import json, sys
    from softmax_cli.cli import app
    codes = []
    for args in json.loads(sys.argv[2]):
        try:
            app(args, prog_name="softmax")
            codes.append(0)
        except SystemExit as exc:
            codes.append(exc.code)
    with open(sys.argv[1], "w") as out:
        json.dump({"exits": codes, "heavy": [m for m in %r if m in sys.modules]}, out)
""") % (HEAVY,)


def imports_of(tmp_path, *args) -> list[str]:
    """The heavy modules `softmax ARGS` imported; the command must succeed."""
    return imports_of_all(tmp_path, args)


def imports_of_all(tmp_path, *commands) -> list[str]:
    """The heavy modules that `softmax ARGS`, for each ARGS in turn in one fresh process, imported in
    all (what none of them imports is absent); each command must succeed."""
    report = tmp_path / "report.json"
    argument_lists = json.dumps([[str(arg) for arg in args] for args in commands])
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), argument_lists],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(report.read_text())
    assert all(code in (0, None) for code in result["exits"]), (result["exits"], done.stderr)
    return result["heavy"]


@pytest.fixture(scope="module")
def trained(synthetic_data_dir, tmp_path_factory) -> dict:
    """A 1-epoch checkpoint of each implementation, by impl."""
    checkpoints = {}
    for impl in ("scratch", "concise"):
        folder = tmp_path_factory.mktemp(f"startup-{impl}")
        options = ("--impl", impl, "--epochs", "1", "--batch-size", "64")
        checkpoints[impl] = helpers.train_checkpoint(synthetic_data_dir, folder, *options)[0]
    return checkpoints


def test_training_with_the_memory_loader_imports_no_torchvision(synthetic_data_dir, tmp_path):
    heavy = imports_of(
        tmp_path, "train", "--data-dir", synthetic_data_dir, "--device", "cpu", "--epochs", "1", "--batch-size", "64"
    )
    assert "torch" in heavy and "torchvision" not in heavy and "torch._dynamo" not in heavy
    assert "matplotlib" not in heavy  # TensorBoard's pictures are drawn with torch


def test_the_books_dataloader_still_uses_torchvision(synthetic_data_dir, tmp_path):
    """The control: the probe does see torchvision where it is the point."""
    heavy = imports_of(
        tmp_path, "train", "--data-dir", synthetic_data_dir, "--device", "cpu", "--epochs", "1",
        "--batch-size", "64", "--loader", "dataloader", "--workers", "0",
    )  # fmt: skip
    assert "torchvision" in heavy


def test_eval_and_predict_import_no_torchvision_nor_torchs_compiler(synthetic_data_dir, trained, tmp_path):
    # torch._dynamo costs about 0.9 s; torch.optim's SGD imports it when built, which
    # evaluating a concise checkpoint has no need of. Both commands on both implementations, in one
    # process: none of them may.
    data = ("--data-dir", synthetic_data_dir, "--device", "cpu")
    commands = [(command, *extra, checkpoint, *data) for checkpoint in trained.values()
                for command, *extra in (("eval",), ("predict", "--n", "4"))]  # fmt: skip
    heavy = imports_of_all(tmp_path, *commands)
    assert "torch" in heavy and "torchvision" not in heavy and "torch._dynamo" not in heavy


def test_a_no_op_download_imports_no_torch(synthetic_data_dir, tmp_path):
    """All four files present and recorded as verified: download only stats them."""
    data_dir = tmp_path / "data"
    helpers.write_synthetic_dataset(data_dir, n_train=20, n_test=10)  # checked against their own md5s, recorded
    assert imports_of(tmp_path, "download", "--data-dir", data_dir) == []


def test_export_help_imports_no_torch_nor_onnx(tmp_path):
    assert imports_of(tmp_path, "export", "--help") == []


def test_runs_imports_no_torch(tmp_path):
    assert imports_of(tmp_path, "runs", "--runs-dir", tmp_path / "runs") == []


def test_importing_the_package_imports_no_torch_nor_the_cli():
    """`import softmax_cli as sc` is the Python API's first line: sc.train and sc.load import torch when called."""
    probe = "import json, sys, softmax_cli; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported = set(json.loads(done.stdout))
    assert "softmax_cli" in imported  # the control: the probe sees what was imported
    assert not imported & {*HEAVY, "typer", "rich", "numpy", "PIL"}


THREADS_PROBE = textwrap.dedent("""
    import json, os
    import softmax_cli.cli
    import torch
    print(json.dumps({"threads": torch.get_num_threads(), "asked": os.environ.get("OMP_NUM_THREADS"),
                      "wait": os.environ.get("OMP_WAIT_POLICY")}))
""")


@pytest.mark.parametrize("chosen", [None, "3"], ids=["left-to-the-tool", "OMP_NUM_THREADS=3"])
def test_the_command_line_runs_torch_on_one_thread_unless_the_user_chose(chosen):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    if chosen:
        env["OMP_NUM_THREADS"] = chosen
    done = subprocess.run([sys.executable, "-c", THREADS_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["asked"] == (chosen or "1") and seen["wait"] is None  # the user's number kept; nothing else imposed
    if not chosen:
        assert seen["threads"] == 1
