"""Reading Fashion-MNIST and iterating over it in minibatches. No CLI code here.

Two batch iterators share one interface (iterable of (X, y) with X float in [0, 1]
shaped B x 1 x 28 x 28 and y int64, plus len() = batches per epoch):

* MemoryBatches: the split held once as uint8 on the device; every epoch draws a
  fresh permutation from a seeded generator and batches by indexing. No per-sample
  Python, no PIL: for a 784 x 10 model the data path *is* the cost.
* DataLoaderBatches: the book's pipeline, torchvision dataset + ToTensor +
  DataLoader(num_workers=...), moved to the device per batch.

On CPU both draw their shuffling order from the same kind of seeded generator, so
for the same seed they produce the very same batches (ToTensor scales with the same
float division by 255), which makes the fast path checkable against the book's.

The memory loader never imports torchvision (importing it costs about as much as torch
itself): the IDX files are read and verified by softmax_cli.data.verified and turned into
tensors with torch.frombuffer, and the class names are facts in softmax_cli.data.fashion_mnist.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from softmax_cli.config import Hparams
from softmax_cli.data.checks import IdxFile
from softmax_cli.data.fashion_mnist import CLASS_NAMES, IMAGE_SIDE, RAW_MD5, SPLIT_FILES
from softmax_cli.data.fashion_mnist import NUM_CLASSES as NUM_CLASSES  # re-exported: models, evaluation, viz
from softmax_cli.data.paths import raw_dir as raw_dir  # re-exported: tests read the files' folder
from softmax_cli.data.verified import read_verified
from softmax_cli.errors import DataError

NUM_INPUTS = IMAGE_SIDE * IMAGE_SIDE


def class_names() -> list[str]:
    """The ten class names, in label order (torchvision's FashionMNIST.classes)."""
    return list(CLASS_NAMES)


@dataclass
class Split:
    """One split as tensors: images uint8 N x 28 x 28, labels int64 N."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> "Split":
        return Split(self.images[indices], self.labels[indices])


def read_split(data_dir: Path, split: str, expected_md5s: Mapping[str, str] = RAW_MD5) -> Split:
    """The 'train' or 'test' split of data_dir, its files verified (softmax_cli.data.verified); DataError otherwise.

    expected_md5s: the md5 each uncompressed file must have unless recorded as verified.
    """
    image_name, label_name = SPLIT_FILES[split]
    images = read_verified(data_dir, image_name, expected_md5s)
    labels = read_verified(data_dir, label_name, expected_md5s, count=images.count)
    return Split(_as_tensor(images).view(-1, IMAGE_SIDE, IMAGE_SIDE), _as_tensor(labels).to(torch.int64))


def _as_tensor(idx_file: IdxFile) -> torch.Tensor:
    """The payload as a uint8 tensor sharing the file's buffer: no copy, and one byte needs no byte swap."""
    return torch.frombuffer(idx_file.data, dtype=torch.uint8, offset=idx_file.header_bytes)


def validation_indices(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split range(n) into (train, validation) indices, holding out a seeded random `fraction`."""
    n_val = int(round(n * fraction))
    if not 0 < n_val < n:
        raise DataError(f"--val-split {fraction} leaves no train or no validation examples")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_val:], order[:n_val]


def to_unit_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1] shaped B x 1 x 28 x 28, the same arithmetic as ToTensor."""
    return images_u8.to(torch.float32).div_(255).view(-1, 1, IMAGE_SIDE, IMAGE_SIDE)


class MemoryBatches:
    """Minibatches by indexing a split held once on `device` as uint8.

    With shuffle, every epoch draws a fresh permutation from `generator` (which lives
    on the same device, so on a GPU nothing crosses to the host per batch).
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        shuffle: bool,
        generator: torch.Generator | None = None,
    ) -> None:
        # Rows of 784 bytes: index_select on a 2-D uint8 tensor is ~3x faster than
        # advanced indexing of N x 28 x 28, and the cast stays per batch (RAM stays uint8).
        self.images = split.images.reshape(len(split), NUM_INPUTS).to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, size = len(self.labels), self.batch_size
        if not self.shuffle:
            for start in range(0, n, size):
                yield to_unit_float(self.images[start : start + size]), self.labels[start : start + size]
            return
        order = torch.randperm(n, generator=self.generator, device=self.device)
        for start in range(0, n, size):
            index = order[start : start + size]
            yield to_unit_float(self.images.index_select(0, index)), self.labels.index_select(0, index)


class _SeededPermutationSampler(torch.utils.data.Sampler):
    """shuffle=True with the order drawn exactly as MemoryBatches draws it.

    DataLoader's own RandomSampler derives a fresh seed from its generator, so its
    order could never match the memory loader's; this sampler keeps the book's
    semantics (a new random order each epoch) while making the two paths comparable.
    """

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n = n
        self.generator = generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


class DataLoaderBatches:
    """The book's pipeline: torchvision dataset + ToTensor + DataLoader, moved to the device per batch."""

    def __init__(
        self,
        data_dir: Path,
        split: str,
        batch_size: int,
        device: torch.device,
        shuffle: bool,
        workers: int,
        generator: torch.Generator | None = None,
        indices: torch.Tensor | None = None,
    ) -> None:
        from torchvision import datasets, transforms

        dataset = datasets.FashionMNIST(
            root=str(data_dir), train=(split == "train"), transform=transforms.ToTensor(), download=False
        )
        if indices is not None:
            dataset = torch.utils.data.Subset(dataset, indices.tolist())
        sampler = _SeededPermutationSampler(len(dataset), generator) if shuffle else None
        self.device = device
        self.num_examples = len(dataset)
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=device.type == "cuda",
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        non_blocking = self.device.type == "cuda"
        for X, y in self.loader:
            yield X.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)


@dataclass
class PreparedData:
    train: object
    test: object
    validation: object | None
    input_stats: tuple[torch.Tensor, torch.Tensor] | None


def input_statistics(train: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mean and std of the train split in [0, 1] units; std floored at one grey level.

    Summed in chunks so the split is never held as float32 (188 MB) at once.
    """
    pixels = train.images.reshape(len(train), NUM_INPUTS)
    total = torch.zeros(NUM_INPUTS, dtype=torch.float64)
    squares = torch.zeros(NUM_INPUTS, dtype=torch.float64)
    for chunk in pixels.split(8192):
        values = chunk.to(torch.float64) / 255
        total += values.sum(0)
        squares += (values * values).sum(0)
    n = len(pixels)
    mean = total / n
    variance = (squares - n * mean * mean) / max(n - 1, 1)
    return mean.float(), variance.clamp_min(0).sqrt().float().clamp_min(1 / 255)


def prepare_data(
    hparams: Hparams,
    data_dir: Path,
    device: torch.device,
    workers: int,
    shuffle_generator: torch.Generator,
    resuming: bool,
) -> PreparedData:
    train_split, test_split = read_split(data_dir, "train"), read_split(data_dir, "test")
    train_idx = val_idx = None
    if hparams.val_split:
        train_idx, val_idx = validation_indices(len(train_split), hparams.val_split, hparams.seed)
        validation = MemoryBatches(train_split.subset(val_idx), hparams.batch_size, device, shuffle=False)
        train_split = train_split.subset(train_idx)
    else:
        validation = None
    # A resumed run keeps the statistics stored in its checkpoint.
    input_stats = input_statistics(train_split) if hparams.standardize and not resuming else None
    if hparams.loader == "dataloader":
        train = DataLoaderBatches(
            data_dir,
            "train",
            hparams.batch_size,
            device,
            shuffle=True,
            workers=workers,
            generator=shuffle_generator,
            indices=train_idx,
        )
        test = DataLoaderBatches(data_dir, "test", hparams.batch_size, device, shuffle=False, workers=workers)
    else:
        train = MemoryBatches(train_split, hparams.batch_size, device, shuffle=True, generator=shuffle_generator)
        test = MemoryBatches(test_split, hparams.batch_size, device, shuffle=False)
    return PreparedData(train, test, validation, input_stats)
