"""`softmax predict` and `softmax compare`: see what the model learned, and watch the two
implementations agree. Registered on the app by importing this module; heavy imports stay
inside the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from softmax_cli.cli import (
    BatchSizeOption,
    CheckpointArgument,
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
    _device_or_usage_error,
    _ensure_data,
    _given_options,
    _checkpoint_device_and_data,
    _print_json,
    _write_png,
    app,
    console,
    fail,
)
from softmax_cli.errors import SoftmaxError
from softmax_cli.paths import resolve_data_dir

DEFAULT_TOLERANCE = 1e-4


@app.command()
def predict(
    checkpoint: CheckpointArgument,
    n: Annotated[int, typer.Option("--n", min=1, max=10000, help="How many test images to show.")] = 18,
    only_wrong: Annotated[bool, typer.Option("--only-wrong", help="Show only misclassified images.")] = False,
    out: Annotated[Path, typer.Option(help="PNG grid of the images titled true / predicted.")] = Path("predictions.png"),
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Like the book's predict_ch3: test images with true and predicted classes, as a PNG and a table."""
    from rich.table import Table

    from softmax_cli.core import predict_test_examples
    from softmax_cli.viz import prediction_grid

    loaded, torch_device, target = _checkpoint_device_and_data(checkpoint, device, data_dir)
    try:
        shown = predict_test_examples(loaded, target, torch_device, n, only_wrong)
    except SoftmaxError as exc:
        raise fail(str(exc)) from None
    names = loaded["class_names"]
    rows = [
        {"index": int(i), "true": names[int(t)], "predicted": names[int(p)], "confidence": float(c),
         "correct": int(t) == int(p)}
        for i, t, p, c in zip(shown.indices, shown.labels, shown.predicted, shown.confidence)
    ]
    if not rows:
        raise fail("no test image matches (--only-wrong on a model that gets every one right?)")
    table = Table(title=f"{len(rows)} test images ({'misclassified only' if only_wrong else 'in file order'})",
                  title_justify="left", header_style="bold")
    for name, justify in (("#", "right"), ("true", "left"), ("predicted", "left"), ("p", "right"), ("", "left")):
        table.add_column(name, justify=justify)
    for row in rows:
        mark = "[green]ok[/]" if row["correct"] else "[red]wrong[/]"
        table.add_row(str(row["index"]), row["true"], row["predicted"], f"{row['confidence']:.2f}", mark)
    console.print(table)
    grid = prediction_grid(shown.images, [(r["true"], r["predicted"]) for r in rows],
                           [not r["correct"] for r in rows])
    _write_png(lambda: (out.parent.mkdir(parents=True, exist_ok=True), grid.save(out, format="PNG")), out)
    if as_json:
        _print_json({"checkpoint": str(checkpoint), "out": str(out), "predictions": rows})


@app.command()
def compare(
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs each implementation trains. [default: 10]", show_default=False)] = None,
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
    tolerance: Annotated[float, typer.Option(min=0, help="Largest absolute weight difference that counts as agreement.")] = DEFAULT_TOLERANCE,
    as_json: JsonOption = False,
) -> None:
    """Train scratch and concise from the same seed, weights and batch order; show them side by side.

    Exits 0 when their weights agree within --tolerance after every epoch, 1 otherwise.
    """
    from rich.table import Table

    from softmax_cli import core
    from softmax_cli.config import default_workers, resolve_hparams
    from softmax_cli.ui import TrainingDisplay

    given = _given_options(epochs=epochs, lr=lr, batch_size=batch_size, loader=loader, seed=seed,
                           naive_softmax=naive_softmax, momentum=momentum, weight_decay=weight_decay,
                           schedule=schedule, standardize=standardize)
    hparams = resolve_hparams(given, preset.value if preset else None)
    torch_device = _device_or_usage_error(device)
    workers = default_workers() if workers is None else workers
    target = resolve_data_dir(data_dir)
    displays = []

    def display_for(impl):
        # One live display at a time: close the previous run's before the next one starts.
        for finished in displays:
            finished.__exit__(None, None, None)
        displays.clear()
        display = TrainingDisplay(console, f"{impl} (seed {hparams.seed})", with_validation=False)
        display.__enter__()
        displays.append(display)
        return [display]

    try:
        _ensure_data(target)
        run_dir = core.make_run_dir(runs_dir, "compare", hparams.run_tag)
        try:
            compared = core.compare_implementations(hparams, target, run_dir, torch_device, workers, display_for)
        finally:
            for display in displays:
                display.__exit__(None, None, None)
    except SoftmaxError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", code=130) from None

    table = Table(title=f"scratch vs concise, same seed {hparams.seed}, same initial weights and batch order",
                  title_justify="left", header_style="bold")
    for name in ("epoch", "loss scratch", "loss concise", "test acc scratch", "test acc concise",
                 "max |ΔW|", "max |Δb|"):
        table.add_column(name, justify="right")
    for row in compared:
        table.add_row(str(row.epoch), f"{row.scratch['train_loss']:.6f}", f"{row.concise['train_loss']:.6f}",
                      f"{row.scratch['test_acc']:.4f}", f"{row.concise['test_acc']:.4f}",
                      f"{row.max_weight_diff:.2e}", f"{row.max_bias_diff:.2e}")
    console.print(table)
    largest = max(max(row.max_weight_diff, row.max_bias_diff) for row in compared)
    agree = largest <= tolerance
    verdict = "[green]agree[/]" if agree else "[red]DIFFER[/]"
    console.print(f"{verdict}: largest difference in weights and biases {largest:.2e} (tolerance {tolerance:g}); "
                  f"checkpoints scratch.pt and concise.pt in {escape(str(run_dir))}", highlight=False, soft_wrap=True)
    if as_json:
        _print_json({
            "agree": agree, "tolerance": tolerance, "max_abs_diff": largest, "hparams": hparams.as_dict(),
            "epochs": [{"epoch": r.epoch, "scratch": r.scratch, "concise": r.concise,
                        "max_weight_diff": r.max_weight_diff, "max_bias_diff": r.max_bias_diff} for r in compared],
        })
    if not agree:
        raise typer.Exit(1)
