"""The results of eval, predict, compare, bench and runs, as Rich tables that fit the console.

Each function prints on the console it is given: stdout, or stderr when --json has stdout
(output.results_console). The fitting itself is render.fit_table's.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from softmax_cli.cli.output import printable
from softmax_cli.cli.render import Column, RowPrinter, describe_settings, first_fitting, fit_table
from softmax_cli.config import count

# --------------------------------------------------------------------------- eval

PER_CLASS_COLUMNS = [
    Column("class", justify="left", text=True),
    Column("precision", "prec."),
    Column("recall"),
    Column("F1"),
    Column("support", drop=2),
]


def render_evaluation(console: Console, path, checkpoint: dict, evaluation, per_class: list[dict]) -> None:
    """What `softmax eval` finds: the checkpoint, its accuracy and loss, per-class figures, confusion matrix."""
    hparams = checkpoint["hparams"]
    planned = hparams.get("epochs")
    epochs = f"epoch {checkpoint['epoch']}" + (f" of {planned}" if planned else "")
    console.print(f"[bold]{escape(str(path))}[/]", soft_wrap=True)  # a path alone on its line: never broken
    console.print(f"{checkpoint['impl']}, {epochs}, {escape(describe_settings(hparams))}")
    console.print(
        f"test accuracy [bold]{evaluation.accuracy:.4f}[/], mean cross-entropy "
        f"{evaluation.loss:.4f} on {evaluation.n:,} test images"
    )
    console.print()
    # Precision: of the images called this class, the share that are; recall: of this class's
    # images, the share found; F1: their harmonic mean.
    rows = [
        [
            escape(row["class"]),
            f"{row['precision']:.4f}",
            f"{row['recall']:.4f}",
            f"{row['f1']:.4f}",
            str(row["support"]),
        ]
        for row in per_class
    ]
    console.print(fit_table(console, PER_CLASS_COLUMNS, rows, title="Per class"))
    console.print()
    console.print(_confusion_matrix(console, evaluation.confusion, [row["class"] for row in per_class]))


def _confusion_matrix(console: Console, confusion, names: list[str]):
    """The 10 x 10 matrix with its rows named; where the names do not fit, numbered with a legend below."""

    def matrix(named: bool):
        def build():
            table = Table(
                title="Confusion matrix (rows: true class, columns: predicted)",
                title_justify="left",
                title_style="bold",
                header_style="bold",
                box=box.SIMPLE_HEAD,
                show_edge=False,
                pad_edge=False,
                collapse_padding=True,
            )
            table.add_column("true \\ predicted" if named else "", no_wrap=True)
            for k in range(len(names)):
                table.add_column(str(k), justify="right", no_wrap=True)
            for k, name in enumerate(names):
                cells = [f"[bold]{int(v)}[/]" if j == k else str(int(v)) for j, v in enumerate(confusion[k])]
                table.add_row(f"{k} {escape(name)}" if named else str(k), *cells)
            cells = [str(int(v)) for v in confusion.flatten()] + ([escape(name) for name in names] if named else [])
            if named:
                return table, cells
            legend = Text(", ".join(f"{k} {name}" for k, name in enumerate(names)), style="dim")
            return Group(table, legend), cells

        return build

    return first_fitting(console, [matrix(named=True), matrix(named=False)])


# --------------------------------------------------------------------------- predict

PREDICTION_COLUMNS = [
    Column("#"),
    Column("true", justify="left", text=True),
    Column("predicted", justify="left", text=True),
    Column("p"),
    Column("", justify="left"),
]


def render_predictions(console: Console, rows: list[dict], only_wrong: bool) -> None:
    """`softmax predict`'s table: index, true and predicted class, confidence, verdict."""
    cells = [
        [
            str(r["index"]),
            escape(r["true"]),  # class names come from the checkpoint file: never markup
            escape(r["predicted"]),
            f"{r['confidence']:.2f}",
            "ok" if r["correct"] else "[red]wrong[/]",
        ]
        for r in rows
    ]
    title = f"{len(rows)} test images ({'misclassified only' if only_wrong else 'in file order'})"
    console.print(fit_table(console, PREDICTION_COLUMNS, cells, title=title))


PICTURE_COLUMNS = [
    Column("picture", justify="left", text=True, min_width=12),
    Column("predicted", justify="left", text=True),
    Column("p"),
    Column("2nd", justify="left", text=True, drop=2),
    Column("p", drop=2),
    Column("3rd", justify="left", text=True, drop=1),
    Column("p", drop=1),
]


def render_picture_predictions(console: Console, rows: list[dict]) -> None:
    """`softmax predict --image`'s table: each picture's file name, its predicted class and probability,
    then the next two."""
    cells = []
    for r in rows:
        ranked = [(escape(t["class"]), f"{t['probability']:.2f}") for t in r["top"]]
        ranked += [("", "")] * (3 - len(ranked))
        name = Path(r["image"]).name  # the path as given is JSON's; a long one would not fit a column whole
        cells.append([escape(printable(name)), *(cell for pair in ranked for cell in pair)])
    title = f"{len(rows)} pictures: the three likeliest classes"
    console.print(fit_table(console, PICTURE_COLUMNS, cells, title=title))


# --------------------------------------------------------------------------- compare

COMPARISON_COLUMNS = [
    Column("epoch"),
    Column("scratch loss", "scratch\nloss", drop=3),
    Column("concise loss", "concise\nloss", drop=3),
    Column("scratch test acc", "scratch\ntest acc", drop=2),
    Column("concise test acc", "concise\ntest acc", drop=2),
    Column("max |ΔW|"),
    Column("max |Δb|"),
]


def render_comparison(console: Console, compared, seed: int) -> None:
    """`softmax compare`'s table: both implementations' losses and accuracies per epoch, and their distance."""
    rows = [
        [
            str(row.epoch),
            f"{row.scratch['train_loss']:.6f}",
            f"{row.concise['train_loss']:.6f}",
            f"{row.scratch['test_acc']:.4f}",
            f"{row.concise['test_acc']:.4f}",
            f"{row.max_weight_diff:.2e}",
            f"{row.max_bias_diff:.2e}",
        ]
        for row in compared
    ]
    title = f"scratch vs concise, seed {seed}: same initial weights, same batch order"
    console.print(fit_table(console, COMPARISON_COLUMNS, rows, title=title))


# --------------------------------------------------------------------------- bench


def _fmt_s(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _mib(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.0f}"


def render_bench(console: Console, payload: dict) -> None:
    """The timings in a user's words: the table of pipelines, with a note on how each figure was taken."""
    s, env = payload["settings"], payload["environment"]
    console.print(
        f"[bold]softmax bench[/] on {s['device']} ({escape(env.get('device_name') or '?')}, "
        f"{env.get('cpu_count')} CPUs, torch on {count(env.get('torch_threads'), 'thread')}): "
        f"{s['train_examples']:,} train images, batch {s['batch_size']}, lr {s['lr']:g}"
    )
    so_far = payload["memory_mode"] == "so-far"
    columns = [
        Column("pipeline", justify="left", text=True, min_width=min(22, max(len(r["label"]) for r in payload["rows"]))),
        Column("s/epoch"),
        Column("fastest s", drop=2),
        Column("images/s", drop=3),
        Column("speed-up"),
        Column("memory so far MiB" if so_far else "memory MiB", "memory\nMiB", drop=4),
    ]
    rows = [
        [
            row["label"],
            _fmt_s(row["seconds_per_epoch"]),
            _fmt_s(row["seconds_min"]),
            f"{row['examples_per_s']:,.0f}" if row["examples_per_s"] else "-",
            f"{row['speedup']:.1f}×" if row.get("speedup") else "-",
            _mib(row["peak_rss_mib"]),
        ]
        for row in payload["rows"]
    ]
    console.print(fit_table(console, columns, rows))
    baseline = next((row["label"] for row in payload["rows"] if row.get("is_baseline")), None)
    epochs = count(s["epochs"], "timed epoch")
    notes = [
        f"s/epoch: the {payload['timing_statistic']} of {epochs} after {s['warmup_epochs']} warm-up, "
        "training only (no evaluation, checkpoint or logging)."
    ]
    if baseline:
        notes.append(f"speed-up: how many times faster than the book's fastest pipeline ({baseline}).")
    if so_far:
        notes.append("memory so far: the peak of this one process up to that row, earlier rows included.")
    else:
        notes.append(
            "memory: the peak resident memory of this process while the row ran (torch, the modules the row "
            "needs, its data and training); the rows ran lightest first, so none carries a heavier row's "
            "imports. DataLoader workers are processes of their own and not counted."
        )
    console.print(Text(" ".join(notes), style="dim"))


def bench_notes(payload: dict) -> list[str]:
    """What to keep in mind about the figures: notes for stderr, not results."""
    notes = []
    env = payload["environment"]
    if env.get("loadavg"):
        end = (env.get("loadavg_end") or [float("nan")])[0]
        notes.append(
            f"[dim]load average {env['loadavg'][0]:.2f} at the start, {end:.2f} at the end "
            "(other processes on this machine skew timings)[/]"
        )
    return notes


# --------------------------------------------------------------------------- runs

# Narrowing drops first what the path below each row repeats (seed, batch, preset, lr, start time).
RUN_COLUMNS = [
    Column("started", justify="left", drop=7),
    Column("impl", justify="left"),
    Column("preset", justify="left", drop=4),
    Column("lr", drop=5),
    Column("batch", drop=2),
    Column("seed", drop=1),
    Column("epochs"),
    Column("train loss", "loss", shorten=3),
    Column("test acc", "test", shorten=6),
    Column("val acc", "val", shorten=6),
    Column("status", justify="left"),
]
STATUS_STYLES = {
    "finished": "green",
    "interrupted": "yellow",
    "diverged": "red",
    "running": "cyan",
    "killed": "red",
    "damaged": "bold red",
}


def _started(record) -> str:
    if not record.started:
        return "?"
    try:
        return datetime.fromisoformat(record.started).strftime("%m-%d %H:%M")
    except ValueError:
        return record.started


def _run_cells(record) -> list[str | Text]:
    hparams, final = record.hparams, record.final or {}
    if record.comparison is not None:  # a compare run: the figures of its side trained last
        final = final.get("concise") or final.get("scratch") or {}

    def number(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    done, planned = record.epochs_done, record.epochs_planned
    epochs = "?" if done is None else f"{done}/{planned}" if planned else str(done)
    return [
        _started(record),
        printable(record.impl),  # a folder's name where the run has no summary
        hparams.get("preset", "?"),
        number(hparams.get("lr"), "g"),
        number(hparams.get("batch_size"), "d"),
        number(hparams.get("seed"), "d"),
        epochs,
        number(final.get("train_loss"), ".4f"),
        number(final.get("test_acc"), ".4f"),
        number(final.get("val_acc"), ".4f"),
        Text(_status(record), style=STATUS_STYLES.get(record.status, "")),
    ]


def _status(record) -> str:
    """How the run ended; "interrupted → resumed" where a listed run continues it."""
    return f"{record.status} → resumed" if record.resumed_by else record.status


def _run_notes(record) -> list[tuple[str, bool]]:
    """The lines under a run's path, each with whether it holds a path (never broken): the run it
    continues, a compare run's two sides."""
    notes = []
    if record.resumed_from is not None:
        notes.append((f"↳ continues {printable(record.resumed_from)}", True))
    elif record.resumed_from_checkpoint is not None:
        notes.append((f"↳ continues the checkpoint {printable(record.resumed_from_checkpoint)}", True))
    if record.comparison is not None:
        notes.append(("↳ " + _comparison_words(record), False))
    return notes


def _comparison_words(record) -> str:
    """A compare run's two sides and their agreement, in one line."""
    sides = []
    for side, entry in (record.final or {}).items():
        if entry is None:
            sides.append(f"{side} 0/{record.epochs_planned}")
            continue
        acc = entry.get("test_acc")
        figures = "" if acc is None else f" acc {acc:.4f}"
        sides.append(f"{side} {entry['epoch']}/{record.epochs_planned}{figures}")
    agree, largest, tolerance = (record.comparison.get(key) for key in ("agree", "max_abs_diff", "tolerance"))
    if agree is None:
        verdict = "no epoch compared yet"
    else:
        verdict = f"{'agree' if agree else 'DIFFER'}, max |Δ| {largest:.2e} {'≤' if agree else '>'} {tolerance:g}"
    return f"{', '.join(sides)}; {verdict}"


def render_runs(console: Console, records: list, resume_commands: list[str | None] | None = None) -> None:
    """`softmax runs`: one line of figures per run, newest first, and its path on the line below;
    below that, for a killed run, the command that continues it (resume_commands, one per record)."""
    columns = RUN_COLUMNS
    cells = [_run_cells(record) for record in records]
    if not any(record.final and record.final.get("val_acc") is not None for record in records):
        keep = [i for i, column in enumerate(columns) if column.header != "val acc"]
        columns, cells = [columns[i] for i in keep], [[row[i] for i in keep] for row in cells]
    printer = RowPrinter(console, columns, [[str(c) for c in row] for row in cells])
    commands = resume_commands or [None] * len(records)
    for record, row, command in zip(records, cells, commands, strict=True):
        printer.row(row)
        console.print(Text("  " + printable(str(record.path)), style="cyan"), soft_wrap=True)
        for note, is_path in _run_notes(record):
            console.print(Text("  " + note, style="dim"), soft_wrap=is_path)  # a path is never broken
        if command:
            console.print(Text(f"  continue with: {command}", style="yellow"), soft_wrap=True)
