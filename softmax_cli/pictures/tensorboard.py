"""TensorBoard logging as a training callback: curves every epoch, the weight templates every
epoch, the confusion matrix and the run's status at the end, the hyperparameters from the start.

The pictures are drawn here with torch ops, in TensorBoard's own terms, so training never
imports matplotlib and starts no helper process: one image per class under `weights/<class
name>` (TensorBoard labels each card with its tag), a text card saying what the colours mean
and the scale, and the confusion matrix as a Markdown table with recall per class.

Tags (docs/pictures.md): loss/train, loss/test, accuracy/train, accuracy/test, accuracy/val,
lr; images weights/<class name>; text weights/colours, confusion_matrix and run (a named or
resumed run: its name, the run it continues); the HPARAMS tab;
the book's curves (train and test on one chart) in the CUSTOM SCALARS tab.

The event file is opened by the first finished epoch, so a run that finishes none leaves
none. A failed write (a full disk) raises out of these hooks; the CLI wraps this logger in
training.BestEffort, which reports it once and lets training go on without it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from softmax_cli.data.fashion_mnist import IMAGE_SIDE
from softmax_cli.models import SoftmaxRegression
from softmax_cli.pictures.figures import COLOUR_LIMIT_QUANTILE, RARELY_LIT_STD_FRACTION
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

    TensorBoard knows numbers (float64), text and booleans; it has no integer type, and its
    HPARAMS table prints every number with 5 significant digits (JavaScript's toPrecision(5),
    whatever type the experiment declares): epochs 3 would read "3.0000", batch size 256
    "256.00". So integers (epochs, batch_size, seed) are written as text ("3", "256"), which
    the table prints as is; the seed also could not be held exactly by a float64. Other
    numbers (lr, momentum, ...) stay numbers, to sort, filter by range and draw on numeric
    axes. Booleans stay booleans (true/false).
    """
    return {key: str(value) if _is_integer(value) else value for key, value in hparams.items()}


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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


def run_card(name: str | None, continues: str | None, from_epoch: int | None) -> str:
    """The text card `run`: the run's name, and the run it continues; empty when there is neither."""
    lines = []
    if name is not None:
        lines.append(f"Name: {name}")
    if continues is not None:
        lines.append(f"Continues {continues} after its epoch {from_epoch} (softmax train --resume).")
    return "\n\n".join(lines)


# Each template's 28 x 28 pixels are drawn as SCALE x SCALE blocks (nearest neighbour), so a
# TensorBoard card shows the pixels, not a blur.
SCALE = 8
# A diverging map, as matplotlib's RdBu_r: blue (negative) through near-white (0) to red (positive).
NEGATIVE, ZERO, POSITIVE = (0.13, 0.40, 0.67), (0.97, 0.97, 0.97), (0.70, 0.09, 0.17)
RARELY_LIT_GREY = 0.72


def weight_images(weight, input_std=None) -> tuple[list, float]:
    """The ten columns of W (784 x 10) as ten RGB images (3 x 224 x 224 float tensors in [0, 1])
    and the colour scale they share: +-scale are the two ends of the map, 0 is near-white.

    In pixel space for a standardized run (W / std, what each raw pixel is weighed by); pixels
    rarely lit in training are grey, as in `eval --weights-png`.
    """
    import torch

    templates = weight.detach().float().cpu().T.clone()  # 10 x 784
    rarely_lit = torch.zeros(templates.shape[1], dtype=torch.bool)
    if input_std is not None:
        std = input_std.detach().float().cpu()
        templates = templates / std
        rarely_lit = std < RARELY_LIT_STD_FRACTION * std.median()
    shown = templates[:, ~rarely_lit].abs()
    # As the figures' colour bars: a few extreme pixels must not wash the rest out.
    scale = float(torch.quantile(shown.flatten(), COLOUR_LIMIT_QUANTILE)) if shown.numel() else 0.0
    if scale <= 0:
        scale = max(float(shown.max()), 1e-12) if shown.numel() else 1.0
    t = (templates / scale).clamp(-1, 1).unsqueeze(-1)  # 10 x 784 x 1, in [-1, 1]
    zero, negative, positive = (torch.tensor(c) for c in (ZERO, NEGATIVE, POSITIVE))
    rgb = torch.where(t < 0, zero + (negative - zero) * -t, zero + (positive - zero) * t)  # 10 x 784 x 3
    rgb[:, rarely_lit] = RARELY_LIT_GREY
    rgb = rgb.reshape(-1, IMAGE_SIDE, IMAGE_SIDE, 3).permute(0, 3, 1, 2)  # 10 x 3 x 28 x 28
    rgb = rgb.repeat_interleave(SCALE, dim=2).repeat_interleave(SCALE, dim=3)
    return list(rgb), scale


def colour_legend(scale: float, standardized: bool) -> str:
    """The text card that says once what the weight images' colours mean."""
    unit = "pixel-space weight (W / std: the input was standardized)" if standardized else "weight"
    grey = " Grey: pixels rarely lit in training." if standardized else ""
    return (
        f"Each image is one class's column of W, its 28 x 28 {unit}s. Red raises the class score, "
        f"blue lowers it, near-white is 0. One symmetric scale for all ten classes: full red is "
        f"+{scale:.3g} or more, full blue -{scale:.3g} or less.{grey}"
    )


def confusion_markdown(confusion, class_names: Sequence[str]) -> str:
    """The confusion matrix as a Markdown table of counts (true class by row, predicted by column,
    full class names) with each class's recall, and the accuracy.

    The columns are numbered as the rows are: with ten names across, TensorBoard's text panel
    broke them mid-word at a normal window width ("Trouse r").
    """
    counts = [[int(v) for v in row] for row in confusion.tolist()]
    total = sum(map(sum, counts))
    correct = sum(counts[i][i] for i in range(len(counts)))
    lines = [
        f"Test images: {total:,}; accuracy {correct / max(total, 1):.4f}. Rows: the true class; "
        "columns: the predicted class, numbered as the rows; recall: the share of the true class predicted right.",
        "",
        "| true \\ predicted | " + " | ".join(str(i) for i in range(len(class_names))) + " | recall |",
        "|---|" + "---:|" * (len(class_names) + 1),
    ]
    for name, row, i in zip(class_names, counts, range(len(counts)), strict=True):
        recall = row[i] / sum(row) if sum(row) else 0.0
        lines.append(f"| **{i} {name}** | " + " | ".join(str(v) for v in row) + f" | {recall:.3f} |")
    return "\n".join(lines)


class TensorBoardLogger(TrainingCallbacks):
    """Writes one run's curves and pictures into its own folder, so repeated runs never mix."""

    def __init__(
        self, log_dir: Path, name: str | None = None, continues: str | None = None, from_epoch: int | None = None
    ) -> None:
        """name: the run's name (--name); continues: the run it resumes (its name under `--logdir RUNS_DIR`,
        or the checkpoint file where no run is known), after from_epoch epochs."""
        self.log_dir = log_dir
        self.name = name
        self.continues = continues
        self.from_epoch = from_epoch
        self.writer = None
        self.plan = None
        self._writer_class = None

    def on_train_start(self, plan: TrainingPlan) -> None:
        # Imported now (it takes a second), so the first epoch's end stays short; the event
        # file itself waits for that epoch (see _open).
        from torch.utils.tensorboard import SummaryWriter

        from softmax_cli.data.batches import class_names

        self.plan = plan
        self.class_names = tuple(class_names())
        self._writer_class = SummaryWriter
        quiet_writer_thread_failures()

    def _open(self):
        # Lazily, so a run that completes no epoch (interrupted, diverged) leaves no event file.
        if self.writer is None:
            self.writer = self._writer_class(log_dir=str(self.log_dir))
            trial_id = f"{self.log_dir.parent.name}/{self.log_dir.name}"  # the run's name under `--logdir runs`
            hparams = self.plan.hparams.as_dict()
            if self.name is not None:
                hparams["name"] = self.name
            if self.continues is not None:
                hparams["continues"] = self.continues
            self.writer.file_writer.add_summary(session_start_summary(hparams, trial_id))
            self.writer.add_custom_scalars(CUSTOM_SCALARS_LAYOUT)
            card = run_card(self.name, self.continues, self.from_epoch)
            if card:
                self.writer.add_text("run", card, self.plan.start_epoch + 1)
        return self.writer

    def close(self) -> None:
        """Close the event file (also after a failed write, when training.BestEffort drops this logger)."""
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()

    def on_epoch_end(self, metrics: EpochMetrics, model: SoftmaxRegression) -> None:
        self._open()
        for field, tag in SCALAR_TAGS.items():
            value = getattr(metrics, field)
            if value is not None:
                self.writer.add_scalar(tag, value, metrics.epoch)
        # Watch the ten templates form, epoch by epoch.
        std = None if model.input_stats is None else model.input_stats[1]
        images, scale = weight_images(model.weight_bias()[0], std)
        for name, image in zip(self.class_names, images, strict=True):
            self.writer.add_image(f"weights/{name}", image, metrics.epoch)
        self.writer.add_text("weights/colours", colour_legend(scale, std is not None), metrics.epoch)
        self.writer.flush()

    def on_train_end(self, result: TrainingResult, model: SoftmaxRegression) -> None:
        if self.writer is None:
            self.close()
            return  # no epoch finished in this run: nothing to log, and no event file
        try:
            if result.final_evaluation is not None:
                table = confusion_markdown(result.final_evaluation.confusion, self.class_names)
                self.writer.add_text("confusion_matrix", table, result.epochs_done)
            status = session_end_status(result.diverged, result.interrupted)
            self.writer.file_writer.add_summary(session_end_summary(status))
        finally:
            self.close()  # also when a stop or a failed write cut the above short


def quiet_writer_thread_failures() -> None:
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
