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
from softmax_cli.config import RANGES, Range, default_workers
from softmax_cli.data.paths import resolve_data_dir


def bench(
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    epochs: Annotated[
        int, typer.Option(callback=within(Range(1)), metavar="N", help="Timed epochs per row, after one warm-up epoch.")
    ] = 3,
    batch_size: Annotated[int, typer.Option(callback=within(Range(1)), metavar="N", help="Minibatch size.")] = 256,
    workers: Annotated[
        Optional[int],
        typer.Option(
            callback=within(RANGES["workers"]),
            metavar="N",
            help="DataLoader workers of the book's N-worker rows, 0 to 64. [default: min(4, CPUs)]",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """How much faster the memory loader is than the book's DataLoader pipeline, and what each costs in memory."""
    from softmax_cli.bench.measure import run_benchmark
    from softmax_cli.bench.pipelines import BenchSettings

    torch_device = resolve_device_or_usage_error(device)
    target = resolve_data_dir(data_dir)
    settings = BenchSettings(
        data_dir=target,
        device=str(torch_device),
        batch_size=batch_size,
        epochs=epochs,
        workers=default_workers() if workers is None else workers,
    )
    ensure_data(target)
    try:
        with console.status("benchmarking ...") as status:
            result = run_benchmark(settings, progress=lambda message: status.update(message))
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    from softmax_cli.cli.tables import bench_notes, render_bench

    payload = result.as_dict()
    render_bench(results_console(as_json), payload)
    for note in bench_notes(payload):
        say(note)
    if as_json:
        print_json(payload)
