"""TensorBoard's pictures, drawn by a second process (softmax_cli.pictures.worker): what it draws,
that it never loads torch, and what happens when it fails, falls behind or loses its trainer."""

from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from softmax_cli import training
from softmax_cli.data.batches import class_names
from softmax_cli.pictures import worker as pictures
from softmax_cli.pictures.tensorboard import TensorBoardLogger
from softmax_cli.pictures.worker import Picture, PictureError, PictureJob, PictureWorker
from tests import helpers

NAMES = tuple(class_names())


def templates_job(step: int, standardized: bool = False) -> PictureJob:
    generator = np.random.default_rng(step)
    std = generator.uniform(0.1, 0.5, 784) if standardized else None
    return PictureJob("templates", "weights", step, generator.normal(0, 0.1, (784, 10)), NAMES, std)


def confusion_job(normalize: bool) -> PictureJob:
    counts = np.diag(np.full(10, 90)) + np.random.default_rng(0).integers(0, 5, (10, 10))
    tag = "confusion_matrix/normalized" if normalize else "confusion_matrix"
    return PictureJob("confusion", tag, 3, counts, NAMES, None, normalize)


def decoded_size(picture: Picture) -> tuple[int, int]:
    with Image.open(io.BytesIO(picture.png)) as image:
        assert image.format == "PNG"
        return image.size


def test_the_worker_answers_each_job_in_order_and_never_loads_torch():
    jobs = [
        templates_job(1),
        templates_job(2, standardized=True),
        confusion_job(False),
        confusion_job(True),
    ]
    # The worker as the trainer starts it, fed the pickled jobs as the trainer sends them, with
    # Python reporting every module it imports.
    command = pictures.worker_command()
    fed = b"".join(pickle.dumps(job) for job in jobs)
    done = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]], input=fed, capture_output=True, timeout=120, check=True
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.decode().splitlines() if "|" in line}
    assert "matplotlib.figure" in imported
    assert not {module for module in imported if module.split(".")[0] in ("torch", "torchvision")}
    answers = io.BytesIO(done.stdout)
    replies = [pickle.load(answers) for _ in jobs]
    assert answers.read() == b""
    assert [(reply.tag, reply.step) for reply in replies] == [
        ("weights", 1), ("weights", 2), ("confusion_matrix", 3), ("confusion_matrix/normalized", 3)
    ]  # fmt: skip
    sizes = [decoded_size(reply) for reply in replies]
    assert sizes == [(416, 264), (416, 264), (416, 392), (416, 392)]
    assert all((reply.width, reply.height) == size for reply, size in zip(replies, sizes, strict=True))


def test_a_prepared_confusion_figure_is_laid_out_again_when_its_colour_bar_grows():
    from softmax_cli.pictures.worker import CONFUSION_SIZE_IN, IMAGE_DPI, Drawer

    drawer = Drawer()
    drawer.prepare(NAMES)
    figure = drawer._figure("confusion", NAMES, False)
    figure.update(np.diag(np.full(10, 900_000)), "epoch 3")  # "800000" where the layout made room for "1000"
    pixels = figure.pixels()
    assert pixels.shape == (CONFUSION_SIZE_IN[1] * IMAGE_DPI, CONFUSION_SIZE_IN[0] * IMAGE_DPI, 3)
    renderer = figure.figure.canvas.get_renderer()
    assert figure.colour_bar.ax.get_tightbbox(renderer).x1 <= figure.figure.bbox.x1


def test_a_job_the_worker_cannot_draw_comes_back_as_one_line():
    worker = PictureWorker()
    worker.submit(templates_job(1))
    worker.submit(PictureJob("histogram", "weights", 2, np.zeros(3), NAMES))
    with pytest.raises(PictureError, match=r"^weights \(step 2\): ValueError: no such picture: 'histogram'$"):
        worker.finish()


def test_a_picture_process_that_cannot_start_is_reported_by_the_first_look(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))
    worker = PictureWorker()  # never raises: training must not fail for a picture
    worker.submit(templates_job(1))
    with pytest.raises(PictureError, match=r"^the picture process could not start: No such file or directory$"):
        worker.ready()
    worker.close()


def test_a_worker_that_dies_says_why_in_its_last_words(monkeypatch):
    dying = "import sys; sys.stderr.write('ModuleNotFoundError: No module named matplotlib\\n'); sys.exit(1)"
    monkeypatch.setattr(pictures, "worker_command", lambda: [sys.executable, "-c", dying])
    worker = PictureWorker()
    worker.submit(templates_job(1))
    expected = r"^the picture process ended \(exit code 1\): ModuleNotFoundError: No module named matplotlib$"
    with pytest.raises(PictureError, match=expected):
        worker.finish()


class KillThePictures(training.TrainingCallbacks):
    """Kills the logger's picture process after the given epoch, as the OOM killer might."""

    def __init__(self, logger: TensorBoardLogger, epoch: int) -> None:
        self.logger, self.epoch = logger, epoch

    def on_epoch_end(self, metrics, model):
        if metrics.epoch == self.epoch:
            process = self.logger.pictures._process
            process.kill()
            process.wait()


def test_a_picture_process_that_dies_is_reported_once_and_the_curves_go_on(synthetic_data_dir, tmp_path):
    reported = []
    logger = TensorBoardLogger(tmp_path, on_picture_failure=reported.append)
    callbacks = training.CallbackList([logger, KillThePictures(logger, 1)])
    result = helpers.fit(synthetic_data_dir, tmp_path, callbacks, epochs=3)
    assert result.epochs_done == 3 and logger.pictures is None
    assert len(reported) == 1
    assert reported[0].startswith("TensorBoard pictures stopped: ") and "the picture process ended" in reported[0]
    accumulator = helpers.tensorboard_events(tmp_path)
    assert [event.step for event in accumulator.Scalars("loss/train")] == [1, 2, 3]
    assert helpers.session_status(accumulator) == "STATUS_SUCCESS"


def test_when_the_pictures_fall_behind_epochs_are_skipped_but_the_last_is_drawn(
    synthetic_data_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(PictureWorker, "max_backlog", 0)  # as if the worker were always behind
    helpers.fit(synthetic_data_dir, tmp_path, TensorBoardLogger(tmp_path), epochs=3)
    accumulator = helpers.tensorboard_events(tmp_path)
    assert [event.step for event in accumulator.Images("weights")] == [3]
    assert [event.step for event in accumulator.Images("confusion_matrix")] == [3]


class RecordThreads(training.TrainingCallbacks):
    threads = None

    def on_epoch_end(self, metrics, model):
        self.threads = torch.get_num_threads()


def test_cpu_training_leaves_a_core_to_the_pictures_and_gives_it_back(synthetic_data_dir, tmp_path):
    before = torch.get_num_threads()
    during = RecordThreads()
    helpers.fit(synthetic_data_dir, tmp_path, training.CallbackList([TensorBoardLogger(tmp_path), during]), epochs=1)
    assert during.threads == max(1, before - 1)
    assert torch.get_num_threads() == before


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds child processes through Linux's /proc")
def test_a_killed_trainer_leaves_no_picture_process_behind(synthetic_data_dir, tmp_path):
    command = [sys.executable, "-m", "softmax_cli", "train", "--epochs", "500", "--device", "cpu"]
    command += ["--data-dir", str(synthetic_data_dir), "--runs-dir", str(tmp_path / "runs")]
    trainer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        worker = _wait_for(lambda: _children(trainer.pid), "the picture process to start")[0]
        _wait_for(lambda: list((tmp_path / "runs").rglob("events.out.tfevents.*")), "the first epoch's events")
        os.kill(trainer.pid, signal.SIGKILL)
        trainer.wait(timeout=30)
        _wait_for(lambda: not Path(f"/proc/{worker}").exists() or _is_zombie(worker), "the picture process to end")
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout:.0f} s for {what}")
