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


def test_readers_check_the_md5s_they_are_given(writable_data_dir):
    """The md5s are the readers' to be given (the official ones by default): files recorded nowhere are
    accepted for the md5s passed in, refused for the official ones, and a wrong count is named."""
    import hashlib

    from softmax_cli.data.verified import STAMP_NAME, verify_dataset

    raw = data.raw_dir(writable_data_dir)
    (raw / STAMP_NAME).unlink()
    md5s = {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in raw.iterdir()}
    verify_dataset(writable_data_dir, md5s)
    assert len(data.read_split(writable_data_dir, "test", md5s)) == 200
    (raw / STAMP_NAME).unlink()
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte is not the official Fashion-MNIST file"):
        data.read_split(writable_data_dir, "test")

    labels = raw / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1].replace(b"\x00\x00\x00\xc8", b"\x00\x00\x00\xc7", 1))
    md5s[labels.name] = hashlib.md5(labels.read_bytes()).hexdigest()
    with pytest.raises(data.DataError, match="holds 199 labels but its images file holds 200.*softmax download"):
        data.read_split(writable_data_dir, "test", md5s)
