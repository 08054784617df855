"""TensorBoard's pictures, drawn with torch in the training process: one image per class under
`weights/<class name>` every epoch, a text card for the colours, and the confusion matrix as a
Markdown table at the end; and `eval --confusion-png`, the labelled figure drawn on demand."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from softmax_cli.data.batches import class_names
from softmax_cli.data.fashion_mnist import IMAGE_SIDE
from softmax_cli.pictures import tensorboard as tboard
from tests import helpers
from tests.helpers import assert_clean, invoke

NAMES = tuple(class_names())


def test_weight_images_share_one_symmetric_scale_centred_at_zero():
    W = torch.randn(784, 10, generator=torch.Generator().manual_seed(0)) * 0.1
    W[0, 0], W[1, 0], W[783, 0] = 5.0, -5.0, 0.0  # beyond the scale both ways, and exactly 0
    images, scale = tboard.weight_images(W)
    side = IMAGE_SIDE * tboard.SCALE
    assert len(images) == 10 and all(image.shape == (3, side, side) for image in images)
    assert scale == pytest.approx(float(torch.quantile(W.abs().flatten(), tboard.COLOUR_LIMIT_QUANTILE)))
    first, block = images[0], tboard.SCALE
    # Nearest neighbour: each weight is a SCALE x SCALE block of one colour.
    assert torch.equal(first[:, :block, :block], first[:, :1, :1].expand(3, block, block))
    zero, red, blue = (torch.tensor(c) for c in (tboard.ZERO, tboard.POSITIVE, tboard.NEGATIVE))
    assert torch.allclose(first[:, 0, 0], red) and torch.allclose(first[:, 0, block], blue)
    assert torch.allclose(first[:, -1, -1], zero)
    # One scale for all ten classes: another class's weight sits on the same map.
    w = float(W[2, 3]) / scale
    expected = zero + ((red if w > 0 else blue) - zero) * min(abs(w), 1.0)
    assert torch.allclose(images[3][:, 0, 2 * block], expected, atol=1e-6)


def test_a_standardized_run_is_shown_in_pixel_space_with_rarely_lit_pixels_grey():
    W = torch.ones(784, 10)
    std = torch.ones(784)
    std[0] = 0.01  # a border pixel, almost never lit in training
    std[1] = 0.5  # W / std = 2: twice the weight in raw pixel units
    images, scale = tboard.weight_images(W, std)
    assert torch.allclose(images[0][:, 0, 0], torch.full((3,), tboard.RARELY_LIT_GREY))
    assert scale == pytest.approx(float(torch.quantile(torch.tensor([2.0] * 10 + [1.0] * 7820), 0.995)))
    assert "pixel-space" in tboard.colour_legend(scale, standardized=True)


def test_the_confusion_table_names_every_class_and_gives_recall():
    counts = torch.diag(torch.full((10,), 90)) + torch.ones(10, 10, dtype=torch.long)
    counts[0, 6] += 9  # T-shirts taken for shirts
    table = tboard.confusion_markdown(counts, NAMES)
    lines = table.splitlines()
    assert lines[2].split(" | ")[1:-1] == [str(i) for i in range(10)]
    rows = lines[4:]
    assert len(rows) == 10 and all(
        row.startswith(f"| **{i} {name}** |") for i, (row, name) in enumerate(zip(rows, NAMES, strict=True))
    )
    assert rows[0].endswith(f"| {91 / 109:.3f} |") and rows[1].endswith(f"| {91 / 100:.3f} |")
    assert f"{int(counts.sum()):,}" in lines[0]


@pytest.fixture(scope="module")
def three_epochs(synthetic_data_dir, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("tb-pictures")
    return helpers.train_json(synthetic_data_dir, folder, "--epochs", "3", "--batch-size", "64")


def test_a_run_logs_ten_class_tagged_weight_images_per_epoch_and_the_confusion_table(three_epochs):
    accumulator = helpers.tensorboard_events(Path(three_epochs["log_dir"]))
    images = accumulator.Tags()["images"]
    assert sorted(images) == sorted(f"weights/{name}" for name in NAMES)
    for tag in images:
        events = accumulator.Images(tag)
        assert [event.step for event in events] == [1, 2, 3]
        side = IMAGE_SIDE * tboard.SCALE
        assert (events[-1].width, events[-1].height) == (side, side)
    texts = accumulator.Tags()["tensors"]
    assert "weights/colours/text_summary" in texts and "confusion_matrix/text_summary" in texts
    table = accumulator.Tensors("confusion_matrix/text_summary")
    assert [event.step for event in table] == [3]
    text = table[0].tensor_proto.string_val[0].decode()
    assert all(name in text for name in NAMES) and "recall" in text


def test_a_train_process_starts_no_child_and_never_imports_matplotlib(synthetic_data_dir, tmp_path):
    """-X importtime names every module the process imported; a child process would show in /proc."""
    env = {**os.environ, "COLUMNS": "100"}
    command = [
        sys.executable, "-X", "importtime", "-m", "softmax_cli", "train", "--data-dir", str(synthetic_data_dir),
        "--runs-dir", str(tmp_path / "runs"), "--epochs", "2", "--batch-size", "64", "--device", "cpu",
    ]  # fmt: skip
    # Output to files: a full pipe would block the child while this loop watches it.
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr_file:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr_file, env=env)
    children = set()
    while process.poll() is None:
        tasks = Path(f"/proc/{process.pid}/task")
        for task in tasks.glob("*/children") if tasks.exists() else []:
            try:
                for child in task.read_text().split():
                    children.add(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                pass
        time.sleep(0.02)
    process.wait()
    # torch's CUDA build runs `ldconfig -p` while it loads (ctypes.util.find_library), in any process
    # that imports it: that child is torch's. What must never start is a second Python (a picture worker).
    children = {child for child in children if child and not child.startswith("/sbin/ldconfig")}
    stderr = log.read_text()
    assert process.returncode == 0, stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
    assert "torch" in imported and "tensorboard" in imported
    assert not {name for name in imported if name.split(".")[0] == "matplotlib"}
    assert children == set()


def test_eval_confusion_png_writes_the_labelled_figure(three_epochs, synthetic_data_dir, tmp_path):
    target = tmp_path / "confusion.png"
    result = invoke("eval", three_epochs["checkpoint"], "--data-dir", synthetic_data_dir, "--confusion-png", target)
    assert_clean(result)
    from softmax_cli.pictures.figures import confusion_figure

    figure = confusion_figure(torch.eye(10), NAMES, dpi=150)
    width, height = figure.get_size_inches() * figure.dpi
    with Image.open(target) as image:
        assert image.format == "PNG" and image.size == (round(width), round(height))
