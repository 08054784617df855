"""TensorBoard logging as a training callback: curves every epoch, the weight templates every
epoch, the confusion matrix and the run's status at the end, the hyperparameters from the start.
The pictures are drawn by a second process while training goes on (pictures.py).

Tags (README, *TensorBoard*): loss/train, loss/test, accuracy/train, accuracy/test,
accuracy/val, lr; images weights, confusion_matrix, confusion_matrix/normalized; the
HPARAMS tab; the book's curves (train and test on one chart) in the CUSTOM SCALARS tab.

The event file is opened by the first finished epoch, so a run that finishes none leaves
none. A failed write (a full disk) raises out of these hooks; the CLI wraps this logger in
training.BestEffort, which reports it once and lets training go on without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from softmax_cli.models import SoftmaxRegression
from softmax_cli.pictures.worker import (
    FINISH_TIMEOUT_S,
    STOPPED_FINISH_TIMEOUT_S,
    PictureError,
    PictureJob,
    PictureWorker,
)
from softmax_cli.training import EpochMetrics, TrainingCallbacks, TrainingPlan, TrainingResult

SCALAR_TAGS = {
    "train_loss": "loss/train",
    "test_loss": "loss/test",
    "train_acc": "accuracy/train",
    "test_acc": "accuracy/test",
    "val_acc": "accuracy/val",
    "lr": "lr",
}
# The book's Animator shows train and test on one chart; CUSTOM SCALARS draws each group so.
CUSTOM_SCALARS_LAYOUT = {
    "curves": {
        "loss (train, test)": ["Multiline", ["^loss/"]],
        "accuracy (train, test, val)": ["Multiline", ["^accuracy/"]],
    }
}


def hparams_for_tensorboard(hparams: dict) -> dict:
    """The settings as TensorBoard's HPARAMS tab should show them.

    TensorBoard knows numbers (float64, printed with 5 significant digits: 256 shows as
    "256.00"), text and booleans; it has no integer type. Quantities stay numbers so they
    can be sorted, filtered by range and drawn on numeric axes. Booleans stay booleans
    (true/false). The seed becomes text: it names a draw rather than measuring anything,
    and float64 cannot hold every 64-bit seed exactly.
    """
    return {key: str(value) if key == "seed" else value for key, value in hparams.items()}


def session_start_summary(hparams: dict, trial_id: str):
    """The HPARAMS tab's record of this run, built by TensorBoard's own hparams_pb.

    torch's add_hparams is not used: it records booleans as the numbers 0 and 1 (it tests
    for int before bool), and it writes an experiment record per run, of which TensorBoard
    reads one arbitrary run's. Without one, TensorBoard derives the experiment from all runs:
    each setting's type and range, which settings differ (shown first), and every scalar
    tag as a metric column.
    """
    from tensorboard.plugins.hparams import summary_v2

    return summary_v2.hparams_pb(hparams_for_tensorboard(hparams), trial_id=trial_id)


def session_end_status(diverged: bool = False, interrupted: bool = False) -> int:
    """How a run ended, for the HPARAMS tab's status filter. TensorBoard has no "stopped"
    status: a run interrupted with Ctrl-C (which --resume may still finish) is "unknown"."""
    from tensorboard.plugins.hparams import api_pb2

    if diverged:
        return api_pb2.STATUS_FAILURE
    return api_pb2.STATUS_UNKNOWN if interrupted else api_pb2.STATUS_SUCCESS


def session_end_summary(status: int):
    """The HPARAMS tab's end-of-run record (what tensorboard's summary.session_end_pb builds; that
    module needs TensorFlow). Write it, like session_start_summary's, with writer.file_writer.add_summary."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    content = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(session_end_info=info))
    return Summary(
        value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=content, tensor=metadata.NULL_TENSOR)]
    )


class TensorBoardLogger(TrainingCallbacks):
    """Writes one run's curves into its own folder, so repeated runs never mix."""

    def __init__(
        self,
        log_dir: Path,
        on_picture_failure: Callable[[str], None] | None = None,
        pictures: PictureWorker | None = None,
    ) -> None:
        """on_picture_failure hears, once, why the pictures stopped (the curves go on); without
        it, that failure is raised like any other. `pictures` is a picture process started
        earlier (the CLI starts one before importing torch), which this logger takes over and
        closes; without it, one starts with training."""
        self.log_dir = log_dir
        self.on_picture_failure = on_picture_failure
        self.writer = None
        self.plan = None
        self._writer_class = None
        self.pictures = pictures
        self._templates_step = None  # the last epoch whose templates were sent to be drawn
        self._skipped = None  # (epoch, W, std) of the last epoch skipped while the worker was behind
        self._threads_before = None  # torch's CPU threads, while one core is left to the pictures

    def on_train_start(self, plan: TrainingPlan) -> None:
        # Imported now (it takes a second), so the first epoch's end stays short; the event
        # file itself waits for that epoch (see _open).
        from torch.utils.tensorboard import SummaryWriter

        from softmax_cli.data.batches import class_names

        self.plan = plan
        self.class_names = tuple(class_names())
        self._writer_class = SummaryWriter
        _quiet_writer_thread_failures()
        if self.pictures is None:
            self.pictures = PictureWorker()  # it imports matplotlib while the first epochs train
        if plan.device.type == "cpu":
            self._leave_a_core_to_the_pictures()

    def _open(self):
        # Lazily, so a run that completes no epoch (interrupted, diverged) leaves no event file.
        if self.writer is None:
            self.writer = self._writer_class(log_dir=str(self.log_dir))
            trial_id = f"{self.log_dir.parent.name}/{self.log_dir.name}"  # the run's name under `--logdir runs`
            self.writer.file_writer.add_summary(session_start_summary(self.plan.hparams.as_dict(), trial_id))
            self.writer.add_custom_scalars(CUSTOM_SCALARS_LAYOUT)
        return self.writer

    def _leave_a_core_to_the_pictures(self) -> None:
        # torch's CPU threads wait for work by spinning, so with one per core they take the
        # core the picture process draws on: on 2 cores a 10-epoch run took 4.3-4.4 s with
        # both threads, 3.4-3.5 s with one (README, *TensorBoard*, has what it costs an epoch).
        import torch

        threads = torch.get_num_threads()
        if threads > 1:
            torch.set_num_threads(threads - 1)
            self._threads_before = threads

    def _give_back_the_core(self) -> None:
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def _stop_pictures(self) -> None:
        if self.pictures is not None:
            pictures, self.pictures = self.pictures, None
            pictures.close()
        self._give_back_the_core()

    def close(self) -> None:
        """Close the event file and end the picture worker (also after a failed write, when
        training.BestEffort drops this logger)."""
        self._stop_pictures()
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()

    def on_epoch_end(self, metrics: EpochMetrics, model: SoftmaxRegression) -> None:
        self._open()
        for field, tag in SCALAR_TAGS.items():
            value = getattr(metrics, field)
            if value is not None:
                self.writer.add_scalar(tag, value, metrics.epoch)
        self._pictures(self._write_ready_and_send_templates, metrics.epoch, model)
        self.writer.flush()

    def _write_ready_and_send_templates(self, epoch: int, model: SoftmaxRegression) -> None:
        # Watch the ten 28x28 templates form, epoch by epoch. A copy: training goes on updating W in place.
        self._write_pictures(self.pictures.ready())
        weight = model.weight_bias()[0].detach().cpu().clone().numpy()
        std = None if model.input_stats is None else model.input_stats[1].cpu().numpy()
        if self.pictures.is_behind():  # skipped (see pictures.py), kept should it be the last
            self._skipped = (epoch, weight, std)
        else:
            self._send_templates(epoch, weight, std)

    def _send_templates(self, epoch: int, weight, std) -> None:
        self.pictures.submit(PictureJob("templates", "weights", epoch, weight, self.class_names, std))
        self._templates_step = epoch

    def _send_confusion(self, result: TrainingResult) -> None:
        epoch = result.epochs_done
        counts = result.final_evaluation.confusion.cpu().numpy()
        for tag, normalize in (("confusion_matrix", False), ("confusion_matrix/normalized", True)):
            self.pictures.submit(PictureJob("confusion", tag, epoch, counts, self.class_names, None, normalize))

    def _write_pictures(self, pictures) -> None:
        # What writer.add_image writes, from the PNG the worker already encoded.
        from tensorboard.compat.proto.summary_pb2 import Summary

        for picture in pictures:
            image = Summary.Image(
                height=picture.height, width=picture.width, colorspace=3, encoded_image_string=picture.png
            )
            summary = Summary(value=[Summary.Value(tag=picture.tag, image=image)])
            self.writer.file_writer.add_summary(summary, picture.step)

    def _pictures(self, work: Callable, *args) -> None:
        """Do picture work; should the worker fail, keep what it drew, report the failure once
        and go on without pictures (the curves are this logger's own; training.BestEffort
        handles the failures of those)."""
        if self.pictures is None:
            return
        try:
            work(*args)
        except PictureError as exc:
            self._stop_pictures()
            self._write_pictures(exc.drawn)
            if self.on_picture_failure is None:
                raise
            self.on_picture_failure(f"TensorBoard pictures stopped: {exc}; the curves go on")

    def _finish_pictures(self, result: TrainingResult) -> None:
        # The last finished epoch's templates, should they have been skipped: from the copy
        # taken then, as the model may since have moved on (a stopped or diverged epoch).
        if self._skipped is not None and self._skipped[0] == result.epochs_done != self._templates_step:
            self._send_templates(*self._skipped)
        if result.final_evaluation is not None:
            self._send_confusion(result)
        # After a stop, the user is waiting: a worker still busy then is not waited for long.
        self._write_pictures(self.pictures.finish(STOPPED_FINISH_TIMEOUT_S if result.interrupted else FINISH_TIMEOUT_S))

    def on_train_end(self, result: TrainingResult, model: SoftmaxRegression) -> None:
        if self.writer is None:
            self.close()
            return  # no epoch finished in this run: nothing to log, and no event file
        try:
            self._pictures(self._finish_pictures, result)
            status = session_end_status(result.diverged, result.interrupted)
            self.writer.file_writer.add_summary(session_end_summary(status))
        finally:
            self.close()  # also when a stop or a failed write cut the above short


def _quiet_writer_thread_failures() -> None:
    """Keep a failed write in TensorBoard's writer thread from printing a thread traceback.

    The writer thread stores its exception and re-raises it in the thread that writes or
    flushes next, where it reaches this logger's caller (and training.BestEffort reports it
    in one line); the thread then also dies with it, and Python's default threading.excepthook
    would print a traceback for that. The hook installed here skips exactly that thread
    class and hands every other thread's exception to the hook that was there.
    """
    import threading

    previous = threading.excepthook
    if getattr(previous, "_softmax_cli_quiet", False):
        return

    def hook(args) -> None:
        if type(args.thread).__name__ != "_AsyncWriterThread":
            previous(args)

    hook._softmax_cli_quiet = True
    threading.excepthook = hook
