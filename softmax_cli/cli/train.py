"""`softmax train`: parse the options, train with a live table and TensorBoard, say how it ended."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from softmax_cli.cli.options import (
    BatchSizeOption,
    DataDirOption,
    DeviceOption,
    EpochsOption,
    ImplOption,
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
    ValSplitOption,
    WeightDecayOption,
    WorkersOption,
    console,
    ensure_data,
    fail,
    given_options,
    print_json,
    resolve_device_or_usage_error,
    results_console,
    say,
)
from softmax_cli.config import default_workers
from softmax_cli.paths import resolve_data_dir


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
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(
            help="Checkpoint path, rewritten after every epoch. [default: <run folder>/checkpoint.pt]",
            show_default=False,
        ),
    ] = None,
    naive_softmax: NaiveSoftmaxOption = None,
    preset: PresetOption = None,
    momentum: MomentumOption = None,
    weight_decay: WeightDecayOption = None,
    schedule: ScheduleOption = None,
    standardize: StandardizeOption = None,
    val_split: ValSplitOption = None,
    resume: Annotated[
        Optional[Path],
        typer.Option(
            help="Continue from a checkpoint up to --epochs in total, with its settings and optimizer state.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Train softmax regression on Fashion-MNIST: one row per epoch on stdout, TensorBoard logs and a checkpoint."""
    from softmax_cli import checkpoint as ckpt
    from softmax_cli.config import ConflictingOption, resolve_hparams

    given = given_options(
        impl=impl, epochs=epochs, lr=lr, batch_size=batch_size, loader=loader, seed=seed,
        naive_softmax=naive_softmax, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
        standardize=standardize, val_split=val_split,
    )  # fmt: skip
    resumed = ckpt.load_checkpoint(resume) if resume is not None else None
    try:
        hparams = resolve_hparams(given, preset.value if preset else None, resumed)
    except ConflictingOption as exc:
        raise typer.BadParameter(str(exc)) from None
    if hparams.naive_softmax and hparams.impl != "scratch":
        raise typer.BadParameter("--naive-softmax is for --impl scratch only", param_hint="--naive-softmax")
    if workers is not None and hparams.loader == "memory":
        say("[yellow]note:[/] --workers only applies to --loader dataloader; ignored")
    if checkpoint is not None and checkpoint.exists() and checkpoint != resume:
        say(f"[yellow]note:[/] {escape(str(checkpoint))} exists and will be replaced after the first epoch")
    workers = default_workers() if workers is None else workers
    torch_device = resolve_device_or_usage_error(device)

    target = resolve_data_dir(data_dir)
    # The options a printed command must repeat: those given, not the defaults this machine resolves.
    again = _given_location_options(data_dir, runs_dir, device)
    try:
        ensure_data(target)
        result = _run_training(
            hparams, target, runs_dir, checkpoint, torch_device, workers, resumed, resume, again, as_json
        )
    except KeyboardInterrupt:
        raise fail("interrupted before the first epoch finished; nothing was written", code=130) from None
    if as_json:
        print_json(_train_json(result))
    if result.interrupted:
        raise typer.Exit(130)


def _given_location_options(data_dir: Optional[Path], runs_dir: Path, device: str) -> list[str]:
    """--data-dir, --runs-dir and --device as the user gave them, for the commands train prints."""
    options = []
    if data_dir is not None:
        options += ["--data-dir", str(data_dir)]
    if runs_dir != Path("runs"):
        options += ["--runs-dir", str(runs_dir)]
    if device != "auto":
        options += ["--device", device]
    return options


def _run_training(hparams, data_dir, runs_dir, checkpoint, device, workers, resumed, resume_path, again, as_json):
    """Create the run folder, train with the progress display and TensorBoard, and report how it ended."""
    from softmax_cli import training
    from softmax_cli.cli.render import TrainingDisplay
    from softmax_cli.config import RunPaths
    from softmax_cli.runs import CHECKPOINT_NAME, RunSummaryWriter, make_run_dir
    from softmax_cli.tboard import TensorBoardLogger

    tag = hparams.resumed_run_tag(resumed["epoch"]) if resumed else hparams.run_tag
    log_dir = make_run_dir(runs_dir, hparams.impl, tag)
    paths = RunPaths(data_dir=data_dir, log_dir=log_dir, checkpoint=checkpoint or log_dir / CHECKPOINT_NAME)
    display = TrainingDisplay(console, results_console(as_json))
    callbacks = training.CallbackList([display, TensorBoardLogger(log_dir), RunSummaryWriter(log_dir, resume_path)])
    try:
        with display:
            result = training.fit(hparams, paths, device, callbacks, workers=workers, resume_from=resumed)
    except BaseException:
        # Failed or interrupted before training began: leave no empty run folder behind.
        if log_dir.is_dir() and not any(log_dir.iterdir()):
            log_dir.rmdir()
        raise
    if result.interrupted:
        _report_interruption(result, again)
    elif result.history:
        last = result.history[-1]
        evaluate = shlex.join(["softmax", "eval", str(result.checkpoint), *_without(again, "--runs-dir")])
        tensorboard = shlex.join(["tensorboard", "--logdir", str(log_dir)])
        say(
            f"[green]Done[/]: test acc {last['test_acc']:.4f}, train loss {last['train_loss']:.4f}. "
            f"Checkpoint: {escape(str(result.checkpoint))}\n"
            f"Evaluate it: {escape(evaluate)}\nTensorBoard: {escape(tensorboard)}"
        )
    return result


def _without(options: list[str], flag: str) -> list[str]:
    """options less `flag` and its value."""
    if flag not in options:
        return options
    at = options.index(flag)
    return options[:at] + options[at + 2 :]


def _report_interruption(result, again: list[str]) -> None:
    """Say what was kept, and the command that continues the run."""
    if not result.checkpoint:
        say("[yellow]Interrupted[/]: no epoch completed, so no checkpoint was written")
        return
    say(f"[yellow]Interrupted[/]: the checkpoint of the last completed epoch is {escape(str(result.checkpoint))}")
    continue_command = shlex.join([
        "softmax", "train", "--resume", str(result.checkpoint), "--epochs", str(result.hparams.epochs), *again,
    ])  # fmt: skip
    say(f"Continue with: {escape(continue_command)}")


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
