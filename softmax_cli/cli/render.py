"""All Rich rendering: progress bars, the training table, and the result tables of every command.

The body reports through callbacks and plain data; only this module knows Rich tables.
"""

from __future__ import annotations

from typing import Optional

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
            self._progress.console.print(f"{name} [dim](already present, md5 ok)[/]")

    def note(self, message: str) -> None:
        self._progress.console.print(f"[yellow]{escape(message)}[/]", soft_wrap=True)


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
    settings = ", ".join(
        f"{key} {hparams[key]}"
        for key in ("lr", "batch_size", "seed", "momentum", "weight_decay", "schedule", "standardize")
        if key in hparams
    )
    console.print(
        f"[bold]{escape(str(path))}[/]: {checkpoint['impl']}, epoch {checkpoint['epoch']} ({settings})", soft_wrap=True
    )
    console.print(
        f"test accuracy [bold]{evaluation.accuracy:.4f}[/], mean cross-entropy "
        f"{evaluation.loss:.4f} on {evaluation.n:,} test images"
    )
    table = Table(title="Per class", title_justify="left", header_style="bold")
    table.add_column("class")
    # Per-class accuracy is one-vs-rest, (TP + TN) / N; recall is the share of the class found.
    for name in ("acc (1-vs-rest)", "precision", "recall", "support"):
        table.add_column(name, justify="right")
    for row in per_class:
        table.add_row(
            escape(row["class"]),  # class names come from the checkpoint file: never markup
            f"{row['accuracy']:.4f}",
            f"{row['precision']:.4f}",
            f"{row['recall']:.4f}",
            str(row["support"]),
        )
    console.print(table)
    names = [row["class"] for row in per_class]
    # Numbered columns keep the 10 x 10 matrix within 80 columns; the row labels name the numbers.
    matrix = Table(
        title="Confusion matrix (rows: true class, columns: predicted class number)",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
    )
    matrix.add_column("true \\ predicted", no_wrap=True)
    for k in range(len(names)):
        matrix.add_column(str(k), justify="right")
    for k, name in enumerate(names):
        cells = [f"[bold]{int(v)}[/]" if j == k else str(int(v)) for j, v in enumerate(evaluation.confusion[k])]
        matrix.add_row(escape(f"{k} {name}"), *cells)
    console.print(matrix)


def _fmt_s(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def render_bench(console: Console, payload: dict) -> None:
    """The rows table, then import and --help timings, on stderr."""
    s = payload["settings"]
    env = payload["environment"]
    capped = f", at most {s['max_batches']} batches/epoch" if s.get("max_batches") else ""
    title = (
        f"softmax bench on {s['device']} ({env.get('device_name') or '?'}, {env.get('cpu_count')} CPUs, "
        f"{s.get('threads') or env.get('torch_threads')} torch threads): batch {s['batch_size']}, lr {s['lr']:g}, "
        f"{s['warmup_epochs']} warm-up + {s['epochs']} timed epochs{capped}, {s['train_examples']:,} train images"
    )
    isolated = payload["memory_mode"] == "isolated"
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAVY)
    table.add_column("pipeline", no_wrap=True)
    table.add_column(f"s/epoch ({payload['timing_statistic']})", justify="right")
    table.add_column("min s", justify="right")
    table.add_column("examples/s", justify="right")
    table.add_column("× book", justify="right")
    table.add_column("peak RSS MiB" if isolated else "process peak RSS so far, MiB", justify="right")
    if isolated:
        table.add_column("after imports MiB", justify="right")
        table.add_column("whole process MiB", justify="right")
        table.add_column("worker peak MiB", justify="right")
    for row in payload["rows"]:
        cells = [
            row["label"],
            _fmt_s(row["seconds_per_epoch"]),
            _fmt_s(row["seconds_min"]),
            f"{row['examples_per_s']:,.0f}" if row["examples_per_s"] else "-",
            f"{row['speedup']:.1f}×" if row.get("speedup") else "-",
            f"{row['peak_rss_mib']:.0f}",
        ]
        if isolated:
            cells.append(f"{row['rss_after_imports_mib']:.0f}")
            cells.append(f"{row['process_maxrss_mib']:.0f}")
            cells.append(f"{row['workers_peak_rss_mib']:.0f}" if row.get("workers_peak_rss_mib") else "-")
        table.add_row(*cells)
    table.caption = (
        f"Training pass only (no evaluation, checkpoint or logging). × book: speed-up over the fastest "
        f"book row ({payload['baseline']}). {payload['memory_note']}."
    )
    table.caption_justify = "left"
    # A pipe or file gets Rich's 80 columns, which would wrap every row; a terminal keeps its width.
    out = console if console.is_terminal else Console(file=console.file, width=max(console.width, 150))
    out.print(table)

    imports = payload.get("imports")
    if imports:
        console.print(
            f"Import in a fresh process ({imports['statement']}): torch {imports['torch_s']:.2f} s, "
            f"torchvision {imports['torchvision_s']:.2f} s, tensorboard {imports['tensorboard_s']:.2f} s, "
            f"total {imports['total_s']:.2f} s; peak RSS {imports['peak_rss_mib']:.0f} MiB after the imports, "
            f"{imports['process_maxrss_mib']:.0f} MiB whole process",
            soft_wrap=True,
        )
    if payload.get("help"):
        times = ", ".join(
            f"{h['command'].removesuffix(' --help').removeprefix('softmax').strip() or '(root)'} {h['median_s']:.2f}"
            for h in payload["help"]
        )
        console.print(f"--help wall time (s, median of fresh processes): {times}", soft_wrap=True)
    if s.get("quick"):
        console.print("[yellow]--quick: capped smoke run; these figures are not a benchmark[/]")
    load = env.get("loadavg")
    if load:
        console.print(
            f"[dim]load average at start {load[0]:.2f}, at end {env.get('loadavg_end', [float('nan')])[0]:.2f} "
            f"(other processes on this machine skew timings)[/]"
        )


def render_predictions(console: Console, rows: list[dict], only_wrong: bool) -> None:
    """`softmax predict`'s table: index, true and predicted class, confidence, verdict."""
    table = Table(
        title=f"{len(rows)} test images ({'misclassified only' if only_wrong else 'in file order'})",
        title_justify="left",
        header_style="bold",
    )
    for name, justify in (("#", "right"), ("true", "left"), ("predicted", "left"), ("p", "right"), ("", "left")):
        table.add_column(name, justify=justify)
    for row in rows:
        mark = "[green]ok[/]" if row["correct"] else "[red]wrong[/]"
        table.add_row(
            str(row["index"]), escape(row["true"]), escape(row["predicted"]), f"{row['confidence']:.2f}", mark
        )
    console.print(table)


def render_comparison(console: Console, compared, seed: int) -> None:
    """`softmax compare`'s table: both implementations' losses and accuracies per epoch, and their distance."""
    table = Table(
        title=f"scratch vs concise, same seed {seed}, same initial weights and batch order",
        title_justify="left",
        header_style="bold",
    )
    for name in (
        "epoch",
        "loss scratch",
        "loss concise",
        "test acc scratch",
        "test acc concise",
        "max |ΔW|",
        "max |Δb|",
    ):
        table.add_column(name, justify="right")
    for row in compared:
        table.add_row(
            str(row.epoch),
            f"{row.scratch['train_loss']:.6f}",
            f"{row.concise['train_loss']:.6f}",
            f"{row.scratch['test_acc']:.4f}",
            f"{row.concise['test_acc']:.4f}",
            f"{row.max_weight_diff:.2e}",
            f"{row.max_bias_diff:.2e}",
        )
    console.print(table)
