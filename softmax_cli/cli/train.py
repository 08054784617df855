"""`softmax train`: parse the options, train with a live table and TensorBoard, say how it ended."""

from __future__ import annotations

import shlex
from contextlib import ExitStack
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
    NameOption,
    PresetOption,
    RunsDirOption,
    ScheduleOption,
    SeedOption,
    StandardizeOption,
    ValSplitOption,
    WeightDecayOption,
    WorkersOption,
    ensure_data,
    given_options,
    path_value,
    resolve_device_or_usage_error,
)
from softmax_cli.cli.output import console, print_json, results_console, say, stop_as_reader_gone
from softmax_cli.config import default_workers
from softmax_cli.data.paths import resolve_data_dir


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
    name: NameOption = None,
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(
            parser=path_value,
            metavar="FILE",
            help="Checkpoint path, rewritten after every epoch; an existing file there must be a softmax-cli "
            "checkpoint. [default: <run folder>/checkpoint.pt]",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Let --checkpoint replace an existing file that is not a softmax-cli checkpoint."
        ),
    ] = False,
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
            parser=path_value,
            metavar="FILE",
            help="Continue from a checkpoint up to --epochs in total, with its settings and optimizer state.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Train softmax regression on Fashion-MNIST: one row per epoch on stdout, TensorBoard logs and a checkpoint."""
    from softmax_cli.config import ConflictingOption, resolve_hparams
    from softmax_cli.runs import checkpoint as ckpt
    from softmax_cli.training import check_validation_split

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
    if name is not None:
        from softmax_cli.runs.folders import named_run_dir

        if named_run_dir(runs_dir, hparams.impl, name).exists():
            folder = named_run_dir(runs_dir, hparams.impl, name)
            raise typer.BadParameter(
                f"{folder} already exists; choose another name or remove that folder", param_hint="--name"
            )
    if workers is not None and hparams.loader == "memory":
        say("[yellow]note:[/] --workers only applies to --loader dataloader; ignored")
    workers = default_workers() if workers is None else workers
    torch_device = resolve_device_or_usage_error(device)

    target = resolve_data_dir(data_dir)
    # The options a printed command must repeat: those given, not the defaults this machine resolves.
    again = _given_location_options(data_dir, runs_dir, device)
    try:
        with ExitStack() as claimed:
            if checkpoint is not None:
                # Claimed before anything else happens: a refusal comes at once, and the path stays ours.
                claimed.enter_context(ckpt.claim_checkpoint_path(checkpoint, overwrite=overwrite))
                if checkpoint.exists() and checkpoint != resume:
                    replaced = "exists and will be replaced after the first epoch"
                    say(f"[yellow]note:[/] {escape(str(checkpoint))} {replaced}")
            ensure_data(target)
            check_validation_split(hparams, target)
            result = _run_training(
                hparams, target, runs_dir, checkpoint, torch_device, workers, resumed, resume, again, as_json, name
            )  # fmt: skip
    except KeyboardInterrupt:
        # Stopped before training began (fetching or reading the data, say): reported like any stop.
        from softmax_cli.training import TrainingResult

        result = TrainingResult(
            hparams,
            torch_device,
            history=list(resumed["history"]) if resumed else [],
            checkpoint=None,
            epochs_done=resumed["epoch"] if resumed else 0,
            interrupted=True,
        )
        _report_interruption(result, resume, again)
    if as_json:
        from softmax_cli.runs.session import train_payload

        print_json(train_payload(result, name))
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


def _run_training(
    hparams, data_dir, runs_dir, checkpoint, device, workers, resumed, resume_path, again, as_json, name=None
):
    """Train with the progress display (runs.session makes the folder, the logs and the checkpoint), and
    report how it ended."""
    from softmax_cli.cli.render import TrainingDisplay
    from softmax_cli.runs.session import tensorboard_name, train_run

    # The reader of stdout leaving (`softmax train | head -2`) stops the run as Ctrl-C does.
    display = TrainingDisplay(console, results_console(as_json), reader_gone=stop_as_reader_gone)

    def warn(message: str) -> None:
        say(f"[yellow]warning:[/] {escape(message)}")

    with display:
        trained = train_run(
            hparams, data_dir, runs_dir, device, checkpoint=checkpoint, workers=workers, resumed=resumed,
            resume_path=resume_path, name=name, callbacks=[display], warn=warn,
        )  # fmt: skip
    result = trained.result
    if result.interrupted:
        _report_interruption(result, resume_path, again)
    elif result.history:
        last = result.history[-1]
        evaluate = shlex.join(["softmax", "eval", str(result.checkpoint), *_without(again, "--runs-dir")])
        # TensorBoard names a run by its path under --logdir: under the runs folder, this one is
        # <impl>/<folder>, beside every other run there (under its own folder it would be ".").
        command = escape(shlex.join(["tensorboard", "--logdir", str(runs_dir)]))
        shown = escape(tensorboard_name(result.log_dir or runs_dir, runs_dir))
        logs = f"TensorBoard: {command} (this run: {shown})"
        if trained.tensorboard_failure:
            stopped = escape(trained.tensorboard_failure)
            logs = f"TensorBoard (incomplete, logging stopped: {stopped}): {command} (this run: {shown})"
            # The checkpoint line ends the result (stdout: `softmax train > log.txt` keeps it); with
        # --json the JSON object says it all, and the hints are for a person reading the result.
        # Training has ended: a reader gone by now is reported by reports_errors (exit 141).
        display.rows.print(
            f"[green]Done[/]: test acc {last['test_acc']:.4f}, train loss {last['train_loss']:.4f}. "
            f"Checkpoint: {escape(str(result.checkpoint))}",
            soft_wrap=True,
        )
        if not as_json:
            say(f"Evaluate it: {escape(evaluate)}\n{logs}")
    return result


def _without(options: list[str], flag: str) -> list[str]:
    """options less `flag` and its value."""
    if flag not in options:
        return options
    at = options.index(flag)
    return options[:at] + options[at + 2 :]


def _report_interruption(result, resume_path, again: list[str]) -> None:
    """Say what was kept, and the command that continues the run."""
    continue_from = result.checkpoint or resume_path
    if result.checkpoint:
        say(
            f"[yellow]Interrupted[/]: the checkpoint of epoch {result.epochs_done}, the last completed, "
            f"is {escape(str(result.checkpoint))}"
        )
    elif resume_path:
        say(
            f"[yellow]Interrupted[/]: no new epoch completed; {escape(str(resume_path))} still holds "
            f"epoch {result.epochs_done}"
        )
    else:
        say("[yellow]Interrupted[/] before the first epoch finished: no checkpoint was written")
        return
    continue_command = shlex.join([
        "softmax", "train", "--resume", str(continue_from), "--epochs", str(result.hparams.epochs), *again,
    ])  # fmt: skip
    say(f"Continue with: {escape(continue_command)}")
