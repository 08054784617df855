"""`softmax export`: the exported model, run by onnxruntime (and torch.export for .pt2), computes what
`softmax eval` computes, for any batch size, standardisation included, with the class names aboard."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from softmax_cli.data.batches import read_split, to_unit_float
from softmax_cli.models import model_from_checkpoint
from softmax_cli.runs.checkpoint import load_checkpoint
from tests import helpers
from tests.helpers import assert_clean, invoke, only_json

# Skipped without onnx, onnxscript or onnxruntime. Only looked up here: importing onnxscript and onnxruntime
# takes over a second, paid by the tests that use them, not by every collection of the suite.
pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxscript", "onnxruntime")),
    reason="needs onnx, onnxscript and onnxruntime (pip install -e '.[test]')",
)

CPU = torch.device("cpu")
# How close the exported graph's logits must be to torch's: within 1e-5, and 1e-5 of the logit's size
# (float32 sums of 784 products, added in another order: logits near 10 differ by up to about 1e-5).
TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}


def export(*args):
    """`softmax export ARGS --json`, which must succeed cleanly; its JSON."""
    result = invoke("export", *args, "--json")
    assert_clean(result)
    assert result.exit_code == 0, result.output
    return only_json(result)


def onnx_logits(path: Path, images: torch.Tensor) -> torch.Tensor:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": images.numpy()})
    return torch.from_numpy(logits)


def torch_logits(checkpoint: Path, images: torch.Tensor) -> torch.Tensor:
    """The logits `softmax eval` computes: the model rebuilt from the checkpoint, on the CPU."""
    model = model_from_checkpoint(load_checkpoint(checkpoint), CPU, to_train=False)
    with torch.no_grad():
        return model.logits(images)


def unit_images(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    split = read_split(data_dir, "test")
    return to_unit_float(split.images), split.labels


@pytest.fixture(scope="module", params=["plain", "standardized"])
def exported(request, synthetic_data_dir, tmp_path_factory):
    """A synthetic-data run (scratch, or concise with --standardize) and its ONNX export: (checkpoint, out, JSON)."""
    folder = tmp_path_factory.mktemp(f"export-{request.param}")
    options = ["--epochs", "2", "--batch-size", "64"]
    options += ["--impl", "concise", "--standardize"] if request.param == "standardized" else ["--impl", "scratch"]
    checkpoint, _ = helpers.train_checkpoint(synthetic_data_dir, folder, *options)
    out = folder / "model.onnx"
    return checkpoint, out, export(checkpoint, "--out", out)


def test_the_json_says_what_was_written(exported):
    checkpoint, out, payload = exported
    assert payload["checkpoint"] == str(checkpoint) and payload["out"] == str(out)
    assert payload["format"] == "onnx" and payload["opset"] == 18
    assert payload["standardized"] == (load_checkpoint(checkpoint)["input_standardization"] is not None)
    assert out.is_file() and [p.name for p in out.parent.glob(".model.onnx*")] == []  # no temporary file left


def test_onnx_logits_match_torch_for_any_batch(exported, synthetic_data_dir):
    checkpoint, out, _ = exported
    images, _ = unit_images(synthetic_data_dir)
    expected = torch_logits(checkpoint, images)
    torch.testing.assert_close(onnx_logits(out, images), expected, **TOLERANCE)
    for batch in (1, 7):
        torch.testing.assert_close(onnx_logits(out, images[:batch]), expected[:batch], **TOLERANCE)


def test_the_graph_takes_images_and_gives_logits_with_a_dynamic_batch(exported):
    import onnx

    model = onnx.load(exported[1])
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 18
    (image,), (logit,) = model.graph.input, model.graph.output
    shape = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert image.name == "images" and isinstance(shape[0], str) and shape[1:] == [1, 28, 28]
    assert image.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert logit.name == "logits" and logit.type.tensor_type.shape.dim[1].dim_value == 10


def test_the_class_names_are_in_the_metadata(exported):
    import onnx

    checkpoint, out, payload = exported
    metadata = {prop.key: prop.value for prop in onnx.load(out).metadata_props}
    names = load_checkpoint(checkpoint)["class_names"]
    assert json.loads(metadata["class_names"]) == names == payload["class_names"]


def test_standardisation_is_inside_the_graph_when_the_run_used_it(exported, synthetic_data_dir):
    """Fed raw pixels, a standardised run's graph is not the raw x W + b, yet matches eval; a plain run's is x W + b."""
    checkpoint, out, payload = exported
    loaded = load_checkpoint(checkpoint)
    images, _ = unit_images(synthetic_data_dir)
    raw = images.reshape(-1, 784) @ loaded["weight"] + loaded["bias"]
    exported_logits = onnx_logits(out, images)
    torch.testing.assert_close(exported_logits, torch_logits(checkpoint, images), **TOLERANCE)
    if payload["standardized"]:
        assert not torch.allclose(exported_logits, raw, atol=1e-3)
    else:
        torch.testing.assert_close(exported_logits, raw, **TOLERANCE)


def test_pt2_runs_as_torch_does_with_the_class_names(exported, synthetic_data_dir, tmp_path):
    checkpoint = exported[0]
    out = tmp_path / "model.pt2"
    payload = export(checkpoint, "--out", out)
    assert payload["format"] == "pt2" and payload["opset"] is None
    extra = {"class_names": ""}
    program = torch.export.load(out, extra_files=extra)
    assert json.loads(extra["class_names"]) == load_checkpoint(checkpoint)["class_names"]
    images, _ = unit_images(synthetic_data_dir)
    for batch in (1, 7, len(images)):
        torch.testing.assert_close(
            program.module()(images[:batch]), torch_logits(checkpoint, images[:batch]), **TOLERANCE
        )


def test_the_newest_run_is_exported_and_the_path_printed(exported, tmp_path):
    checkpoint, _, _ = exported
    runs_dir = checkpoint.parent / "runs"
    out = tmp_path / "newest.onnx"
    result = invoke("export", "--runs-dir", runs_dir, "--out", out)
    assert_clean(result)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n"
    assert "No CHECKPOINT given: exporting the newest run's" in helpers.flat(result.stderr)
    assert out.is_file()


@pytest.mark.parametrize("name", ["model.txt", "model", "model.onnx.bak"])
def test_another_suffix_is_a_usage_error_before_anything_is_read(tmp_path, name):
    result = invoke("export", tmp_path / "missing.pt", "--out", tmp_path / name)
    assert_clean(result)
    assert result.exit_code == 2 and ".onnx or .pt2" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_existing_out_is_replaced_only_with_overwrite(exported, tmp_path):
    checkpoint = exported[0]
    out = tmp_path / "model.onnx"
    out.write_bytes(b"precious")
    refused = invoke("export", checkpoint, "--out", out)
    assert_clean(refused)
    assert refused.exit_code == 2 and "--overwrite" in refused.stderr and refused.stdout == ""
    assert out.read_bytes() == b"precious"
    # Refused before the checkpoint is looked for: a missing one is not what is reported.
    assert invoke("export", tmp_path / "missing.pt", "--out", out).exit_code == 2
    export(checkpoint, "--out", out, "--overwrite")
    assert out.read_bytes() != b"precious"
    assert onnx_logits(out, torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_a_folder_as_out_is_a_usage_error(exported, tmp_path):
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    result = invoke("export", exported[0], "--out", folder, "--overwrite")
    assert_clean(result)
    assert result.exit_code == 2 and "directory" in result.stderr


def test_an_unwritable_out_is_one_error_line(exported, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = invoke("export", exported[0], "--out", blocker / "model.pt2")
    assert_clean(result)
    assert result.exit_code == 1 and result.stdout == ""
    assert helpers.flat(result.stderr).startswith(f"error: cannot write {blocker / 'model.pt2'}"), result.stderr


def test_a_missing_checkpoint_is_one_error_line(tmp_path):
    result = invoke("export", tmp_path / "missing.pt", "--out", tmp_path / "model.onnx")
    assert_clean(result)
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and result.stdout == ""


@pytest.mark.parametrize("exported", ["plain"], indirect=True)  # the message does not depend on the model
def test_without_the_export_extra_one_line_says_what_to_install(exported, tmp_path):
    """onnx made unimportable (a package of that name that raises ImportError, first on the path)."""
    shim = tmp_path / "shim" / "onnx"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named onnx')\n")
    out = tmp_path / "model.onnx"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(shim.parent), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "softmax_cli", "export", str(exported[0]), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert "pip install 'softmax-cli[export]'" in done.stderr and "onnx" in done.stderr
    assert not out.exists()


@pytest.mark.realdata
def test_real_data_onnx_agrees_with_eval_on_the_10000_test_images(imported_real_data_dir, tmp_path):
    checkpoint, _ = helpers.train_checkpoint(
        imported_real_data_dir, tmp_path, "--preset", "tuned", "--impl", "concise", "--epochs", "2"
    )
    result = invoke("eval", checkpoint, "--data-dir", imported_real_data_dir, "--device", "cpu", "--json")
    assert_clean(result)
    assert result.exit_code == 0, result.output
    evaluated = only_json(result)
    out = tmp_path / "model.onnx"
    assert export(checkpoint, "--out", out)["standardized"] is True
    images, labels = unit_images(imported_real_data_dir)
    assert len(images) == 10000
    logits, expected = onnx_logits(out, images), torch_logits(checkpoint, images)
    torch.testing.assert_close(logits, expected, **TOLERANCE)
    accuracy = int((logits.argmax(1) == labels).sum()) / len(labels)
    gap, largest = float((logits - expected).abs().max()), float(expected.abs().max())
    print(f"real data: onnxruntime accuracy {accuracy}, eval's test_acc {evaluated['test_acc']}; "
          f"logits differ by at most {gap:.2e} (largest |logit| {largest:.1f})")  # fmt: skip
    assert accuracy == evaluated["test_acc"]
