"""Stop requests (Ctrl-C, SIGTERM, SIGHUP), and the few steps a stop must not cut in half.

The CLI installs `request_stop` as the handler of every stop signal (cli/output.py), so
that each stops a command the way Ctrl-C does: one KeyboardInterrupt, and every clean-up
after it (atomic writes' temporary files, the last checkpoint, TensorBoard's event file,
the resume hint) runs alike. Three rules make the report of a stopped run true:

* Only the first request raises. Once a stop is under way, another Ctrl-C must not cut
  its clean-up short; SIGKILL still ends the process at once, and every file it writes
  stays whole (atomic.py).
* `uninterrupted()` marks a step that must finish once begun: saving an epoch's
  checkpoint and recording it. A stop arriving inside takes effect at its end, so a run
  never reports an epoch other than the one its file holds.
* After `closing()` (training has ended), a request is only recorded: what is left is
  short, and it says what happened.

Without the CLI (training.fit called from Python) the default SIGINT handler raises
anywhere; the body stays correct then as well, only coarser: history is recorded only
after a save succeeded. Standard library only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _State:
    signum: int | None = None  # the first stop signal received
    owed = False  # that request's KeyboardInterrupt is still to be raised
    depth = 0  # nesting of uninterrupted() blocks
    pending = False  # a stop arrived inside one, to be raised at its end
    closing = False
    retries = 0


_state = _State()


def reset() -> None:
    """Forget earlier requests: a new command starts."""
    _state.signum, _state.owed, _state.depth, _state.pending, _state.closing = None, False, 0, False, False
    _state.retries = 0


def request_stop(signum: int, frame) -> None:
    """The signal handler: raise KeyboardInterrupt for the first request, unless deferred (see above)."""
    if _state.signum is None:
        _state.signum, _state.owed = signum, True
    if not _state.owed:
        return  # a stop is already under way
    if _state.closing:
        _state.owed = False
        return
    if _state.depth:
        _state.owed, _state.pending = False, True
        return
    if _inside_exec_of_a_string(frame) and os.name == "posix" and _state.retries < 50:
        # CPython (3.10, 3.11) remembers a KeyboardInterrupt that leaves code run by exec() or
        # eval() of a string (dataclasses and namedtuple make classes so, while modules import)
        # as "unhandled", even once it is handled, and then ends `python -m` by SIGINT instead
        # of the exit status chosen here. Raise it a moment later, outside that code.
        _state.retries += 1  # bounded: after half a second it is raised wherever it lands
        retry = threading.Timer(0.01, os.kill, (os.getpid(), signum))
        retry.daemon = True
        retry.start()
        return
    _state.owed = False
    raise KeyboardInterrupt


def _inside_exec_of_a_string(frame) -> bool:
    # The outermost frame is not one: `python -c CODE` runs CODE so, and exits without the quirk.
    while frame is not None and frame.f_back is not None:
        if frame.f_code.co_filename == "<string>" and frame.f_code.co_name == "<module>":
            return True
        frame = frame.f_back
    return False


def received() -> int | None:
    """The number of the first stop signal received since reset(), if any."""
    return _state.signum


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Run the block to its end; a stop requested meanwhile is raised right after it."""
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
    if _state.depth == 0 and _state.pending:
        _state.pending = False
        raise KeyboardInterrupt


def closing() -> None:
    """Training has ended: from now on a stop request is recorded, never raised."""
    _state.closing = True
