"""Rich renderers for the callbacks the core reports through. The core never imports this."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table


class DownloadProgressBar:
    """A byte progress bar per file (size, speed, ETA), implementing download.DownloadProgress."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task = None

    def __enter__(self) -> "DownloadProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        # Started only by a transfer: a run where every file is present draws no (empty) bar.
        if self._progress.live.is_started:
            self._progress.stop()

    def file_started(self, name: str, total_bytes: int | None, source: str) -> None:
        if not self._progress.live.is_started:
            self._progress.start()
        self._task = self._progress.add_task(name, total=total_bytes)

    def advance(self, n_bytes: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n_bytes)

    def file_finished(self, name: str, status: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, description=f"{name} [dim]({status})[/]")
            self._task = None
        elif status == "present":
            self._progress.console.print(f"{name} [dim](already present, md5 ok)[/]", highlight=False)

    def note(self, message: str) -> None:
        self._progress.console.print(f"[yellow]{escape(message)}[/]", highlight=False, soft_wrap=True)


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def epoch_table(title: str, with_validation: bool) -> Table:
    """The per-epoch table: one row per finished epoch, kept on screen."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for name in ("epoch", "train loss", "train acc"):
        table.add_column(name, justify="right")
    if with_validation:
        table.add_column("val acc", justify="right")
    for name in ("test acc", "examples/s", "seconds"):
        table.add_column(name, justify="right")
    return table


class TrainingDisplay:
    """A live batch/epoch progress bar under a growing per-epoch table, on stderr.

    Implements core.TrainingCallbacks (duck-typed so this module does not import torch).
    """

    def __init__(self, console: Console, title: str, with_validation: bool) -> None:
        self.table = epoch_table(title, with_validation)
        self.with_validation = with_validation
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.live = Live(Group(self.table, self.progress), console=console, refresh_per_second=8)
        self.epoch_task = self.batch_task = None

    def __enter__(self) -> "TrainingDisplay":
        self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        # Drop the bars, keep the table.
        self.live.update(self.table, refresh=True)
        self.live.stop()
        if not self.live.console.is_terminal:
            # Off a terminal Live leaves its last render without a newline; end the table's line.
            self.live.console.line()

    def on_train_start(self, plan) -> None:
        self.epoch_task = self.progress.add_task("epochs", total=plan.hparams.epochs, completed=plan.start_epoch)
        self.batch_task = self.progress.add_task("batches", total=plan.batches_per_epoch)

    def on_batch_end(self) -> None:
        self.progress.advance(self.batch_task)

    def on_epoch_end(self, metrics, model) -> None:
        cells = [str(metrics.epoch), f"{metrics.train_loss:.4f}", f"{metrics.train_acc:.4f}"]
        if self.with_validation:
            cells.append(f"{metrics.val_acc:.4f}")
        cells += [f"{metrics.test_acc:.4f}", _fmt_rate(metrics.examples_per_s), f"{metrics.seconds:.2f}"]
        self.table.add_row(*cells)
        self.progress.advance(self.epoch_task)
        self.progress.reset(self.batch_task)

    def on_train_end(self, result, model) -> None:
        pass


def render_evaluation(console: Console, path, checkpoint: dict, evaluation, per_class: list[dict]) -> None:
    """Summary, per-class table and confusion matrix of `softmax eval`."""
    hparams = checkpoint["hparams"]
    settings = ", ".join(f"{key} {hparams[key]}" for key in ("lr", "batch_size", "seed", "momentum",
                                                               "weight_decay", "schedule", "standardize")
                         if key in hparams)
    console.print(f"[bold]{escape(str(path))}[/]: {checkpoint['impl']}, epoch {checkpoint['epoch']} ({settings})",
                  highlight=False, soft_wrap=True)
    console.print(f"test accuracy [bold]{evaluation.accuracy:.4f}[/], mean cross-entropy "
                  f"{evaluation.loss:.4f} on {evaluation.n:,} test images", highlight=False)
    table = Table(title="Per class", title_justify="left", header_style="bold")
    table.add_column("class")
    # Per-class accuracy is one-vs-rest, (TP + TN) / N; recall is the share of the class found.
    for name in ("acc (1-vs-rest)", "precision", "recall", "support"):
        table.add_column(name, justify="right")
    for row in per_class:
        table.add_row(row["class"], f"{row['accuracy']:.4f}", f"{row['precision']:.4f}",
                      f"{row['recall']:.4f}", str(row["support"]))
    console.print(table)
    names = [row["class"] for row in per_class]
    # Numbered columns keep the 10 x 10 matrix within 80 columns; the row labels name the numbers.
    matrix = Table(title="Confusion matrix (rows: true class, columns: predicted class number)",
                   title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    matrix.add_column("true \\ predicted", no_wrap=True)
    for k in range(len(names)):
        matrix.add_column(str(k), justify="right")
    for k, name in enumerate(names):
        cells = [f"[bold]{int(v)}[/]" if j == k else str(int(v)) for j, v in enumerate(evaluation.confusion[k])]
        matrix.add_row(f"{k} {name}", *cells)
    console.print(matrix)
