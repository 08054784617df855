"""`softmax bench`: the thin command over softmax_cli.bench, and its Rich rendering (on stderr).

Imported by softmax_cli.cli at the end of the module, which registers the command on
`app`. Nothing heavy at import time: torch is loaded inside the command only.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from softmax_cli.cli import (
    DataDirOption,
    DeviceOption,
    JsonOption,
    _device_or_usage_error,
    _ensure_data,
    _print_json,
    app,
    console,
    fail,
)
from softmax_cli.config import default_workers
from softmax_cli.errors import SoftmaxError
from softmax_cli.paths import resolve_data_dir


@app.command()
def bench(
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Timed epochs per row, after one warm-up epoch. [default: 3; 1 with --quick]", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Minibatch size.")] = 256,
    workers: Annotated[Optional[int], typer.Option(min=0, help="DataLoader workers of the book's N-worker rows. [default: min(4, CPUs)]", show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch.set_num_threads for every row. [default: torch's, one per core]", show_default=False)] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smoke test: at most 20 batches per epoch, 1 timed epoch, rows in-process, no import or --help probes.")] = False,
    isolate: Annotated[Optional[bool], typer.Option("--isolate/--in-process", help="Run each row in a fresh process, so its peak RSS is its own. [default: isolate; in-process with --quick]", show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Time the book's DataLoader pipeline against the memory loader and both implementations, in one run."""
    from softmax_cli import bench as b

    torch_device = _device_or_usage_error(device)
    target = resolve_data_dir(data_dir)
    settings = b.BenchSettings(
        data_dir=target,
        device=str(torch_device),
        batch_size=batch_size,
        epochs=epochs if epochs is not None else (1 if quick else 3),
        workers=default_workers() if workers is None else workers,
        quick=quick,
        threads=threads,
        isolate=(not quick) if isolate is None else isolate,
    )
    try:
        _ensure_data(target)
        with console.status("benchmarking ...") as status:
            result = b.run_benchmark(settings, _help_commands(), progress=lambda message: status.update(message))
    except SoftmaxError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    payload = result.as_dict()
    render_bench(payload)
    if as_json:
        _print_json(payload)


def _help_commands() -> list[list[str]]:
    """[] for `softmax --help`, then [name] for every registered command."""
    from typer.main import get_command

    group = get_command(app)
    return [[]] + [[name] for name in sorted(getattr(group, "commands", {}))]


def _fmt_s(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def render_bench(payload: dict) -> None:
    """The rows table, then imports and --help timings, then the targets, on stderr."""
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
            highlight=False, soft_wrap=True,
        )
    if payload.get("help"):
        times = ", ".join(f"{h['command'].removesuffix(' --help').removeprefix('softmax').strip() or '(root)'} "
                          f"{h['median_s']:.2f}" for h in payload["help"])
        console.print(f"--help wall time (s, median of fresh processes): {times}", highlight=False, soft_wrap=True)
    for t in payload.get("targets", []):
        mark = "[green]met[/]" if t["met"] else "[red]missed[/]"
        console.print(f"  {mark}  {t['target']}: {t['value']:.3g} (limit {t['limit']:.3g})",
                      highlight=False, soft_wrap=True)
    if s.get("quick"):
        console.print("[yellow]--quick: capped smoke run; these figures are not a benchmark[/]")
    load = env.get("loadavg")
    if load:
        console.print(f"[dim]load average at start {load[0]:.2f}, at end {env.get('loadavg_end', [float('nan')])[0]:.2f} "
                      f"(other processes on this machine skew timings)[/]", highlight=False)
