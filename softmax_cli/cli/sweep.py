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
    NameOption,
    PresetOption,
    StandardizeOption,
    check_image_path,
    checked,
    default_note,
    ensure_data,
    folder_value,
    given_options,
    number_value,
    path_value,
    resolve_device_or_usage_error,
    whole_number_value,
    within,
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
            parser=whole_number_value,
            callback=checked("epochs"),
            metavar="N",
            show_default=False,
            help="Epochs of every configuration." + default_note("epochs"),
        ),
    ] = None,  # fmt: skip
    val_split: Annotated[
        float,
        typer.Option(
            parser=number_value,
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
            parser=folder_value,
            metavar="DIR",
            help="The sweep goes to RUNS_DIR/sweep/<timestamp>-<tag>/, one TensorBoard run per config.",
        ),
    ] = Path("runs"),
    name: NameOption = None,
    plot: Annotated[
        Optional[Path],
        typer.Option(
            parser=path_value,
            callback=check_image_path,
            metavar="FILE",
            help="Where to write the figure of val acc vs lr (.png, .jpg or .jpeg). "
            "[default: <sweep folder>/val_acc_vs_lr.png]",
            show_default=False,
        ),
    ] = None,  # fmt: skip
    top: Annotated[
        Optional[int],
        typer.Option(
            parser=whole_number_value,
            callback=within(Range(1)),
            metavar="N",
            show_default=False,
            help="Show only the best N rows. [default: all]",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Train a grid of settings (every combination of the comma-separated lists) in shared passes
    over the data; rank it on validation accuracy and keep the best configuration's checkpoint.

    Configurations with the same batch size and seed see the same batches and train together;
    each equals its own `softmax train --impl scratch` with the same settings.
    """
    from softmax_cli import stops
    from softmax_cli.sweep.grid import build_configs, estimate_memory, group_configs, memory_refusal, train_command

    lists = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "schedule": schedule,
             "batch_size": batch_size, "seed": seed}  # fmt: skip
    fixed = {k: v for k, v in given_options(epochs=epochs, standardize=standardize, val_split=val_split).items()
             if v is not None}  # fmt: skip
    try:
        configs = build_configs(lists, fixed, preset.value if preset else None)
    except GridError as exc:
        raise typer.BadParameter(str(exc)) from None
    torch_device = resolve_device_or_usage_error(device)
    if name is not None:
        from softmax_cli.runs.folders import named_run_dir

        if named_run_dir(runs_dir, "sweep", name).exists():
            folder = named_run_dir(runs_dir, "sweep", name)
            raise typer.BadParameter(
                f"{folder} already exists; choose another name or remove that folder", param_hint="--name"
            )

    from softmax_cli.sweep import search as body

    estimate = estimate_memory(configs, group_configs(configs), body.available_memory(torch_device))
    if not estimate.fits:
        raise fail(memory_refusal(estimate, str(torch_device)))
    from softmax_cli.sweep.saving import SweepFiles
    from softmax_cli.training import check_validation_split

    target = resolve_data_dir(data_dir)
    try:
        ensure_data(target)
        check_validation_split(configs[0], target)  # every configuration has the same --val-split
    except KeyboardInterrupt:
        raise fail("interrupted; nothing was written", code=130) from None
    given_dir = None if data_dir is None else str(target)
    given_device = None if device == "auto" else device

    def payload_of(result) -> dict:
        reproduce = None if result.best is None else train_command(result.best.hparams, given_dir, given_device)
        return result.as_dict(reproduce)

    files = SweepFiles(payload_of, lambda message: say(f"[yellow]warning:[/] {escape(message)}"))
    result = _run(configs, target, runs_dir, torch_device, files, name)
    if not result.configs:
        raise fail("interrupted before the first group finished; nothing was written", code=130)

    # The last writes end as a whole, as each group's did: a stop meanwhile waits for them; after
    # them a stop is only recorded (what is left is the table and the exit status, which say it).
    stopped_while_writing = False
    try:
        with stops.uninterrupted():
            result.plot = plot or result.run_dir / "val_acc_vs_lr.png"
            if not files.plot(result, result.plot):
                result.plot = None
            files.save(result, "interrupted" if result.interrupted else "finished")
    except KeyboardInterrupt:
        stopped_while_writing = True
    stops.closing()
    payload = payload_of(result)
    _report(result, payload, files, as_json, top)
    if result.best is None:
        raise fail("every configuration diverged; try smaller --lr values (or smaller --momentum, --weight-decay)")
    if as_json:
        print_json(payload)
    if result.interrupted or stopped_while_writing or stops.received() is not None:
        say("[yellow]Interrupted[/]: the table holds the groups that finished; their results are written")
        raise typer.Exit(130)
    if files.failed:
        unwritten = ", ".join(str(path) for path in files.failed)
        raise fail(f"the sweep finished, but these results could not be written: {unwritten}")


def _report(result, payload: dict, files, as_json: bool, top) -> None:
    """The table (with the command that reproduces the choice), then where the files are."""
    from softmax_cli.cli.render import render_sweep

    # The ranked table is the result: on stdout, unless --json has stdout for the JSON object.
    render_sweep(results_console(as_json), payload, top)
    if result.plot is not None:
        say(f"Wrote {escape(str(result.plot))}")
    if as_json:  # the JSON object says where the checkpoint and the runs are
        return
    if result.checkpoint is not None:
        say(f"Checkpoint of the chosen configuration: {escape(str(result.checkpoint))}")
    command = f"tensorboard --logdir {escape(str(result.run_dir))}"
    if files.tensorboard_failure:
        say(f"TensorBoard (incomplete, logging stopped: {escape(files.tensorboard_failure)}): {command}")
    else:
        say(f"TensorBoard: {command}")


def _run(configs, data_dir: Path, runs_dir: Path, device, files, name=None):
    """Create the sweep's folder and train the grid with the progress display, writing each group's results."""
    from softmax_cli.cli.render import SweepDisplay
    from softmax_cli.config import count
    from softmax_cli.runs.folders import make_run_dir
    from softmax_cli.sweep.grid import group_configs, varying
    from softmax_cli.sweep.search import run_sweep
    from softmax_cli.training import CallbackList

    run_dir = make_run_dir(runs_dir, "sweep", f"{configs[0].preset}-{len(configs)}configs", name)
    groups = len(group_configs(configs))
    say(
        f"Sweeping {count(len(configs), 'configuration')} on {device} in {count(groups, 'group')} "
        f"(configurations with the same batch size and seed train together)"
    )
    display = SweepDisplay(console, len(configs), varying(configs))
    try:
        with display:
            result = run_sweep(configs, data_dir, device, run_dir, CallbackList([display, files]))
    except BaseException:
        _remove_if_empty(run_dir)
        raise
    if not result.configs:
        _remove_if_empty(run_dir)
    result.name = name
    return result


def _remove_if_empty(run_dir: Path) -> None:
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()
