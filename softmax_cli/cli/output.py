"""How every command talks: the two consoles, the one user-error path, stops by signal, JSON on stdout."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
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
# predict, compare, runs and bench, train's per-epoch rows) go to stdout; progress bars and
# notes go to `console`, on stderr. With --json the JSON object alone is the result on stdout
# and the human result moves to stderr, where a person still sees it.
# No automatic highlighting: numbers and paths in messages keep the colour they are given.
console = Console(stderr=True, highlight=False)


def results_console(as_json: bool = False) -> Console:
    """Where a command's human result goes: stdout, or stderr's `console` when --json has stdout.

    A fresh stdout Console per command, so it measures the terminal (or $COLUMNS) of this run.
    """
    return console if as_json else Console(highlight=False)


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
