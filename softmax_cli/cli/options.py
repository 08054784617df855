"""What every command shares: the console, the one user-error path, option types, JSON output, data set-up.

Option ranges and defaults come from softmax_cli.config (RANGES, Hparams), so the help
text, the validation here and checkpoint validation cannot drift apart. torch is never
imported at module level, so `--help` answers instantly.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import shlex
import signal
import sys
import threading
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from softmax_cli import stops
from softmax_cli.config import IMPLS, LOADERS, PRESETS, RANGES, SCHEDULES, Hparams
from softmax_cli.errors import DataError, SoftmaxError, UsageError
from softmax_cli.paths import DATA_DIR_ENV
from softmax_cli.runs import json_safe

# Human output goes to stderr so that --json leaves stdout to the JSON object alone.
# No automatic highlighting: numbers and paths in messages keep the colour they are given.
console = Console(stderr=True, highlight=False)


def say(markup: str) -> None:
    """One message on stderr, never wrapped in the middle of a path or a command to copy."""
    console.print(markup, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one red error line on stderr and return the Exit to raise."""
    # Messages carry paths and user text: never let Rich read "[...]" in them as markup.
    say(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


# What a command exits with after Ctrl-C; reports_errors makes it 128 + the number of the
# signal that stopped it (143 for SIGTERM, 129 for SIGHUP), as a shell reports a signal.
INTERRUPTED = 130
# The signals that stop a command as Ctrl-C does (softmax_cli.stops says how).
_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


@contextlib.contextmanager
def stop_signals():
    """While a command runs, SIGTERM and SIGHUP stop it exactly as Ctrl-C does (stops.request_stop).

    A signal the parent set to be ignored (nohup, a background job) stays ignored. Signal
    handlers can only be set from the main thread; elsewhere nothing changes.
    """
    stops.reset()
    installed = {}
    if threading.current_thread() is threading.main_thread():
        for name in _STOP_SIGNALS:
            number = getattr(signal, name, None)  # Windows has no SIGHUP
            if number is not None and signal.getsignal(number) is not signal.SIG_IGN:
                installed[number] = signal.signal(number, stops.request_stop)
    try:
        yield
    finally:
        for number, previous in installed.items():
            signal.signal(number, previous)


def stop_exit_code() -> int:
    """128 + the number of the signal that stopped the command (130 when none was seen, e.g. a test)."""
    signum = stops.received()
    return 128 + signum if signum is not None else INTERRUPTED


def reports_errors(command):
    """The one user-error path, around every command.

    A SoftmaxError from the body becomes one `error:` line and exit 1 (a UsageError: a usage
    error, exit 2); a stop (Ctrl-C, SIGTERM, SIGHUP) exits 128 + its signal's number; a stdout
    that cannot be written (a closed pipe, a full disk) is one line on stderr and exit 1.
    """

    @functools.wraps(command)
    def run(*args, **kwargs):
        with stop_signals():
            try:
                outcome = command(*args, **kwargs)
                sys.stdout.flush()  # a failing stdout fails here, where it is reported, not at exit
                return outcome
            except UsageError as exc:
                raise typer.BadParameter(str(exc), param_hint=exc.option) from None
            except SoftmaxError as exc:
                raise fail(str(exc)) from None
            except KeyboardInterrupt:
                raise fail("interrupted", code=stop_exit_code()) from None
            except typer.Exit as exc:
                if exc.exit_code == INTERRUPTED:
                    raise typer.Exit(stop_exit_code()) from None
                raise
            except OSError as exc:
                if not _stdout_broken(exc):
                    raise
                raise _stdout_failed(exc) from None

    return run


# What a write to a full, broken or vanished output stream raises; the body turns the OSErrors
# of the files it writes into SoftmaxErrors, so one of these without a file name is the output's.
_OUTPUT_ERRNOS = {errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _stdout_broken(exc: OSError) -> bool:
    """Whether exc came from writing stdout (a Rich table or JSON): a closed pipe, a full disk, ..."""
    if isinstance(exc, BrokenPipeError):
        return True
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        return True
    return exc.filename is None and exc.errno in _OUTPUT_ERRNOS


def _stdout_failed(exc: OSError) -> typer.Exit:
    """Report an unwritable stdout in one line on stderr; exit 1.

    Python's documented recipe for a closed pipe (the signal module's note on SIGPIPE):
    point stdout at devnull, so the interpreter's final flush of what is still buffered
    cannot fail again at exit with a second, unreported error.
    """
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    reason = "the pipe was closed by its reader" if isinstance(exc, BrokenPipeError) else exc.strerror or str(exc)
    try:
        return fail(f"cannot write the output to stdout: {reason}")
    except OSError:  # stderr is gone too: the exit status is all that is left
        return typer.Exit(1)


def print_json(payload: dict) -> None:
    """Machine output: one JSON object, alone on stdout. NaN and infinities become null (JSON has neither)."""
    text = json.dumps(json_safe(payload), allow_nan=False) + "\n"
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        raise _stdout_failed(exc) from None


def checked(name: str):
    """A Typer callback that refuses a value outside config.RANGES[name] as a usage error."""
    allowed = RANGES[name]

    def check(value):
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"must be {allowed}, not {value}")
        return value

    return check


def default_note(name: str, extra: str = "") -> str:
    """' [default: X]' from Hparams' own default, for options whose None means 'not given'."""
    return f" [default: {getattr(Hparams, name)}{extra}]"


def _choices(names) -> type[Enum]:
    return Enum("Choice", {name: name for name in names}, type=str)


Impl, Loader, Schedule, Preset = (_choices(names) for names in (IMPLS, LOADERS, SCHEDULES, PRESETS))
_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _check_device(value: str) -> str:
    if not _DEVICE_PATTERN.fullmatch(value):
        raise typer.BadParameter(f"{value!r} is not one of auto, cpu, cuda, cuda:N, mps")
    return value


def resolve_device_or_usage_error(name: str):
    """Resolve --device; a device this machine lacks is a usage error (exit 2)."""
    from softmax_cli.devices import resolve_device

    try:
        return resolve_device(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--device") from None


def given_options(**options) -> dict:
    """The training options as Hparams field values (enums to their names; None = not given)."""
    return {name: value.value if isinstance(value, Enum) else value for name, value in options.items()}


def ensure_data(data_dir: Path) -> None:
    """Fetch the dataset from the default mirrors when it is missing, saying so."""
    from softmax_cli import download as dl
    from softmax_cli.cli.render import DownloadProgressBar

    if dl.dataset_present(data_dir):
        return
    if dl.holds_dataset_files(data_dir):
        # A natural mistake: --data-dir pointed at the folder of the four files themselves.
        say(
            f"{escape(str(data_dir))} holds the dataset files themselves; importing them into "
            f"{escape(str(dl.raw_dir(data_dir)))}"
        )
        with DownloadProgressBar(console) as progress:
            dl.fetch_dataset(data_dir, source_dir=data_dir, progress=progress)
        return
    say(f"Fashion-MNIST not found in {escape(str(data_dir))}; downloading it")
    try:
        with DownloadProgressBar(console) as progress:
            dl.ensure_dataset(data_dir, progress=progress)
    except DataError as exc:
        raise DataError(
            f"{exc} (--mirror and --from are options of `softmax download --data-dir "
            f"{shlex.quote(str(data_dir))}`; run it first)"
        ) from None


def write_image(save, path: Path) -> None:
    """Write a picture with save(path), creating its folder; an unwritable path is one error line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save(path)
    except (OSError, ValueError) as exc:
        raise fail(f"cannot write {path}: {getattr(exc, 'strerror', None) or exc}") from None
    say(f"Wrote {escape(str(path))}")


DataDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help=f"Dataset folder. Default: ${DATA_DIR_ENV}, else $XDG_DATA_HOME/softmax-cli (~/.local/share/softmax-cli).",
        show_default=False,
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        callback=_check_device,
        help="auto (cuda if available, then mps, then cpu), cpu, cuda, cuda:N or mps.",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout; human output stays on stderr.")
]


def path_value(value) -> Path:
    """The parser of path options: an empty value would silently become "." (the current folder)."""
    if not str(value).strip():
        raise typer.BadParameter("must be a path, not empty")
    return Path(value)


def folder_value(value) -> Path:
    """The parser of folder options that softmax writes into: not empty, and not an existing file."""
    path = path_value(value)
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} exists and is not a folder")
    return path


CheckpointArgument = Annotated[
    Path,
    typer.Argument(
        parser=path_value, metavar="CHECKPOINT", help="A checkpoint written by `softmax train`.", show_default=False
    ),
]

# Training options, shared by `train` and `compare`. None means "not given", so that a preset
# or a resumed checkpoint supplies the value and an explicit option can be told apart.
ImplOption = Annotated[
    Optional[Impl],
    typer.Option(
        help="Implementation: scratch (the book's 3.6) or concise (3.7)." + default_note("impl"), show_default=False
    ),
]
EpochsOption = Annotated[
    Optional[int],
    typer.Option(
        min=RANGES["epochs"].low,
        max=RANGES["epochs"].high,
        show_default=False,
        help="Epochs in total (a resumed run counts the checkpoint's)." + default_note("epochs"),
    ),
]
LrOption = Annotated[
    Optional[float],
    typer.Option(
        callback=checked("lr"), help="Learning rate." + default_note("lr", "; tuned preset 0.05"), show_default=False
    ),
]
BatchSizeOption = Annotated[
    Optional[int],
    typer.Option(
        min=RANGES["batch_size"].low,
        max=RANGES["batch_size"].high,
        help="Minibatch size." + default_note("batch_size"),
        show_default=False,
    ),
]
WorkersOption = Annotated[
    Optional[int],
    typer.Option(
        min=RANGES["workers"].low,
        show_default=False,
        help="DataLoader worker processes (--loader dataloader only). [default: min(4, CPUs)]",
    ),
]
LoaderOption = Annotated[
    Optional[Loader],
    typer.Option(
        show_default=False,
        help="memory: the split held on the device, indexed batches (fast). "
        "dataloader: the book's ToTensor + DataLoader pipeline." + default_note("loader"),
    ),
]
SeedOption = Annotated[
    Optional[int],
    typer.Option(
        min=RANGES["seed"].low,
        max=RANGES["seed"].high,
        show_default=False,
        help="Seed, set before the weights are drawn." + default_note("seed"),
    ),
]
RunsDirOption = Annotated[
    Path, typer.Option(parser=folder_value, metavar="DIR", help="Runs go to RUNS_DIR/<impl>/<timestamp>-<tag>/.")
]
NaiveSoftmaxOption = Annotated[
    Optional[bool],
    typer.Option(
        "--naive-softmax",
        show_default=False,
        help="scratch only: the book's exact exp/sum softmax and -log cross-entropy, which overflow for large logits.",
    ),
]
PresetOption = Annotated[
    Optional[Preset],
    typer.Option(
        show_default=False,
        help="book: the book's settings. tuned: momentum 0.9, weight decay 1e-4, cosine "
        "from lr 0.05, standardised pixels. Explicit options override." + default_note("preset"),
    ),
]
MomentumOption = Annotated[
    Optional[float],
    typer.Option(callback=checked("momentum"), help="SGD momentum." + default_note("momentum"), show_default=False),
]
WeightDecayOption = Annotated[
    Optional[float],
    typer.Option(
        callback=checked("weight_decay"), help="L2 weight decay." + default_note("weight_decay"), show_default=False
    ),
]
ScheduleOption = Annotated[
    Optional[Schedule],
    typer.Option(
        show_default=False,
        help="Learning rate: constant, or cosine-annealed to 0 over all steps." + default_note("schedule"),
    ),
]
StandardizeOption = Annotated[
    Optional[bool],
    typer.Option(
        "--standardize/--no-standardize",
        show_default=False,
        help="Standardise each pixel by the train split's mean/std (kept in the checkpoint). [default: off]",
    ),
]
ValSplitOption = Annotated[
    Optional[float],
    typer.Option(
        callback=checked("val_split"),
        show_default=False,
        help="Hold out this fraction of the train split and report validation accuracy." + default_note("val_split"),
    ),
]
