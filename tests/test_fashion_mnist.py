"""The dataset's facts and the IDX reader: equal to torchvision's, so drift is caught, and strict about bad files.

softmax_cli.data.fashion_mnist writes down what torchvision knows (so that the memory loader,
eval, predict and a no-op download never import it); these tests compare the two, and the
hand-written IDX reader (softmax_cli.data.checks + data.read_split) with torchvision's parser, on
synthetic files and, where they are available, on the real ones.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct

import pytest
import torch

from softmax_cli.data import batches as data
from softmax_cli.data import checks, fashion_mnist, paths
from softmax_cli.errors import DataError, DataFileRejected
from tests import helpers


def test_facts_equal_torchvisions():
    from torchvision.datasets import FashionMNIST

    assert list(fashion_mnist.CLASS_NAMES) == FashionMNIST.classes
    assert data.class_names() == FashionMNIST.classes
    assert list(fashion_mnist.GZ_RESOURCES) == [tuple(resource) for resource in FashionMNIST.resources]
    assert list(fashion_mnist.MIRRORS) == FashionMNIST.mirrors
    assert {name.removesuffix(".gz") for name, _ in FashionMNIST.resources} == set(fashion_mnist.RAW_MD5)
    assert {name for files in fashion_mnist.SPLIT_FILES.values() for name in files} == set(fashion_mnist.RAW_MD5)


@pytest.mark.realdata
def test_uncompressed_md5s_and_sizes_are_those_of_the_official_files(real_data_dir):
    for gz_name, gz_md5 in fashion_mnist.GZ_RESOURCES:
        packed = (real_data_dir / gz_name).read_bytes()
        assert hashlib.md5(packed).hexdigest() == gz_md5
        raw = gzip.decompress(packed)
        name = gz_name.removesuffix(".gz")
        assert hashlib.md5(raw).hexdigest() == fashion_mnist.RAW_MD5[name]
        split = next(split for split, files in fashion_mnist.SPLIT_FILES.items() if name in files)
        assert struct.unpack(">I", raw[4:8])[0] == fashion_mnist.SPLIT_SIZES[split]


def _torchvision_split(folder, split):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    images, labels = fashion_mnist.SPLIT_FILES[split]
    return read_image_file(str(folder / images)), read_label_file(str(folder / labels))


@pytest.mark.parametrize("split", ["train", "test"])
def test_reader_matches_torchvision_on_synthetic_files(synthetic_data_dir, split):
    ours = data.read_split(synthetic_data_dir, split)
    images, labels = _torchvision_split(data.raw_dir(synthetic_data_dir), split)
    assert ours.images.dtype == images.dtype and torch.equal(ours.images, images)
    assert ours.labels.dtype == labels.dtype and torch.equal(ours.labels, labels)
    assert ours.images.is_contiguous()


@pytest.mark.realdata
@pytest.mark.parametrize("split", ["train", "test"])
def test_reader_matches_torchvision_on_the_real_files(imported_real_data_dir, split):
    ours = data.read_split(imported_real_data_dir, split)
    images, labels = _torchvision_split(data.raw_dir(imported_real_data_dir), split)
    assert len(ours) == fashion_mnist.SPLIT_SIZES[split]
    assert torch.equal(ours.images, images) and torch.equal(ours.labels, labels)


def _images(n=3, rows=28, cols=28, magic=checks.IMAGES_MAGIC, extra=b""):
    return struct.pack(">IIII", magic, n, rows, cols) + bytes(n * rows * cols) + extra


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("train-images-idx3-ubyte", _images(magic=0x00000801), "magic 0x00000801, expected 0x00000803"),
        ("train-images-idx3-ubyte", _images(rows=32, cols=32), "images are 32x32, expected 28x28"),
        ("train-images-idx3-ubyte", _images(extra=b"x"), r"announces 3 items \(2368 bytes\) but holds 2369 bytes"),
        ("train-images-idx3-ubyte", _images()[:-1], r"announces 3 items \(2368 bytes\) but holds 2367 bytes"),
        ("train-images-idx3-ubyte", b"\x00\x00\x08", "only 3 bytes long"),
        ("t10k-labels-idx1-ubyte", struct.pack(">II", 0x801, 2**31) + b"\x00", "more than 1000000"),
        ("t10k-labels-idx1-ubyte", struct.pack(">II", 0x801, 4) + bytes([1, 2, 10, 3]), "label 10 at index 2"),
        ("t10k-labels-idx1-ubyte", struct.pack(">II", 0x801, 2) + bytes([255, 0]), "label 255 at index 0"),
        ("t10k-labels-idx1-ubyte", struct.pack(">II", 0x801, 0), "it announces no items"),
    ],
    ids=["magic", "dims", "too-long", "too-short", "no-header", "huge-count", "label-10", "label-255", "empty"],
)
def test_reader_refuses_a_bad_file_naming_it(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFileRejected, match=message) as info:
        checks.check_file(path, name)
    assert str(info.value).startswith(str(path))
    assert checks.file_problem(path, name, None) == str(info.value)


def test_md5_is_checked_against_the_one_given(tmp_path):
    name = "t10k-labels-idx1-ubyte"
    path = tmp_path / name
    path.write_bytes(struct.pack(">II", 0x801, 3) + bytes([1, 2, 3]))
    right = hashlib.md5(path.read_bytes()).hexdigest()
    assert checks.check_file(path, name, right).count == 3
    assert checks.file_problem(path, name, right) is None
    with pytest.raises(DataFileRejected, match=f"is not the official Fashion-MNIST file \\(md5 {right}, expected"):
        checks.check_file(path, name, fashion_mnist.RAW_MD5[name])
    with pytest.raises(DataFileRejected, match=f"md5 mismatch for {name}: expected 0+, got {right}"):
        checks.check_file(path, name, "0" * 32, shown=name)


def test_a_labels_file_must_hold_as_many_labels_as_its_images(tmp_path):
    name = "t10k-labels-idx1-ubyte"
    path = tmp_path / name
    path.write_bytes(struct.pack(">II", 0x801, 3) + bytes([1, 2, 3]))
    with pytest.raises(DataFileRejected, match="holds 3 labels but its images file holds 4"):
        checks.check_file(path, name, count=4)


def test_reader_reads_only_regular_files(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "t10k-labels-idx1-ubyte"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):  # no writer: open() would block without O_NONBLOCK
        checks.check_file(fifo, fifo.name)
    with pytest.raises(DataError, match="not a regular file"):
        paths.regular_file(fifo)
    assert paths.regular_file(tmp_path / "nothing") is None


def test_synthetic_helper_writes_files_the_readers_accept(tmp_path):
    folder = helpers.write_synthetic_dataset(tmp_path, n_train=20, n_test=10)
    assert len(data.read_split(tmp_path, "train")) == 20
    assert (folder / ".softmax-cli-verified.json").is_file()
