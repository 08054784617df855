"""TensorBoard logging as a training callback: scalars per epoch, hparams at the end."""

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

    def on_train_start(self, plan) -> None:
        # Opened only once the data are ready, so a run that fails before training leaves no event file.
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def on_epoch_end(self, metrics: EpochMetrics, model: SoftmaxRegression) -> None:
        from softmax_cli.viz import weight_templates

        for field, tag in SCALAR_TAGS.items():
            value = getattr(metrics, field)
            if value is not None:
                self.writer.add_scalar(tag, value, metrics.epoch)
        # Watch the ten 28x28 templates form, one image per class, epoch by epoch.
        self.writer.add_images("weights", weight_templates(model.weight_bias()[0]), metrics.epoch)
        self.writer.flush()

    def on_train_end(self, result: TrainingResult, model: SoftmaxRegression) -> None:
        from softmax_cli.viz import confusion_image

        if result.history:
            last = result.history[-1]
            final = {
                f"hparam/{key}": last[key] for key in ("train_loss", "train_acc", "test_acc", "val_acc") if key in last
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
        self.writer.close()
