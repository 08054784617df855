"""The `softmax` command line: a thin Typer layer that parses, calls the core and renders with Rich.

torch, torchvision and tensorboard are imported inside the commands, never at module
level, so `softmax --help` answers instantly.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from softmax_cli.config import IMPLS, LOADERS, PRESETS, SCHEDULES, default_workers
from softmax_cli.errors import DataError, SoftmaxError
from softmax_cli.paths import DATA_DIR_ENV, resolve_data_dir

app = typer.Typer(
    name="softmax",
    help="Softmax regression on Fashion-MNIST, from scratch and concisely (Dive into Deep Learning, ch. 3).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help and errors: a usage error ends in one "Error: ..." line, not a box.
    rich_markup_mode=None,
)

# Human output goes to stderr so that --json leaves stdout to the JSON object alone.
console = Console(stderr=True)

DataDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help=f"Dataset folder. Default: ${DATA_DIR_ENV}, else $XDG_DATA_HOME/softmax-cli (~/.local/share/softmax-cli).",
        show_default=False,
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one red error line on stderr and return the Exit to raise."""
    # Messages carry paths and user text: never let Rich read "[...]" in them as markup.
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.command()
def download(
    data_dir: DataDirOption = None,
    mirror: Annotated[
        Optional[list[str]],
        typer.Option(
            "--mirror",
            metavar="URL",
            help="Base URL to fetch from (http://, https://, file://); repeatable; replaces the default mirrors.",
            show_default=False,
        ),
    ] = None,
    from_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--from",
            metavar="DIR",
            help="Import from a local folder holding the four .gz files (or the four uncompressed IDX files).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch again even if valid files are present.")] = False,
) -> None:
    """Put the four official Fashion-MNIST files into the data dir, verified by md5."""
    from softmax_cli import download as dl
    from softmax_cli.ui import DownloadProgressBar

    if mirror and from_dir is not None:
        raise typer.BadParameter("give either --mirror or --from, not both", param_hint="--from")
    target = resolve_data_dir(data_dir)
    try:
        with DownloadProgressBar(console) as progress:
            results = dl.fetch_dataset(target, mirrors=mirror, source_dir=from_dir, force=force, progress=progress)
    except SoftmaxError as exc:
        raise fail(str(exc)) from None
    if all(r.status == "present" for r in results):
        console.print(f"All four files already present and valid in {escape(str(dl.raw_dir(target)))}",
                      highlight=False, soft_wrap=True)
    else:
        console.print(f"[green]Fashion-MNIST ready[/] in {escape(str(dl.raw_dir(target)))}", highlight=False,
                      soft_wrap=True)


# ---------------------------------------------------------------------------------------
# Option types shared by train, eval and the commands built on them

Impl = Enum("Impl", {name: name for name in IMPLS}, type=str)
Loader = Enum("Loader", {name: name for name in LOADERS}, type=str)
Schedule = Enum("Schedule", {name: name for name in SCHEDULES}, type=str)
Preset = Enum("Preset", {name: name for name in PRESETS}, type=str)
_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _check_device(value: str) -> str:
    if not _DEVICE_PATTERN.fullmatch(value):
        raise typer.BadParameter(f"{value!r} is not one of auto, cpu, cuda, cuda:N, mps")
    return value


# The weights are float32, so a larger learning rate cannot even be stored.
_FLOAT32_MAX = 3.4028234663852886e38


def _check_lr(value: Optional[float]) -> Optional[float]:
    if value is not None and not (math.isfinite(value) and 0 < value <= _FLOAT32_MAX):
        raise typer.BadParameter(f"must be a positive finite float32 number, not {value}")
    return value


def _check_fraction(value: Optional[float]) -> Optional[float]:
    if value is not None and not 0 <= value < 1:
        raise typer.BadParameter(f"must be in [0, 1), not {value}")
    return value


def _check_weight_decay(value: Optional[float]) -> Optional[float]:
    if value is not None and not (math.isfinite(value) and 0 <= value <= _FLOAT32_MAX):
        raise typer.BadParameter(f"must be a finite float32 number >= 0, not {value}")
    return value


def _check_momentum(value: Optional[float]) -> Optional[float]:
    if value is not None and not 0 <= value < 1:
        raise typer.BadParameter(f"must be in [0, 1), not {value}")
    return value


DeviceOption = Annotated[
    str,
    typer.Option("--device", callback=_check_device,
                 help="auto (cuda if available, then mps, then cpu), cpu, cuda, cuda:N or mps."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout; human output stays on stderr.")]


def _device_or_usage_error(name: str):
    """Resolve --device; a device this machine lacks is a usage error (exit 2)."""
    from softmax_cli.core import resolve_device

    try:
        return resolve_device(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--device") from None


def _ensure_data(data_dir: Path) -> None:
    """Fetch the dataset from the default mirrors when it is missing, saying so."""
    from softmax_cli import download as dl
    from softmax_cli.ui import DownloadProgressBar

    if dl.dataset_present(data_dir):
        return
    if dl.holds_dataset_files(data_dir):
        # A natural mistake: --data-dir pointed at the folder of the four files themselves.
        console.print(f"{escape(str(data_dir))} holds the dataset files themselves; importing them into "
                      f"{escape(str(dl.raw_dir(data_dir)))}", highlight=False, soft_wrap=True)
        with DownloadProgressBar(console) as progress:
            dl.fetch_dataset(data_dir, source_dir=data_dir, progress=progress)
        return
    console.print(f"Fashion-MNIST not found in {escape(str(data_dir))}; downloading it", highlight=False,
                  soft_wrap=True)
    try:
        with DownloadProgressBar(console) as progress:
            dl.ensure_dataset(data_dir, progress=progress)
    except DataError as exc:
        raise DataError(
            f"{exc} (--mirror and --from are options of `softmax download --data-dir "
            f"{shlex.quote(str(data_dir))}`; run it first)"
        ) from None


def _print_json(payload: dict) -> None:
    # Machine output alone on stdout.
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


# Training options, shared by `train` and `compare`. None means "not given", so that a preset
# or a resumed checkpoint supplies the value and an explicit option can be told apart.
ImplOption = Annotated[Optional[Impl], typer.Option(help="Implementation: scratch (the book's 3.6) or concise (3.7). [default: scratch]", show_default=False)]
EpochsOption = Annotated[Optional[int], typer.Option(min=1, help="Epochs in total (a resumed run counts the checkpoint's). [default: 10]", show_default=False)]
LrOption = Annotated[Optional[float], typer.Option(callback=_check_lr, help="Learning rate. [default: 0.1; tuned preset 0.05]", show_default=False)]
BatchSizeOption = Annotated[Optional[int], typer.Option(min=1, help="Minibatch size. [default: 256]", show_default=False)]
WorkersOption = Annotated[Optional[int], typer.Option(min=0, help="DataLoader worker processes (--loader dataloader only). [default: min(4, CPUs)]", show_default=False)]
LoaderOption = Annotated[Optional[Loader], typer.Option(help="memory: the split held on the device, indexed batches (fast). dataloader: the book's ToTensor + DataLoader pipeline. [default: memory]", show_default=False)]
SeedOption = Annotated[Optional[int], typer.Option(min=0, max=2**63 - 1, help="Seed, set before the weights are drawn. [default: 326]", show_default=False)]
RunsDirOption = Annotated[Path, typer.Option(help="Runs go to RUNS_DIR/<impl>/<timestamp>-<tag>/.")]
NaiveSoftmaxOption = Annotated[Optional[bool], typer.Option("--naive-softmax", help="scratch only: the book's exact exp/sum softmax and -log cross-entropy, which overflow for large logits.", show_default=False)]
PresetOption = Annotated[Optional[Preset], typer.Option(help="book: the book's settings. tuned: momentum 0.9, weight decay 1e-4, cosine from lr 0.05, standardised pixels. Explicit options override. [default: book]", show_default=False)]
MomentumOption = Annotated[Optional[float], typer.Option(callback=_check_momentum, help="SGD momentum. [default: 0]", show_default=False)]
WeightDecayOption = Annotated[Optional[float], typer.Option(callback=_check_weight_decay, help="L2 weight decay. [default: 0]", show_default=False)]
ScheduleOption = Annotated[Optional[Schedule], typer.Option(help="Learning rate: constant, or cosine-annealed to 0 over all steps. [default: constant]", show_default=False)]
StandardizeOption = Annotated[Optional[bool], typer.Option("--standardize/--no-standardize", help="Standardise each pixel by the train split's mean/std (kept in the checkpoint). [default: off]", show_default=False)]
ValSplitOption = Annotated[Optional[float], typer.Option(callback=_check_fraction, help="Hold out this fraction of the train split and report validation accuracy. [default: 0]", show_default=False)]


def _given_options(**options) -> dict:
    """The training options as Hparams field values (enums to their names; None = not given)."""
    return {name: value.value if isinstance(value, Enum) else value for name, value in options.items()}


@app.command()
def train(
    impl: ImplOption = None,
    epochs: EpochsOption = None,
    lr: LrOption = None,
    batch_size: BatchSizeOption = None,
    workers: WorkersOption = None,
    loader: LoaderOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = None,
    data_dir: DataDirOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint path, rewritten after every epoch. [default: <run folder>/checkpoint.pt]", show_default=False)] = None,
    naive_softmax: NaiveSoftmaxOption = None,
    preset: PresetOption = None,
    momentum: MomentumOption = None,
    weight_decay: WeightDecayOption = None,
    schedule: ScheduleOption = None,
    standardize: StandardizeOption = None,
    val_split: ValSplitOption = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue from a checkpoint up to --epochs in total, with its settings and optimizer state.", show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Train softmax regression on Fashion-MNIST; one table row per epoch, TensorBoard logs and a checkpoint."""
    from softmax_cli import checkpoint as ckpt
    from softmax_cli.config import ConflictingOption, resolve_hparams

    given = _given_options(
        impl=impl, epochs=epochs, lr=lr, batch_size=batch_size, loader=loader, seed=seed,
        naive_softmax=naive_softmax, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
        standardize=standardize, val_split=val_split,
    )
    resumed = None
    if resume is not None:
        try:
            resumed = ckpt.load_checkpoint(resume)
        except SoftmaxError as exc:
            raise fail(str(exc)) from None
    try:
        hparams = resolve_hparams(given, preset.value if preset else None, resumed)
    except ConflictingOption as exc:
        raise typer.BadParameter(str(exc)) from None
    if hparams.naive_softmax and hparams.impl != "scratch":
        raise typer.BadParameter("--naive-softmax is for --impl scratch only", param_hint="--naive-softmax")
    if workers is not None and hparams.loader == "memory":
        console.print("[yellow]note:[/] --workers only applies to --loader dataloader; ignored")
    workers = default_workers() if workers is None else workers
    torch_device = _device_or_usage_error(device)

    target = resolve_data_dir(data_dir)
    try:
        _ensure_data(target)
        result = _run_training(hparams, target, runs_dir, checkpoint, torch_device, workers, resumed)
    except SoftmaxError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted before the first epoch finished; nothing was written", code=130) from None
    if as_json:
        _print_json(_train_json(result))
    if result.interrupted:
        raise typer.Exit(130)


def _run_training(hparams, data_dir, runs_dir, checkpoint, device, workers, resumed):
    """Create the run folder, train with the live display and TensorBoard, and report how it ended."""
    from softmax_cli import core
    from softmax_cli.config import RunPaths
    from softmax_cli.tboard import TensorBoardLogger
    from softmax_cli.ui import TrainingDisplay

    log_dir = core.make_run_dir(runs_dir, hparams.impl, hparams.run_tag)
    paths = RunPaths(data_dir=data_dir, log_dir=log_dir, checkpoint=checkpoint or log_dir / "checkpoint.pt")
    verb = f"Resuming from epoch {resumed['epoch']}" if resumed else "Training"
    title = f"{verb}: {hparams.impl} on {device}, lr {hparams.lr:g}, batch {hparams.batch_size}, seed {hparams.seed}"
    display = TrainingDisplay(console, title, with_validation=bool(hparams.val_split))
    try:
        with display:
            result = core.fit(hparams, paths, device, core.CallbackList([display, TensorBoardLogger(log_dir)]),
                              workers=workers, resume_from=resumed)
    except BaseException:
        # Failed or interrupted before training began: leave no empty run folder behind.
        if log_dir.is_dir() and not any(log_dir.iterdir()):
            log_dir.rmdir()
        raise
    if result.interrupted:
        where = f"the checkpoint of the last completed epoch is {result.checkpoint}" if result.checkpoint else "no epoch completed, so no checkpoint was written"
        console.print(f"[yellow]Interrupted[/]: {escape(where)}", soft_wrap=True, highlight=False)
        if result.checkpoint:
            continue_command = shlex.join([
                "softmax", "train", "--resume", str(result.checkpoint), "--epochs", str(hparams.epochs),
                "--data-dir", str(data_dir), "--runs-dir", str(runs_dir), "--device", device.type,
            ])
            console.print(f"Continue with: {escape(continue_command)}", soft_wrap=True, highlight=False)
    elif result.history:
        last = result.history[-1]
        console.print(
            f"[green]Done[/]: test acc {last['test_acc']:.4f}, train loss {last['train_loss']:.4f}. "
            f"Checkpoint: {escape(str(result.checkpoint))}\n"
            f"TensorBoard: {escape(shlex.join(['tensorboard', '--logdir', str(log_dir)]))}",
            highlight=False,
            soft_wrap=True,
        )
    return result


def _train_json(result) -> dict:
    return {
        "impl": result.hparams.impl,
        "device": str(result.device),
        "epochs": len(result.history),
        "history": result.history,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "log_dir": str(result.log_dir),
        "hparams": result.hparams.as_dict(),
        "interrupted": result.interrupted,
    }


CheckpointArgument = Annotated[
    Path, typer.Argument(metavar="CHECKPOINT", help="A checkpoint written by `softmax train`.", show_default=False)
]


def _load_checkpoint_or_fail(path: Path) -> dict:
    from softmax_cli import checkpoint as ckpt

    try:
        return ckpt.load_checkpoint(path)
    except SoftmaxError as exc:
        raise fail(str(exc)) from None


def _checkpoint_device_and_data(checkpoint: Path, device: str, data_dir: Optional[Path]):
    """What eval and predict start from: a validated checkpoint, the device, and a data dir holding the data."""
    loaded = _load_checkpoint_or_fail(checkpoint)
    torch_device = _device_or_usage_error(device)
    target = resolve_data_dir(data_dir)
    try:
        _ensure_data(target)
    except SoftmaxError as exc:
        raise fail(str(exc)) from None
    return loaded, torch_device, target


@app.command("eval")
def evaluate(
    checkpoint: CheckpointArgument,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Evaluation batch size. [default: the checkpoint's]", show_default=False)] = None,
    weights_png: Annotated[Optional[Path], typer.Option(help="Also write the 10 learned weight templates (columns of W as 28x28 images, titled by class) as a PNG.", show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate a checkpoint on the 10,000 test images: accuracy, loss, per-class table, confusion matrix."""
    from softmax_cli import core
    from softmax_cli.metrics import per_class_metrics
    from softmax_cli.ui import render_evaluation

    loaded, torch_device, target = _checkpoint_device_and_data(checkpoint, device, data_dir)
    try:
        evaluation, model = core.evaluate_checkpoint(loaded, target, torch_device, batch_size)
    except SoftmaxError as exc:
        raise fail(str(exc)) from None
    names = loaded["class_names"]
    per_class = per_class_metrics(evaluation.confusion, names)
    render_evaluation(console, checkpoint, loaded, evaluation, per_class)
    if weights_png is not None:
        from softmax_cli.viz import template_sheet

        sheet = template_sheet(model.weight_bias()[0], names)
        _write_png(lambda: (weights_png.parent.mkdir(parents=True, exist_ok=True), sheet.save(weights_png, format="PNG")),
                   weights_png)
    if as_json:
        _print_json({
            "checkpoint": str(checkpoint),
            "impl": loaded["impl"],
            "epoch": loaded["epoch"],
            "test_acc": evaluation.accuracy,
            "test_loss": evaluation.loss,
            "n": evaluation.n,
            "per_class": per_class,
            "confusion_matrix": evaluation.confusion.tolist(),
        })


def _write_png(write, path: Path) -> None:
    try:
        write()
    except (OSError, ValueError) as exc:
        raise fail(f"cannot write {path}: {getattr(exc, 'strerror', None) or exc}") from None
    console.print(f"Wrote {escape(str(path))}", highlight=False, soft_wrap=True)

# Commands defined in their own modules register themselves on `app` when imported.
from softmax_cli import cli_bench, cli_explore  # noqa: E402,F401
