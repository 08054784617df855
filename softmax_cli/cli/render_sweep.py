"""`softmax sweep`'s Rich rendering: progress over groups, epochs and batches, and the ranked table.

The table is drawn from the sweep's JSON payload (plain data), so what a user reads and what
`--json` says cannot differ.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from softmax_cli.cli.render import progress_bars

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


def count(n: int, noun: str) -> str:
    """'1 configuration', '16 configurations'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


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
        self.progress = progress_bars(console)
        self.configs_task = self.progress.add_task("configurations", total=planned)
        self.epoch_task = self.batch_task = None

    def __enter__(self) -> "SweepDisplay":
        # Off a terminal the bars would draw nothing but a stray blank line; the group lines suffice.
        if self.progress.console.is_terminal:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def on_group_start(self, plan) -> None:
        for task in (self.epoch_task, self.batch_task):
            if task is not None:
                self.progress.remove_task(task)
        label = f"group {plan.index + 1}/{plan.groups}" if plan.groups > 1 else "epochs"
        self.epoch_task = self.progress.add_task(label, total=plan.epochs)
        self.batch_task = self.progress.add_task("batches", total=plan.batches_per_epoch)

    def on_batch_end(self) -> None:
        self.progress.advance(self.batch_task)

    def on_epoch_end(self, plan, epoch: int, model) -> None:
        self.progress.advance(self.epoch_task)
        self.progress.reset(self.batch_task)

    def on_group_end(self, plan, model) -> None:
        self.progress.advance(self.configs_task, len(plan.configs))
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
        self.progress.console.print(line, soft_wrap=True)


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


def render_sweep_bench(console: Console, payload: dict) -> None:
    """`softmax bench --sweep`: stacked epochs against one run's, then whole processes."""
    s, epochs, processes = payload["settings"], payload["epochs"], payload["processes"]
    capped = f", at most {s['max_batches']} batches" if s.get("max_batches") else ""
    table = Table(
        title=f"Training epochs on {s['device']}, batch {s['batch_size']}{capped}: median of {s['rounds']} rounds, "
        "alternated (training pass only)",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
    )
    for name in ("configurations", "s/epoch", "s per configuration", "× cheaper"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_row("1 (softmax train)", f"{epochs['single_seconds_per_epoch']:.3f}",
                  f"{epochs['single_seconds_per_epoch']:.4f}", "1.0×")  # fmt: skip
    for row in epochs["stacked"]:
        table.add_row(f"{row['k']} stacked", f"{row['seconds_per_epoch']:.3f}", f"{row['seconds_per_config']:.4f}",
                      f"{row['speedup_per_config']:.1f}×")  # fmt: skip
    console.print(table)
    n = processes["configs"]
    sweep_runs = ", ".join(f"{t:.1f}" for t in processes["sweep_seconds"])
    console.print(
        f"Whole processes, {n} configurations × {processes['epochs']} epochs: one `softmax sweep` "
        f"{processes['sweep_median_s']:.1f} s (median of {sweep_runs}) against {n} `softmax train` processes "
        f"{processes['train_total_s']:.1f} s in total ({processes['train_median_s']:.1f} s each, median): "
        f"[bold]{processes['ratio']:.3f}×[/] the time ({1 / processes['ratio']:.1f}× faster). "
        f"{processes['agreeing_within_1e-4']} of {n} configurations end with the same train loss, val acc and test "
        f"acc as their own process (within 1e-4)" + _differing(processes["differing"]),
        soft_wrap=True,
    )
    load, load_end = payload["environment"].get("loadavg"), payload["environment"].get("loadavg_end")
    if load and load_end:
        console.print(
            f"[dim]load average at start {load[0]:.2f}, at end {load_end[0]:.2f} "
            "(other processes on this machine skew timings)[/]"
        )
    if s.get("quick"):
        console.print("[yellow]--quick: a small smoke run; these figures are not a benchmark[/]")


def _differing(differing: list[dict]) -> str:
    if not differing:
        return ""
    rates = ", ".join(sorted({f"{d['lr']:g}" for d in differing}))
    return (
        f"; the others (lr {rates}) differ by up to {max(d['max_metric_diff'] for d in differing):.3f}: at such a "
        "rate the loss oscillates and float rounding grows, as between scratch and concise in `softmax compare`"
    )
