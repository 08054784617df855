"""`softmax compare`: train scratch and concise from the same start and watch them agree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from softmax_cli.cli.options import (
    BatchSizeOption,
    DataDirOption,
    DeviceOption,
    JsonOption,
    LoaderOption,
    LrOption,
    MomentumOption,
    NaiveSoftmaxOption,
    PresetOption,
    RunsDirOption,
    ScheduleOption,
    SeedOption,
    StandardizeOption,
    WeightDecayOption,
    WorkersOption,
    ensure_data,
    given_options,
    resolve_device_or_usage_error,
    within,
)
from softmax_cli.cli.output import console, fail, print_json, results_console, say
from softmax_cli.config import Range
from softmax_cli.data.paths import resolve_data_dir

DEFAULT_TOLERANCE = 1e-4


def compare(
    epochs: Annotated[
        Optional[int],
        typer.Option(
            callback=within(Range(1)),
            metavar="N",
            help="Epochs each implementation trains. [default: 10]",
            show_default=False,
        ),
    ] = None,
    lr: LrOption = None,
    batch_size: BatchSizeOption = None,
    loader: LoaderOption = None,
    workers: WorkersOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = None,
    data_dir: DataDirOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    naive_softmax: NaiveSoftmaxOption = None,
    preset: PresetOption = None,
    momentum: MomentumOption = None,
    weight_decay: WeightDecayOption = None,
    schedule: ScheduleOption = None,
    standardize: StandardizeOption = None,
    tolerance: Annotated[
        float,
        typer.Option(
            callback=within(Range(0)), metavar="X", help="Largest absolute weight difference that counts as agreement."
        ),
    ] = DEFAULT_TOLERANCE,
    as_json: JsonOption = False,
) -> None:
    """Train scratch and concise from the same seed, weights and batch order; show them side by side.

    Exits 0 when their weights agree within --tolerance after every epoch, 1 otherwise.
    """
    from softmax_cli.cli.render import TrainingDisplay
    from softmax_cli.cli.tables import render_comparison
    from softmax_cli.config import default_workers, resolve_hparams
    from softmax_cli.runs.folders import make_run_dir
    from softmax_cli.runs.summaries import CompareSummaryWriter
    from softmax_cli.training import BestEffort, compare_implementations

    given = given_options(
        epochs=epochs, lr=lr, batch_size=batch_size, loader=loader, seed=seed, naive_softmax=naive_softmax,
        momentum=momentum, weight_decay=weight_decay, schedule=schedule, standardize=standardize,
    )  # fmt: skip
    hparams = resolve_hparams(given, preset.value if preset else None)
    torch_device = resolve_device_or_usage_error(device)
    workers = default_workers() if workers is None else workers
    target = resolve_data_dir(data_dir)
    displays = []

    def display_for(impl):
        # One live display at a time: close the previous run's before the next one starts.
        for finished in displays:
            finished.__exit__(None, None, None)
        displays.clear()
        # Each side's epochs are progress here (stderr); the comparison table is the result.
        # With --json, progress is for a terminal only.
        rows = console if console.is_terminal or not as_json else results_console(as_json)
        display = TrainingDisplay(console, rows, label=f"{impl}, seed {hparams.seed}:")
        display.__enter__()
        displays.append(display)
        return [display, summary]

    def warn(message: str) -> None:
        say(f"[yellow]warning:[/] {escape(message)}")

    try:
        ensure_data(target)
        run_dir = make_run_dir(runs_dir, "compare", hparams.run_tag)
        # The run's summary.json, so `softmax runs` tells how it went; a by-product, like train's.
        writer = CompareSummaryWriter(run_dir, tolerance)
        summary = BestEffort(writer, "the run summary (summary.json)", warn)
        try:
            compared = compare_implementations(
                hparams, target, run_dir, torch_device, workers, display_for,
                on_compared=lambda row: summary.call("on_compared", row),
            )  # fmt: skip
        except BaseException:
            summary.call("stopped")
            _remove_if_empty(run_dir)
            raise
        finally:
            for display in displays:
                display.__exit__(None, None, None)
    except KeyboardInterrupt:
        raise fail("interrupted", code=130) from None

    out = results_console(as_json)
    render_comparison(out, compared, hparams.seed)
    largest = max(max(row.max_weight_diff, row.max_bias_diff) for row in compared)
    agree = largest <= tolerance
    verdict = "[green]agree[/]" if agree else "[red]DIFFER[/]"
    out.print(f"{verdict}: largest difference in weights and biases {largest:.2e} (tolerance {tolerance:g})")
    out.print("checkpoints scratch.pt and concise.pt in")
    out.print(escape(str(run_dir)), soft_wrap=True)  # a path alone on its line: never broken, never cropped
    if as_json:
        print_json({
            "agree": agree, "tolerance": tolerance, "max_abs_diff": largest, "hparams": hparams.as_dict(),
            "epochs": [{"epoch": r.epoch, "scratch": r.scratch, "concise": r.concise,
                        "max_weight_diff": r.max_weight_diff, "max_bias_diff": r.max_bias_diff} for r in compared],
        })  # fmt: skip
    if not agree:
        raise typer.Exit(1)


def _remove_if_empty(run_dir: Path) -> None:
    """A comparison that saved nothing leaves no folder behind."""
    try:
        run_dir.rmdir()
    except OSError:
        pass  # not empty (a side's checkpoint, the summary): it stays
