"""The GPU paths, on a machine with CUDA: skipped (with the reason) everywhere else.

On CUDA the memory loader draws each epoch's permutation on the GPU, from a Philox generator,
so its batch order differs from the CPU's; the DataLoader pipeline draws on the CPU, so with
`--loader dataloader` a CUDA run sees the very batches a CPU run sees and must end with the
same weights, up to float rounding.
"""

from __future__ import annotations

import pytest
import torch

from softmax_cli import training
from softmax_cli.config import Hparams, RunPaths
from tests import helpers

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def fit_on(device, data_dir, out, callbacks=None, resume_from=None, **hparams):
    out.mkdir(parents=True, exist_ok=True)
    paths = RunPaths(data_dir=data_dir, log_dir=out, checkpoint=out / "checkpoint.pt")
    return training.fit(Hparams(**{"epochs": 2, **hparams}), paths, device, callbacks, resume_from=resume_from)


def final_weights(result):
    from softmax_cli.runs.checkpoint import load_checkpoint

    loaded = load_checkpoint(result.checkpoint)
    return loaded["weight"], loaded["bias"]


@pytest.mark.parametrize("impl", ["scratch", "concise"])
def test_cuda_matches_the_cpu_on_the_same_batches(synthetic_data_dir, tmp_path, impl):
    settings = {"impl": impl, "loader": "dataloader", "batch_size": 64}
    on_cpu = fit_on(helpers.CPU, synthetic_data_dir, tmp_path / "cpu", **settings)
    on_gpu = fit_on(CUDA, synthetic_data_dir, tmp_path / "gpu", **settings)
    for mine, theirs in zip(final_weights(on_gpu), final_weights(on_cpu), strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=0)
    assert [e["test_acc"] for e in on_gpu.history] == pytest.approx([e["test_acc"] for e in on_cpu.history], abs=0.01)


def test_scratch_and_concise_agree_on_cuda(synthetic_data_dir, tmp_path):
    scratch = fit_on(CUDA, synthetic_data_dir, tmp_path / "s", impl="scratch", batch_size=64)
    concise = fit_on(CUDA, synthetic_data_dir, tmp_path / "c", impl="concise", batch_size=64)
    for mine, theirs in zip(final_weights(scratch), final_weights(concise), strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=0)


@pytest.mark.parametrize("impl", ["scratch", "concise"])
def test_resume_on_cuda_equals_a_straight_run(synthetic_data_dir, tmp_path, impl):
    from softmax_cli.runs.checkpoint import load_checkpoint

    settings = {"impl": impl, "batch_size": 64, "momentum": 0.9}
    straight = fit_on(CUDA, synthetic_data_dir, tmp_path / "straight", epochs=4, **settings)
    first = fit_on(CUDA, synthetic_data_dir, tmp_path / "first", epochs=2, **settings)
    resumed = fit_on(
        CUDA,
        synthetic_data_dir,
        tmp_path / "resumed",
        epochs=4,
        resume_from=load_checkpoint(first.checkpoint),
        **settings,
    )
    for mine, theirs in zip(final_weights(resumed), final_weights(straight), strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=0)


def test_train_eval_predict_and_compare_run_on_cuda(synthetic_data_dir, tmp_path):
    checkpoint, trained = helpers.train_checkpoint(synthetic_data_dir, tmp_path, "--device", "cuda", "--epochs", "2")
    assert trained["device"].startswith("cuda")
    evaluated = helpers.invoke("eval", checkpoint, "--data-dir", synthetic_data_dir, "--device", "cuda", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert helpers.only_json(evaluated)["test_acc"] == pytest.approx(trained["history"][-1]["test_acc"])
    out = tmp_path / "grid.png"
    predicted = helpers.invoke(
        "predict", checkpoint, "--data-dir", synthetic_data_dir, "--device", "cuda", "--out", out, "--json"
    )
    assert predicted.exit_code == 0, predicted.output
    assert out.stat().st_size > 0
    compared = helpers.invoke(
        "compare",
        "--epochs",
        "1",
        "--data-dir",
        synthetic_data_dir,
        "--runs-dir",
        tmp_path / "runs",
        "--device",
        "cuda",
    )
    assert compared.exit_code == 0, compared.output


def test_resuming_a_cpu_run_on_cuda_says_where_its_batch_order_was_drawn(synthetic_data_dir, tmp_path):
    checkpoint, _ = helpers.train_checkpoint(synthetic_data_dir, tmp_path, "--epochs", "1")
    result = helpers.invoke(
        "train", "--resume", checkpoint, "--epochs", "2", "--data-dir", synthetic_data_dir, "--device", "cuda",
        "--runs-dir", tmp_path / "runs",
    )  # fmt: skip
    helpers.assert_clean(result)
    assert result.exit_code == 1
    text = helpers.flat(result.stderr)
    assert "drawn on cpu" in text and "--device" in text
