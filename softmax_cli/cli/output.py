"""How every command talks: the two consoles, the one user-error path, stops by signal, JSON on stdout."""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import os
import re
import signal
import sys
import threading

import typer
from rich.console import Console
from rich.markup import escape

from softmax_cli import stops
from softmax_cli.errors import SoftmaxError, UsageError
from softmax_cli.runs.folders import json_safe

# The stdout/stderr contract. Results a user would keep, pipe or grep (the tables of eval,
# predict, compare, runs and bench, train's header, per-epoch rows and checkpoint line) go to
# stdout; progress bars and notes go to `console`, on stderr. With --json the JSON object alone
# is the result on stdout, and the human result is not printed: stderr keeps progress (on a
# terminal only), warnings and errors.


class OutputConsole(Console):
    """A Rich Console whose closed pipe is a BrokenPipeError, for reports_errors to end quietly.

    Rich's own answer to a closed pipe is SystemExit(1), which would pass for a failure, and
    would cut short a training run instead of stopping it cleanly (cli/train.py).
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True  # what is still buffered is dropped, never written again
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


# No automatic highlighting: numbers and paths in messages keep the colour they are given.
console = OutputConsole(stderr=True, highlight=False)

# Off a terminal (a file, a pipe) nothing reads the width: lines are not hard-wrapped at 80
# columns, so `softmax eval > eval.txt; grep 'batch size' eval.txt` finds the line whole.
# $COLUMNS, when set, still gives the width.
UNWRAPPED_WIDTH = 10_000

# Spaces (and the colour resets after them, under FORCE_COLOR) at the end of a line.
_TRAILING_SPACES = re.compile(r"[ \t]+((?:\x1b\[[0-9;]*m)*)(?=\n)")


class TrimmedLines:
    """A text stream that drops the spaces Rich pads table lines with at their ends.

    The spaces at the end of one write are held back until the next shows whether a line
    break follows them.
    """

    def __init__(self, stream) -> None:
        self.stream = stream
        self.held = ""

    def write(self, text: str) -> int:
        text = _TRAILING_SPACES.sub(r"\1", self.held + text)
        kept = text.rstrip(" \t")
        self.held = text[len(kept) :]
        self.stream.write(kept)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)  # encoding, isatty, fileno, ...


def results_console(as_json: bool = False) -> Console:
    """Where a command's human result goes: stdout; with --json, nowhere (the JSON object is the result).

    A fresh stdout Console per command, so it measures the terminal (or $COLUMNS) of this run.
    """
    if as_json:
        return OutputConsole(file=io.StringIO(), quiet=True)
    if sys.stdout.isatty():
        return OutputConsole(highlight=False)
    width = None if os.environ.get("COLUMNS", "").strip().isdigit() else UNWRAPPED_WIDTH
    return OutputConsole(file=TrimmedLines(sys.stdout), highlight=False, width=width)


def prepare_streams() -> None:
    """Before any work: output that survives any encoding, and a closed stdout refused at once.

    PYTHONIOENCODING=ascii (or a C locale) must not turn a run name into a traceback: a
    character the encoding lacks is written as its escape (\\u00e9). A command started with
    stdout closed (`softmax train >&-`) could not show its result: it stops before training.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")
    if sys.stdout is None:
        raise fail("standard output is closed")


def say(markup: str) -> None:
    """One message on stderr, never wrapped in the middle of a path or a command to copy."""
    console.print(markup, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one red error line on stderr and return the Exit to raise."""
    # Messages carry paths and user text: never let Rich read "[...]" in them as markup.
    # Foreign texts (urllib's, the OS's) may run over several lines: the error stays one line.
    say(f"[bold red]error:[/] {escape(printable(' '.join(message.split())))}")
    return typer.Exit(code)


def printable(text: str) -> str:
    """text as a terminal may receive it: each character it would act on or cannot show, as a repr writes it.

    A file or folder name may hold anything but "/" and NUL: ESC (a colour, a cursor move, a
    rewritten title), a newline that splits a path's line, a byte that is not UTF-8 (Python's
    surrogate escape, which no terminal can print). Those come out as \\x1b, \\n, \\udc80; text
    that is printable already is unchanged. Applied where names meet the terminal.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


# What a command exits with after Ctrl-C; reports_errors makes it 128 + the number of the
# signal that stopped it (143 for SIGTERM, 129 for SIGHUP), as a shell reports a signal.
INTERRUPTED = 130
# The reader of stdout left (`| head -1`): the status a shell shows for a tool SIGPIPE ended.
SIGPIPE = getattr(signal, "SIGPIPE", 13)
READER_GONE = 128 + SIGPIPE
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
        # Once a stop has begun, the process only reports and ends: further stop signals are ignored
        # to the last instruction. Restored, Python's handler would raise a KeyboardInterrupt into the
        # report, and at interpreter shutdown (which resets Python-level handlers to the default) a
        # late Ctrl-C would kill the process by SIGINT instead of its exit status.
        stopped = stops.received() is not None
        for number, previous in installed.items():
            signal.signal(number, signal.SIG_IGN if stopped else previous)


def stop_exit_code() -> int:
    """128 + the number of the signal that stopped the command (130 when none was seen, e.g. a test)."""
    signum = stops.received()
    return 128 + signum if signum is not None else INTERRUPTED


def reports_errors(command):
    """The one user-error path, around every command.

    A SoftmaxError from the body becomes one `error:` line and exit 1 (a UsageError: a usage
    error, exit 2); a stop (Ctrl-C, SIGTERM, SIGHUP) exits 128 + its signal's number; a reader
    that closed the pipe early (`| head -1`) ends the command quietly with 141, as SIGPIPE ends
    other tools; a stdout that cannot be written (a full disk) is one line on stderr and exit 1.
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
            except BrokenPipeError:
                raise reader_gone() from None
            except KeyboardInterrupt:
                if stops.received() == SIGPIPE:
                    raise reader_gone() from None
                raise fail("interrupted", code=stop_exit_code()) from None
            except typer.Exit as exc:
                if exc.exit_code == INTERRUPTED:
                    raise typer.Exit(stop_exit_code()) from None
                raise
            except OSError as exc:
                if not _stdout_broken(exc):
                    raise
                raise _stdout_failed(exc) from None
            except ImportError as exc:
                # A library that is installed but cannot load here (an address-space limit too small
                # for torch's shared objects: "failed to map segment"; a broken install) is the
                # machine's fault, not a bug: one line naming the library and the loader's reason.
                library = _failed_library(exc)
                if library is None:
                    raise
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise fail(f"{library} could not be loaded: {reason}") from None

    return run


# The libraries the commands import when they need them; any of them failing to load is reported as such.
HEAVY_LIBRARIES = {"torch", "torchvision", "tensorboard", "matplotlib", "numpy", "PIL", "onnx", "onnxscript"}


def _failed_library(exc: ImportError) -> str | None:
    """Which of HEAVY_LIBRARIES failed to load: the innermost of them whose code the import ran
    (a shared object that cannot be mapped names no module, only its .so file), else exc.name's."""
    found = None
    traceback = exc.__traceback__
    while traceback is not None:
        package = str(traceback.tb_frame.f_globals.get("__name__", "")).split(".")[0]
        found = package if package in HEAVY_LIBRARIES else found
        traceback = traceback.tb_next
    named = (exc.name or "").split(".")[0]
    return found or (named if named in HEAVY_LIBRARIES else None)


# What a write to a full, broken or vanished output stream raises; the body turns the OSErrors
# of the files it writes into SoftmaxErrors, so one of these without a file name is the output's.
_OUTPUT_ERRNOS = {errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _stdout_broken(exc: OSError) -> bool:
    """Whether exc came from writing stdout (a Rich table or JSON): a full disk, a vanished device, ..."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        return True
    return exc.filename is None and exc.errno in _OUTPUT_ERRNOS


def _stdout_to_devnull() -> None:
    """Python's documented recipe for a closed pipe (the signal module's note on SIGPIPE):
    point stdout at devnull, so the interpreter's final flush of what is still buffered
    cannot fail again at exit with a second, unreported error."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def reader_gone() -> typer.Exit:
    """The reader of stdout closed the pipe (`softmax runs | head -1`): that is normal, not an
    error. No message; exit 141, as for a tool that SIGPIPE ended."""
    _stdout_to_devnull()
    return typer.Exit(READER_GONE)


def stop_as_reader_gone() -> None:
    """The reader of stdout left while training: stop the run as SIGPIPE would, like Ctrl-C.

    The stop comes as every stop does (softmax_cli.stops): right away, or at the end of the
    epoch being saved; the run is recorded as interrupted and the command exits 141.
    """
    _stdout_to_devnull()
    stops.request_stop(SIGPIPE, None)


def _stdout_failed(exc: OSError) -> typer.Exit:
    """Report an unwritable stdout in one line on stderr; exit 1."""
    _stdout_to_devnull()
    reason = exc.strerror or str(exc)
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
    except BrokenPipeError:
        raise reader_gone() from None
    except OSError as exc:
        raise _stdout_failed(exc) from None
