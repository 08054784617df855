"""The hand-written pieces against PyTorch's, and the two implementations against each other."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from softmax_cli import devices, models
from softmax_cli.config import Hparams
from tests.helpers import fit_model


def stable_softmax(X):
    return torch.exp(models.log_softmax(X))


def test_stable_softmax_matches_torch_even_at_extreme_logits():
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0)) * 5
    torch.testing.assert_close(stable_softmax(logits), torch.softmax(logits, dim=1))
    extreme = torch.tensor([[1000.0, -1000.0, 0.0] + [0.0] * 7, [-1000.0] * 9 + [1000.0]])
    stable = stable_softmax(extreme)
    assert torch.isfinite(stable).all()
    torch.testing.assert_close(stable, torch.softmax(extreme, dim=1))


def test_naive_softmax_is_the_books_and_overflows_at_large_logits():
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(models.softmax(logits), torch.softmax(logits, dim=1))
    extreme = torch.tensor([[1000.0] + [0.0] * 9])
    assert not torch.isfinite(models.softmax(extreme)).all()


def test_cross_entropy_matches_torch_and_naive_form_overflows():
    gen = torch.Generator().manual_seed(2)
    logits, y = torch.randn(32, 10, generator=gen) * 3, torch.randint(0, 10, (32,), generator=gen)
    torch.testing.assert_close(
        models.cross_entropy_from_logits(logits, y), F.cross_entropy(logits, y, reduction="none")
    )
    torch.testing.assert_close(
        models.cross_entropy(models.softmax(logits), y), F.cross_entropy(logits, y, reduction="none")
    )
    extreme, target = torch.tensor([[1000.0, -1000.0] + [0.0] * 8]), torch.tensor([1])
    torch.testing.assert_close(
        models.cross_entropy_from_logits(extreme, target), F.cross_entropy(extreme, target, reduction="none")
    )
    assert not torch.isfinite(models.cross_entropy(models.softmax(extreme), target)).all()


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 1e-3)])
def test_scratch_sgd_step_equals_torch_optim_sgd(momentum, weight_decay):
    gen = torch.Generator().manual_seed(3)
    X, y = torch.rand(16, 784, generator=gen), torch.randint(0, 10, (16,), generator=gen)
    W0 = torch.randn(784, 10, generator=gen) * 0.01
    mine = W0.clone().requires_grad_(True)
    theirs = W0.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([theirs], lr=0.1, momentum=momentum, weight_decay=weight_decay)
    buffers = [None]
    for _ in range(3):
        models.cross_entropy_from_logits(X @ mine, y).sum().backward()
        if momentum or weight_decay:
            models.sgd_momentum([mine], 0.1, len(y), momentum, weight_decay, buffers)
        else:
            models.sgd([mine], 0.1, len(y))  # the book's own form
        optimizer.zero_grad()
        F.cross_entropy(X @ theirs, y).backward()
        optimizer.step()
    torch.testing.assert_close(mine.detach(), theirs.detach())
    assert mine.grad.abs().sum() == 0  # zeroed for the next step, as the book does


def test_both_implementations_start_from_the_same_weights():
    scratch = models.make_model(Hparams(impl="scratch", seed=7), torch.device("cpu"))
    concise = models.make_model(Hparams(impl="concise", seed=7), torch.device("cpu"))
    for a, b in zip(scratch.weight_bias(), concise.weight_bias(), strict=True):
        assert torch.equal(a, b)
    assert scratch.weight_bias()[0].shape == (784, 10)
    assert abs(float(scratch.weight_bias()[0].std()) - 0.01) < 0.001


# One epoch in batches of 64 unless told otherwise; each run in its own folder under tmp_path.
SMALL = {"epochs": 1, "batch_size": 64}


def test_scratch_and_concise_agree_after_an_epoch(synthetic_data_dir, tmp_path):
    scratch_result, scratch = fit_model(synthetic_data_dir, tmp_path / "scratch", **SMALL, impl="scratch")
    concise_result, concise = fit_model(synthetic_data_dir, tmp_path / "concise", **SMALL, impl="concise")
    for a, b in zip(scratch.weight_bias(), concise.weight_bias(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    s, c = scratch_result.history[-1], concise_result.history[-1]
    assert s["train_loss"] == pytest.approx(c["train_loss"], rel=1e-4)
    assert s["train_acc"] == c["train_acc"] and s["test_acc"] == c["test_acc"]


@pytest.mark.parametrize("impl", ["scratch", "concise"])
def test_training_on_synthetic_data_reaches_high_accuracy(synthetic_data_dir, tmp_path, impl):
    result, _ = fit_model(synthetic_data_dir, tmp_path, **{**SMALL, "epochs": 5}, impl=impl)
    losses = [entry["train_loss"] for entry in result.history]
    assert losses[-1] < losses[0]
    assert result.history[-1]["test_acc"] >= 0.95
    assert result.checkpoint is not None and result.checkpoint.is_file()


def test_memory_and_dataloader_paths_give_identical_results(synthetic_data_dir, tmp_path):
    two_epochs = {**SMALL, "epochs": 2, "impl": "concise"}
    memory, _ = fit_model(synthetic_data_dir, tmp_path / "memory", **two_epochs)
    loader, _ = fit_model(synthetic_data_dir, tmp_path / "loader", **two_epochs, loader="dataloader")
    for a, b in zip(memory.history, loader.history, strict=True):
        for key in ("train_loss", "train_acc", "test_acc"):
            assert a[key] == b[key], key


def test_same_seed_repeats_and_another_seed_differs(synthetic_data_dir, tmp_path):
    first, _ = fit_model(synthetic_data_dir, tmp_path / "first", **SMALL, seed=11)
    again, _ = fit_model(synthetic_data_dir, tmp_path / "again", **SMALL, seed=11)
    other, _ = fit_model(synthetic_data_dir, tmp_path / "other", **SMALL, seed=12)
    assert first.history[0]["train_loss"] == again.history[0]["train_loss"]
    assert first.history[0]["train_loss"] != other.history[0]["train_loss"]


def test_resolve_device_rejects_missing_hardware():
    assert devices.resolve_device("cpu") == torch.device("cpu")
    mps = getattr(torch.backends, "mps", None)
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps and mps.is_available() else "cpu"
    assert devices.resolve_device("auto").type == expected  # cuda, then mps, then cpu
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            devices.resolve_device("cuda:0")
    else:
        with pytest.raises(ValueError, match="no such GPU"):
            devices.resolve_device(f"cuda:{torch.cuda.device_count()}")
