"""Both batch iterators: every example once per epoch, right shapes and ranges, seeded order."""

from __future__ import annotations

import pytest
import torch

from softmax_cli.data import batches as data


def _epoch(batches):
    images, labels = zip(*batches, strict=True)
    return torch.cat(images), torch.cat(labels)


def _make(kind, data_dir, shuffle, seed=0, batch_size=64):
    generator = torch.Generator().manual_seed(seed)
    if kind == "memory":
        return data.MemoryBatches(
            data.read_split(data_dir, "train"), batch_size, torch.device("cpu"), shuffle, generator
        )
    return data.DataLoaderBatches(
        data_dir, "train", batch_size, torch.device("cpu"), shuffle, workers=0, generator=generator
    )


@pytest.mark.parametrize("kind", ["memory", "dataloader"])
def test_every_example_once_per_epoch_with_right_shapes(kind, synthetic_data_dir):
    split = data.read_split(synthetic_data_dir, "train")
    batches = _make(kind, synthetic_data_dir, shuffle=True)
    assert len(batches) == -(-600 // 64) and batches.num_examples == 600
    for _ in range(2):
        X, y = _epoch(batches)
        assert X.shape == (600, 1, 28, 28) and X.dtype == torch.float32
        assert y.dtype == torch.int64 and 0.0 <= float(X.min()) and float(X.max()) <= 1.0
        # The multiset of (image, label) pairs equals the split's: each example exactly once.
        flat_pixels = (X.reshape(600, -1) * 255).round().to(torch.uint8)
        got = sorted(zip(map(bytes, flat_pixels.numpy()), y.tolist(), strict=True))
        want = sorted(zip(map(bytes, split.images.reshape(600, -1).numpy()), split.labels.tolist(), strict=True))
        assert got == want


@pytest.mark.parametrize("kind", ["memory", "dataloader"])
def test_seeded_order_repeats_and_changes_between_epochs(kind, synthetic_data_dir):
    first = _make(kind, synthetic_data_dir, shuffle=True, seed=5)
    second = _make(kind, synthetic_data_dir, shuffle=True, seed=5)
    epoch_a1, epoch_a2 = _epoch(first)[1], _epoch(first)[1]
    epoch_b1 = _epoch(second)[1]
    assert torch.equal(epoch_a1, epoch_b1)
    assert not torch.equal(epoch_a1, epoch_a2)


def test_memory_and_dataloader_yield_identical_batches(synthetic_data_dir):
    memory = _make("memory", synthetic_data_dir, True, seed=9)
    loader = _make("dataloader", synthetic_data_dir, True, seed=9)
    for (Xm, ym), (Xd, yd) in zip(memory, loader, strict=True):
        assert torch.equal(Xm, Xd) and torch.equal(ym, yd)


def test_unshuffled_test_batches_keep_file_order(synthetic_data_dir):
    split = data.read_split(synthetic_data_dir, "test")
    X, y = _epoch(data.MemoryBatches(split, 64, torch.device("cpu"), shuffle=False))
    assert torch.equal(y, split.labels)
    assert torch.equal((X * 255).round().to(torch.uint8).reshape(-1, 28, 28), split.images)


def test_validation_indices_partition_the_split():
    train_idx, val_idx = data.validation_indices(100, 0.2, seed=1)
    assert len(val_idx) == 20 and len(train_idx) == 80
    assert sorted(torch.cat([train_idx, val_idx]).tolist()) == list(range(100))
    with pytest.raises(data.DataError):
        data.validation_indices(3, 0.1, seed=1)


def test_missing_or_malformed_files_are_data_errors(tmp_path, writable_data_dir):
    with pytest.raises(data.DataError, match="softmax download"):
        data.read_split(tmp_path / "nothing", "train")
    image_file = data.raw_dir(writable_data_dir) / "train-images-idx3-ubyte"
    image_file.write_bytes(image_file.read_bytes()[:1000])
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte has a wrong IDX header.*softmax download"):
        data.read_split(writable_data_dir, "train")
