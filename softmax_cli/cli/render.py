"""All Rich rendering: progress bars, the per-epoch rows, the sweep's display and every result table.

The body reports through callbacks and plain data; only this module knows Rich tables.

Every table fits the console's width without cutting a number: a table is laid out with
all its columns and full headers first, then with shorter headers, then without its less
important columns, and the first layout Rich renders without an ellipsis is printed. Names
wrap between words; numbers never wrap. A path is printed alone on its line and never broken
(soft_wrap): one longer than the terminal is left for the terminal to wrap, so it can be
copied whole.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from rich import box
from rich.console import Console, RenderableType
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
from rich.table import Column as RichColumn
from rich.table import Table
from rich.text import Text

from softmax_cli.config import PRESETS, Hparams, count

# --------------------------------------------------------------------------- tables that fit


@dataclass(frozen=True)
class Column:
    """A table column: its header, and at which stage of narrowing it is shortened or left out.

    A table is first laid out at stage 0 (every column, full headers); each further stage
    shortens the headers whose `shorten` it has reached and leaves out the columns whose
    `drop` it has reached, until the table fits.
    """

    header: str
    short: str = ""  # the shorter header (it may hold a line break) from stage `shorten` on
    shorten: int = 1
    drop: int = 0  # the stage from which the column is left out; 0: never
    justify: str = "right"
    text: bool = False  # a name that may wrap between words; numbers never wrap
    min_width: Optional[int] = None  # a name column narrower than this drops other columns instead


Layout = list[tuple[int, str]]  # (column index, header) of the columns shown


def _layouts(columns: list[Column]) -> Iterator[Layout]:
    """Stage by stage, from the fullest layout to the leanest."""
    last = max([column.drop for column in columns] + [column.shorten for column in columns if column.short])
    for stage in range(last + 1):
        yield [
            (i, column.short if column.short and column.shorten <= stage else column.header)
            for i, column in enumerate(columns)
            if not 0 < column.drop <= stage
        ]


def shows_whole(console: Console, renderable: RenderableType, cells: list[str]) -> bool:
    """Whether the renderable, at the console's width, shows every word of `cells` (markup allowed) uncut.

    Rich marks a cut cell with an ellipsis, and crops a table wider than the console at its
    right edge without a mark: checking both catches every number that would not show whole.
    """
    lines = console.render_lines(renderable, console.options, pad=False)
    shown = "\n".join("".join(segment.text for segment in line) for line in lines)
    expected = Counter(word for cell in cells for word in Text.from_markup(cell).plain.split())
    return "…" not in shown and not expected - Counter(shown.split())


def first_fitting(console: Console, candidates: list[Callable[[], tuple[RenderableType, list[str]]]]):
    """The first candidate renderable that shows its cells whole at the console's width; else the last.

    Each candidate returns (renderable, the cells it must show whole).
    """
    renderable = None
    for make in candidates:
        renderable, cells = make()
        if shows_whole(console, renderable, cells):
            break
    return renderable


def fit_table(console: Console, columns: list[Column], rows: list[list], title: str = "", **options) -> Table:
    """A Rich table of `rows` (cells in `columns`' order) in the fullest layout that fits the console."""

    def make(layout: Layout):
        def build() -> tuple[Table, list[str]]:
            table = Table(
                title=title or None,
                title_justify="left",
                title_style="bold",
                header_style="bold",
                box=box.SIMPLE_HEAD,
                show_edge=False,
                pad_edge=False,
                **options,
            )
            for index, header in layout:
                column = columns[index]
                table.add_column(header, justify=column.justify, no_wrap=not column.text, min_width=column.min_width)
            for row in rows:
                table.add_row(*(row[index] for index, _ in layout))
            return table, [header for _, header in layout] + [row[index] for row in rows for index, _ in layout]

        return build

    return first_fitting(console, [make(layout) for layout in _layouts(columns)])


class RowPrinter:
    """A table printed one row at a time: train's rows as epochs end, runs' rows each with its path below.

    Rich cannot add rows to a table it has already printed, nor run one line across a table's
    columns, so these rows are laid out here: fixed widths chosen from sample cells at the
    start, the header printed just before the first row (so an error before any row leaves
    no empty table behind).
    """

    GAP = "  "

    def __init__(self, console: Console, columns: list[Column], samples: list[list[str]]) -> None:
        self.console = console
        layout, widths = [], []
        for layout in _layouts(columns):
            widths = [max(len(header), *(len(row[i]) for row in samples)) for i, header in layout]
            if sum(widths) + len(self.GAP) * (len(widths) - 1) <= console.width:
                break
        self.columns, self.layout, self.widths = columns, layout, widths
        self.header_printed = False

    def _line(self, cells: list[Text]) -> Text:
        parts = []
        for (index, _), width, cell in zip(self.layout, self.widths, cells, strict=True):
            padding = Text(" " * max(0, width - cell.cell_len))
            parts.append(padding + cell if self.columns[index].justify == "right" else cell + padding)
        line = Text(self.GAP).join(parts)
        line.rstrip()
        return line

    def row(self, cells: list[str | Text]) -> None:
        """Print one row (cells in the columns' order), after the header if it is the first."""
        if not self.header_printed:
            self.header_printed = True
            headers = [Text(header, style="bold") for _, header in self.layout]
            self.console.print(self._line(headers), soft_wrap=True)
        shown = [cells[index] for index, _ in self.layout]
        self.console.print(self._line([c if isinstance(c, Text) else Text(c) for c in shown]), soft_wrap=True)


# --------------------------------------------------------------------------- progress


class _RemainingOrStatus(TimeRemainingColumn):
    """The time left while a file transfers; how it ended (downloaded, imported, ...) once it has."""

    def render(self, task):
        status = task.fields.get("status")
        return Text(status, style="dim") if status else super().render(task)


class DownloadProgressBar:
    """A byte progress bar per file (size, speed, ETA), implementing download.DownloadProgress."""

    # The longest file name (26), a 20-cell bar, "26.4/26.4 MB", "547.2 MB/s", "downloaded", gaps.
    NATURAL_WIDTH = 26 + 20 + 12 + 10 + 10 + 4

    def __init__(self, console: Console) -> None:
        self._console = console
        # The figures never wrap or shrink ("MB" alone on a second line). On a console too narrow
        # for the bar's natural width, the file name and the bar share what is left (ratios apply
        # only to an expanded table, which a wide console would stretch needlessly).
        figures = {"table_column": RichColumn(no_wrap=True)}
        narrow = console.width < self.NATURAL_WIDTH
        self._progress = Progress(
            TextColumn("{task.description}", table_column=RichColumn(no_wrap=True, overflow="ellipsis", ratio=2)),
            BarColumn(bar_width=None if narrow else 20, table_column=RichColumn(ratio=1)),
            DownloadColumn(**figures),
            TransferSpeedColumn(**figures),
            _RemainingOrStatus(**figures),
            console=console,
            transient=False,
            expand=narrow,
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
        self._task = self._progress.add_task(name, total=total_bytes, status="")

    def advance(self, n_bytes: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n_bytes)

    def file_finished(self, name: str, status: str) -> None:
        if self._task is not None:
            self._progress.update(self._task, status=status)
            self._task = None
        elif status == "present":
            self._progress.console.print(f"{name} [dim](already present, md5 ok)[/]")
        elif status == "repaired":
            self._progress.console.print(f"{name} [dim](md5 ok; its uncompressed file extracted again)[/]")

    def note(self, message: str) -> None:
        self._progress.console.print(f"[yellow]{escape(message)}[/]", soft_wrap=True)


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def _setting(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_settings(hparams: dict) -> str:
    """A run's recipe in words: its preset with every setting the preset fixes, then the rest.

    e.g. "preset book: epochs 10, lr 0.1, batch size 256, momentum 0, weight decay 0,
    schedule constant, standardize no; seed 326, loader memory"
    """
    preset = hparams.get("preset", Hparams.preset)
    fixed = ", ".join(
        f"{name.replace('_', ' ')} {_setting(hparams.get(name, getattr(Hparams, name)))}"
        for name in PRESETS.get(preset, PRESETS[Hparams.preset])
    )
    rest = [f"seed {hparams.get('seed', Hparams.seed)}", f"loader {hparams.get('loader', Hparams.loader)}"]
    if hparams.get("val_split"):
        rest.append(f"val split {_setting(hparams['val_split'])}")
    if hparams.get("naive_softmax"):
        rest.append("naive softmax")
    return f"preset {preset}: {fixed}; {', '.join(rest)}"


EPOCH_COLUMNS = [
    Column("epoch"),
    Column("train loss"),
    Column("train acc", drop=3),
    Column("val acc"),
    Column("test acc"),
    Column("examples/s", drop=1),
    Column("seconds", drop=2),
]


def progress_bars(console: Console) -> Progress:
    """Counting progress bars (done of total, elapsed, remaining) that vanish when they stop."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


class TrainingBars:
    """The live part of both training displays (train's and the sweep's): an epochs bar and a
    batches bar, plus any bar a display adds, on a terminal only (a log file gets the lines, not
    bar frames) and gone at the end. A context manager."""

    def __init__(self, console: Console) -> None:
        self.progress = progress_bars(console)
        self.epoch_task = self.batch_task = None

    def __enter__(self) -> "TrainingBars":
        if self.progress.console.is_terminal:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def add(self, label: str, total: int, completed: int = 0):
        """A further bar (the sweep's configurations); returns its task for advance()."""
        return self.progress.add_task(label, total=total, completed=completed)

    def advance(self, task, by: int = 1) -> None:
        self.progress.advance(task, by)

    def begin(self, label: str, epochs: int, batches_per_epoch: int, epochs_done: int = 0) -> None:
        """Fresh epoch and batch bars (a sweep's next group replaces its last one's)."""
        for task in (self.epoch_task, self.batch_task):
            if task is not None:
                self.progress.remove_task(task)
        self.epoch_task = self.add(label, epochs, epochs_done)
        self.batch_task = self.add("batches", batches_per_epoch)

    def batch_done(self) -> None:
        self.advance(self.batch_task)

    def epoch_done(self) -> None:
        self.advance(self.epoch_task)
        self.progress.reset(self.batch_task)


class TrainingDisplay:
    """Progress bars on `console` (stderr; shown on a terminal only, gone at the end), and the run's
    settings then one row per finished epoch on `rows` (stdout for `train`, so `softmax train > log.txt`
    keeps the header and one line per epoch).

    Implements training.TrainingCallbacks (duck-typed so this module does not import torch).
    label: a one-line title to print at the start instead of the run's full settings.
    reader_gone: called instead of raising when `rows` is a pipe its reader closed (`| head -2`).
    """

    def __init__(
        self, console: Console, rows: Console, label: str = "", reader_gone: Optional[Callable[[], None]] = None
    ) -> None:
        # stdout and stderr on one terminal: a row printed to stdout would land in the middle of the
        # bars Rich redraws on stderr, so it goes through the bars' console, which prints it above
        # them (on the same screen). Redirected, the rows go to stdout as asked.
        if rows.is_terminal and console.is_terminal:
            rows = console
        self.console, self.rows, self.label = console, rows, label
        self.reader_gone = reader_gone
        self.printer: Optional[RowPrinter] = None
        self.with_validation = False
        self.bars = TrainingBars(console)

    def __enter__(self) -> "TrainingDisplay":
        self.bars.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.__exit__(*exc)

    def on_train_start(self, plan) -> None:
        hparams = plan.hparams
        self.with_validation = bool(hparams.val_split)
        if self.label:
            self.show(self.label)
        else:
            verb = f"Resuming from epoch {plan.start_epoch}:" if plan.start_epoch else "Training"
            self.show(f"{verb} {hparams.impl} on {plan.device}, {describe_settings(hparams.as_dict())}")
        validation = getattr(plan, "validation_examples", 0)
        if validation:
            self.show(
                f"--val-split {hparams.val_split:g}: training on {plan.train_examples:,} images, "
                f"validating on {validation:,} held out from the train split"
            )
        columns = [c for c in EPOCH_COLUMNS if c.header != "val acc" or self.with_validation]
        sample = [str(hparams.epochs), "0.0000", "0.0000", "0.0000", "0.0000", "10,000,000", "100.00"]
        if not self.with_validation:
            del sample[3]
        self.printer = RowPrinter(self.rows, columns, [sample])
        self.bars.begin("epochs", hparams.epochs, plan.batches_per_epoch, epochs_done=plan.start_epoch)

    def on_batch_end(self) -> None:
        self.bars.batch_done()

    def on_epoch_end(self, metrics, model) -> None:
        cells = [str(metrics.epoch), f"{metrics.train_loss:.4f}", f"{metrics.train_acc:.4f}"]
        if self.with_validation:
            cells.append(f"{metrics.val_acc:.4f}")
        cells += [f"{metrics.test_acc:.4f}", _fmt_rate(metrics.examples_per_s), f"{metrics.seconds:.2f}"]
        self._reading(lambda: self.printer.row(cells))
        self.bars.epoch_done()

    def on_train_end(self, result, model) -> None:
        pass

    def show(self, markup: str) -> None:
        """A line of prose above the rows, wrapped between words at the console's width."""
        self._reading(lambda: self.rows.print(markup))

    def _reading(self, write: Callable[[], None]) -> None:
        try:
            write()
        except BrokenPipeError:
            if self.reader_gone is None:
                raise
            self.reader_gone()


# --------------------------------------------------------------------------- softmax sweep
# Progress over groups, epochs and batches, and the ranked table, drawn from the sweep's JSON
# payload (plain data), so what a user reads and what --json says cannot differ.


# Column headers of the sweepable settings, short enough for 80 columns.
SETTING_HEADERS = {
    "lr": "lr",
    "weight_decay": "wd",
    "momentum": "momentum",
    "schedule": "schedule",
    "batch_size": "batch",
    "seed": "seed",
}
SETTING_WORDS = {**SETTING_HEADERS, "momentum": "mom"}


def _value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe(hparams: dict, names) -> str:
    """'lr 0.1, wd 0.0001' for the named settings."""
    return ", ".join(f"{SETTING_WORDS[name]} {_value(hparams[name])}" for name in names)


class SweepDisplay:
    """Progress bars on stderr (configurations, the group's epochs, its batches) and one line per
    finished group. Implements sweep.SweepCallbacks (duck-typed: this module imports no torch)."""

    def __init__(self, console: Console, planned: int, varying: list[str]) -> None:
        self.varying = varying
        self.console = console
        self.bars = TrainingBars(console)
        self.configs_task = self.bars.add("configurations", planned)

    def __enter__(self) -> "SweepDisplay":
        self.bars.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.__exit__(*exc)

    def on_group_start(self, plan) -> None:
        label = f"group {plan.index + 1}/{plan.groups}" if plan.groups > 1 else "epochs"
        self.bars.begin(label, plan.epochs, plan.batches_per_epoch)

    def on_batch_end(self) -> None:
        self.bars.batch_done()

    def on_epoch_end(self, plan, epoch: int, model) -> None:
        self.bars.epoch_done()

    def on_group_end(self, plan, model) -> None:
        self.bars.advance(self.configs_task, len(plan.configs))
        finished = [c for c in plan.configs if not c.diverged and c.final]
        diverged = len(plan.configs) - len(finished)
        line = (
            f"group {plan.index + 1}/{plan.groups}: batch {plan.batch_size}, seed {plan.seed}, "
            f"{count(len(plan.configs), 'configuration')}"
        )
        if finished:
            best = min(finished, key=lambda c: c.rank_key())
            settings = describe(best.hparams.as_dict(), [n for n in self.varying if n not in ("batch_size", "seed")])
            line += f": best val acc {best.final['val_acc']:.4f}" + (f" ({settings})" if settings else "")
        if diverged:
            line += f"; [yellow]{diverged} diverged[/]"
        self.console.print(line, soft_wrap=True)

    def on_results(self, result) -> None: ...


def render_sweep(console: Console, payload: dict, top: int | None = None) -> None:
    """The ranked table, then the chosen configuration and the command that reproduces it alone."""
    configs = payload["configs"]
    if not configs:
        return
    names = payload["varying"]
    first = configs[0]["hparams"]
    shown = configs if top is None else configs[:top]
    epochs = first["epochs"]
    title = f"{count(payload['trained'], 'configuration')} × {count(epochs, 'epoch')}, best validation accuracy first"
    if payload["interrupted"]:
        title += f" (interrupted: {payload['planned'] - payload['trained']} not trained)"
    fixed = [
        describe(first, [n for n in SETTING_HEADERS if n not in names]),
        f"standardize {'yes' if first['standardize'] else 'no'}",
    ]
    notes = ["fixed: " + ", ".join(part for part in fixed if part) + f"; val split {first['val_split']:g}."]
    diverged_in = sorted({c["diverged_epoch"] for c in configs if c["diverged"]})
    if diverged_in:
        epochs_text = ", ".join(map(str, diverged_in))
        notes.append(f"Diverged: loss or weights became NaN or infinite (epoch {epochs_text}); dropped out.")
    notes.append("Test accuracy is for information: the choice is made on validation.")
    if top is not None and top < len(configs):
        notes.append(f"{len(configs) - top} more rows not shown (--top).")
    # Narrower and narrower layouts, until every number fits the console (Rich would cut them to "…").
    for layout in LAYOUTS:
        table = _ranked_table(shown, names, payload, title, " ".join(notes), **layout)
        # Measured without the console's width, which Rich's own measure() clamps to.
        if table.__rich_measure__(console, console.options.update_width(10_000)).maximum <= console.width:
            break
    console.print(table)
    best = payload["best"]
    if best is None:
        return
    final = best["final"]
    settings = describe(best["hparams"], names) or "the only configuration"
    console.print(
        f"Chosen: {escape(settings)}: val acc {final['val_acc']:.4f}, test acc {final['test_acc']:.4f}, "
        f"train loss {final['train_loss']:.4f}",
        soft_wrap=True,
    )
    console.print(f"Train it alone: {escape(payload['reproduce'])}", soft_wrap=True)


METRICS = ("train loss", "val acc", "test acc")
COMPACT = {"weight_decay": "wd", "momentum": "mom", "schedule": "sched", "batch_size": "bs",
           "train loss": "loss", "val acc": "val", "test acc": "test"}  # fmt: skip
LAYOUTS = [
    {"compact": False, "metrics": METRICS, "note": True, "rank": True},
    {"compact": True, "metrics": METRICS, "note": True, "rank": True},
    {"compact": True, "metrics": ("train loss", "val acc"), "note": True, "rank": True},
    {"compact": True, "metrics": ("val acc",), "note": True, "rank": True},
    {"compact": True, "metrics": ("val acc",), "note": False, "rank": True},
    {"compact": True, "metrics": ("val acc",), "note": False, "rank": False},
]


def _ranked_table(configs, names, payload, title, caption, compact, metrics, note, rank) -> Table:
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)  # fmt: skip

    def header(name: str) -> str:
        return COMPACT.get(name, SETTING_HEADERS.get(name, name)) if compact else SETTING_HEADERS.get(name, name)

    if rank:
        table.add_column("#", justify="right", no_wrap=True)
    for name in names:
        table.add_column(header(name), justify="left" if name == "schedule" else "right", no_wrap=True)
    for metric in metrics:
        table.add_column(header(metric), justify="right", no_wrap=True)
    if note:
        table.add_column("", justify="left", no_wrap=True)
    best_tag = payload["best"]["tag"] if payload["best"] else None
    for position, config in enumerate(configs, start=1):
        hparams, final = config["hparams"], config["final"]
        cells = [str(position)] if rank else []
        cells += [_value(hparams[name]) for name in names]
        chosen = config["tag"] == best_tag
        if config["diverged"]:
            cells += ["-" for _ in metrics]
        else:
            cells += [f"{final[metric.replace(' ', '_')]:.4f}" for metric in metrics]
        if note:
            cells.append("[red]diverged[/]" if config["diverged"] else "[green]chosen[/]" if chosen else "")
        table.add_row(*cells, style="bold" if chosen else None)
    return table
