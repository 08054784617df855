"""`softmax bench`: time the book's pipeline against the memory loader and both implementations."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from softmax_cli.cli.options import (
    DataDirOption,
    DeviceOption,
    JsonOption,
    ensure_data,
    resolve_device_or_usage_error,
    within,
)
from softmax_cli.cli.output import console, fail, print_json, results_console, say
from softmax_cli.config import Range, default_workers
from softmax_cli.data.paths import resolve_data_dir


def bench(
    ctx: typer.Context,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    epochs: Annotated[
        Optional[int],
        typer.Option(
            callback=within(Range(1)),
            metavar="N",
            help="Timed epochs per row, after one warm-up epoch. [default: 3; 1 with --quick]",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(callback=within(Range(1)), metavar="N", help="Minibatch size.")] = 256,
    workers: Annotated[
        Optional[int],
        typer.Option(
            callback=within(Range(0)),
            metavar="N",
            help="DataLoader workers of the book's N-worker rows. [default: min(4, CPUs)]",
            show_default=False,
        ),
    ] = None,
    threads: Annotated[
        Optional[int],
        typer.Option(
            callback=within(Range(1)),
            metavar="N",
            help="torch.set_num_threads for every row. [default: torch's, one per core]",
            show_default=False,
        ),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Smoke test: at most 20 batches per epoch, 1 timed epoch, rows in-process, "
            "no import or --help probes.",
        ),
    ] = False,
    startup_only: Annotated[
        bool,
        typer.Option(
            "--startup-only",
            help="Only the start-up probes: each everyday command's whole process next to `import torch`.",
        ),
    ] = False,
    isolate: Annotated[
        Optional[bool],
        typer.Option(
            "--isolate/--in-process",
            show_default=False,
            help="Run each row in a fresh process, so its peak RSS is its own. "
            "[default: isolate; in-process with --quick]",
        ),
    ] = None,
    sweep: Annotated[
        bool,
        typer.Option(
            "--sweep",
            help="Instead: time `softmax sweep` of 4 lr x 4 weight decays (5 epochs) against 16 `softmax train` "
            "processes, and epochs of K stacked configurations against one run's epoch.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Time the book's DataLoader pipeline against the memory loader and both implementations, in one run."""
    from softmax_cli.bench import measure as b

    if startup_only and (quick or sweep):
        message = "--startup-only goes with neither --quick (which skips the probes) nor --sweep"
        raise typer.BadParameter(message, param_hint="--startup-only")
    torch_device = resolve_device_or_usage_error(device)
    target = resolve_data_dir(data_dir)
    if sweep:
        _bench_sweep(target, str(torch_device), batch_size, epochs, threads, quick, as_json)
        return
    settings = b.BenchSettings(
        data_dir=target,
        device=str(torch_device),
        batch_size=batch_size,
        epochs=epochs if epochs is not None else (1 if quick else 3),
        workers=default_workers() if workers is None else workers,
        quick=quick,
        threads=threads,
        isolate=(not quick) if isolate is None else isolate,
        startup_only=startup_only,
    )
    ensure_data(target)
    try:
        with console.status("benchmarking ...") as status:
            result = b.run_benchmark(settings, _help_commands(ctx), progress=lambda message: status.update(message))
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    from softmax_cli.cli.tables import bench_notes, render_bench, render_startup

    payload = result.as_dict()
    if payload["rows"]:
        render_bench(results_console(as_json), payload)
    render_startup(results_console(as_json), payload["startup"])
    for note in bench_notes(payload):
        say(note)
    if as_json:
        print_json(payload)


def _help_commands(ctx: typer.Context) -> list[list[str]]:
    """[] for `softmax --help`, then [name] for every command, as registered on the app."""
    # The root group this command was invoked from: the command needs no import of the app.
    group = ctx.find_root().command
    return [[]] + [[name] for name in sorted(getattr(group, "commands", {}))]


def _bench_sweep(data_dir, device: str, batch_size: int, rounds, threads, quick: bool, as_json: bool) -> None:
    from softmax_cli.bench.sweep import SweepBenchSettings, run_sweep_bench
    from softmax_cli.cli.render import render_sweep_bench

    settings = SweepBenchSettings.for_run(data_dir, device, batch_size, rounds, threads, quick)
    ensure_data(data_dir)
    try:
        with console.status("benchmarking the sweep ...") as status:
            payload = run_sweep_bench(settings, progress=lambda message: status.update(message))
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    render_sweep_bench(results_console(as_json), payload)
    if as_json:
        print_json(payload)
