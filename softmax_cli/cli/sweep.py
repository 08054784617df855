"""`softmax sweep`: parse the lists into a grid, train it in shared passes, rank it, say what to keep."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from softmax_cli.cli.options import (
    DataDirOption,
    DeviceOption,
    JsonOption,
    PresetOption,
    StandardizeOption,
    default_note,
    ensure_data,
    given_options,
    resolve_device_or_usage_error,
    within,
    write_image,
)
from softmax_cli.cli.output import console, fail, print_json, results_console, say
from softmax_cli.config import RANGES, Range
from softmax_cli.data.paths import resolve_data_dir
from softmax_cli.sweep.grid import DEFAULT_VAL_SPLIT, GridError, parse_list


def _grid_list(name: str):
    """A Typer callback turning '0.01,0.1' into a checked tuple; a bad list is a usage error (exit 2)."""

    def parse(value: Optional[str]):
        if value is None:
            return None
        try:
            return parse_list(name, value)
        except GridError as exc:
            raise typer.BadParameter(str(exc)) from None

    return parse


def _list_option(name: str, what: str, extra: str = ""):
    # The help says what each value may be in words; the check (and its error) uses config.RANGES.
    return typer.Option(
        callback=_grid_list(name), metavar="LIST", show_default=False, help=f"{what}." + default_note(name, extra)
    )


def _positive_val_split(value: float) -> float:
    if value not in RANGES["val_split"] or value == 0:
        raise typer.BadParameter(f"must be in (0, 1): a sweep chooses on validation, never on test; not {value}")
    return value


def sweep(
    lr: Annotated[
        Optional[str], _list_option("lr", "Learning rates, comma-separated, each > 0", "; tuned preset 0.05")
    ] = None,
    weight_decay: Annotated[Optional[str], _list_option("weight_decay", "L2 weight decays, each >= 0")] = None,
    momentum: Annotated[Optional[str], _list_option("momentum", "SGD momenta, each in [0, 1)")] = None,
    schedule: Annotated[Optional[str], _list_option("schedule", "Schedules: constant and/or cosine")] = None,
    batch_size: Annotated[Optional[str], _list_option("batch_size", "Minibatch sizes")] = None,
    seed: Annotated[Optional[str], _list_option("seed", "Seeds (each its own initial weights and batch order)")] = None,
    epochs: Annotated[
        Optional[int],
        typer.Option(
            callback=within(Range(RANGES["epochs"].low)),
            metavar="N",
            show_default=False,
            help="Epochs of every configuration." + default_note("epochs"),
        ),
    ] = None,  # fmt: skip
    val_split: Annotated[
        float,
        typer.Option(
            callback=_positive_val_split,
            metavar="X",
            help="Fraction of the train split held out (seeded) to choose the best configuration on.",
        ),
    ] = DEFAULT_VAL_SPLIT,
    standardize: StandardizeOption = None,
    preset: PresetOption = None,
    device: DeviceOption = "auto",
    data_dir: DataDirOption = None,
    runs_dir: Annotated[
        Path,
        typer.Option(
            metavar="DIR",
            help="The sweep goes to RUNS_DIR/sweep/<timestamp>-<tag>/, one TensorBoard run per config.",
        ),
    ] = Path("runs"),
    plot: Annotated[
        Optional[Path],
        typer.Option(
            metavar="FILE",
            help="Where to write the PNG of val acc vs lr. [default: <sweep folder>/val_acc_vs_lr.png]",
            show_default=False,
        ),
    ] = None,  # fmt: skip
    top: Annotated[
        Optional[int],
        typer.Option(
            callback=within(Range(1)), metavar="N", show_default=False, help="Show only the best N rows. [default: all]"
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Train a grid of settings (every combination of the comma-separated lists) in shared passes
    over the data; rank it on validation accuracy and keep the best configuration's checkpoint.

    Configurations with the same batch size and seed see the same batches and train together;
    each equals its own `softmax train --impl scratch` with the same settings.
    """
    from softmax_cli.sweep.grid import build_configs, estimate_memory, group_configs, memory_refusal

    lists = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "schedule": schedule,
             "batch_size": batch_size, "seed": seed}  # fmt: skip
    fixed = {k: v for k, v in given_options(epochs=epochs, standardize=standardize, val_split=val_split).items()
             if v is not None}  # fmt: skip
    try:
        configs = build_configs(lists, fixed, preset.value if preset else None)
    except GridError as exc:
        raise typer.BadParameter(str(exc)) from None
    torch_device = resolve_device_or_usage_error(device)

    from softmax_cli.sweep import search as body

    estimate = estimate_memory(configs, group_configs(configs), body.available_memory(torch_device))
    if not estimate.fits:
        raise fail(memory_refusal(estimate, str(torch_device)))
    target = resolve_data_dir(data_dir)
    try:
        ensure_data(target)
    except KeyboardInterrupt:
        raise fail("interrupted; nothing was written", code=130) from None
    result = _run(configs, target, runs_dir, torch_device)
    if not result.configs:
        raise fail("interrupted before the first group finished; nothing was written", code=130)

    try:
        payload = _write_results(result, plot, data_dir, target, device, as_json, top)
    except KeyboardInterrupt:
        raise fail(f"interrupted while writing the results into {result.run_dir}", code=130) from None
    if result.best is None:
        raise fail("every configuration diverged; try smaller --lr values (or smaller --momentum, --weight-decay)")
    if as_json:
        print_json(payload)
    if result.interrupted:
        say("[yellow]Interrupted[/]: the table holds the groups that finished")
        raise typer.Exit(130)


def _write_results(result, plot, data_dir, target, device: str, as_json: bool, top) -> dict:
    """The checkpoint, the table (with the command that reproduces the choice), the figure, sweep.json."""
    from softmax_cli.cli.render import render_sweep
    from softmax_cli.sweep import search as body
    from softmax_cli.sweep.grid import train_command
    from softmax_cli.sweep.report import plot_val_acc_vs_lr

    body.save_best(result)
    result.plot = plot or result.run_dir / "val_acc_vs_lr.png"
    reproduce = None
    if result.best is not None:
        given_dir = None if data_dir is None else str(target)
        reproduce = train_command(result.best.hparams, given_dir, None if device == "auto" else device)
    payload = result.as_dict(reproduce)
    # The ranked table is the result: on stdout, unless --json has stdout for the JSON object.
    render_sweep(results_console(as_json), payload, top)
    write_image(lambda path: plot_val_acc_vs_lr(result.configs, result.best, path), result.plot)
    body.write_sweep_json(payload, result.run_dir)
    if not as_json:  # with --json, the JSON object says both
        if result.checkpoint is not None:
            say(f"Checkpoint of the chosen configuration: {escape(str(result.checkpoint))}")
        say(f"TensorBoard: tensorboard --logdir {escape(str(result.run_dir))}")
    return payload


def _run(configs, data_dir: Path, runs_dir: Path, device):
    """Create the sweep's folder and train the grid with the progress display and TensorBoard."""
    from softmax_cli.cli.render import SweepDisplay
    from softmax_cli.config import count
    from softmax_cli.runs.folders import make_run_dir
    from softmax_cli.sweep.grid import group_configs, varying
    from softmax_cli.sweep.report import SweepTensorBoard
    from softmax_cli.sweep.search import run_sweep
    from softmax_cli.training import CallbackList

    run_dir = make_run_dir(runs_dir, "sweep", f"{configs[0].preset}-{len(configs)}configs")
    groups = len(group_configs(configs))
    say(
        f"Sweeping {count(len(configs), 'configuration')} on {device} in {count(groups, 'group')} "
        f"(configurations with the same batch size and seed train together)"
    )
    display = SweepDisplay(console, len(configs), varying(configs))
    try:
        with display:
            result = run_sweep(configs, data_dir, device, run_dir, CallbackList([display, SweepTensorBoard()]))
    except BaseException:
        _remove_if_empty(run_dir)
        raise
    if not result.configs:
        _remove_if_empty(run_dir)
    return result


def _remove_if_empty(run_dir: Path) -> None:
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()
