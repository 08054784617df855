"""TensorBoard logging as a training callback: scalars per epoch, hparams at the end.

The event file is opened by the first finished epoch, so a run that finishes none leaves
none. A failed write (a full disk) raises out of these hooks; the CLI wraps this logger in
training.BestEffort, which reports it once and lets training go on without it.
"""

from __future__ import annotations

from pathlib import Path

from softmax_cli.models import SoftmaxRegression
from softmax_cli.training import EpochMetrics, TrainingCallbacks, TrainingResult

SCALAR_TAGS = {
    "train_loss": "loss/train",
    "train_acc": "accuracy/train",
    "test_acc": "accuracy/test",
    "val_acc": "accuracy/val",
    "lr": "lr",
}


class TensorBoardLogger(TrainingCallbacks):
    """Writes one run's curves into its own folder, so repeated runs never mix."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.writer = None
        self._writer_class = None

    def on_train_start(self, plan) -> None:
        # Imported now (it takes a second), so the first epoch's end stays short; the event
        # file itself waits for that epoch (see _open).
        from torch.utils.tensorboard import SummaryWriter

        self._writer_class = SummaryWriter
        _quiet_writer_thread_failures()

    def _open(self):
        # Lazily, so a run that completes no epoch (interrupted, diverged) leaves no event file.
        if self.writer is None:
            if self._writer_class is None:
                self.on_train_start(None)
            self.writer = self._writer_class(log_dir=str(self.log_dir))
        return self.writer

    def close(self) -> None:
        """Close the event file (also after a failed write, when training.BestEffort drops this logger)."""
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()

    def on_epoch_end(self, metrics: EpochMetrics, model: SoftmaxRegression) -> None:
        from softmax_cli.viz import weight_templates

        self._open()

        for field, tag in SCALAR_TAGS.items():
            value = getattr(metrics, field)
            if value is not None:
                self.writer.add_scalar(tag, value, metrics.epoch)
        # Watch the ten 28x28 templates form, one image per class, epoch by epoch.
        self.writer.add_images("weights", weight_templates(model.weight_bias()[0]), metrics.epoch)
        self.writer.flush()

    def on_train_end(self, result: TrainingResult, model: SoftmaxRegression) -> None:
        from softmax_cli.viz import confusion_image

        if self.writer is None:
            return  # no epoch finished in this run: nothing to log, and no event file
        try:
            if result.history:
                last = result.history[-1]
                final = {
                    f"hparam/{key}": last[key]
                    for key in ("train_loss", "train_acc", "test_acc", "val_acc")
                    if key in last
                }
                # run_name="." keeps the hparams record in this run's folder instead of a new sub-folder.
                self.writer.add_hparams(result.hparams.as_dict(), final, run_name=".")
            if result.final_evaluation is not None:
                self.writer.add_image(
                    "confusion_matrix",
                    confusion_image(result.final_evaluation.confusion, result.class_names),
                    len(result.history),
                    dataformats="HWC",
                )
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
