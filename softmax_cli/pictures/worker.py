"""TensorBoard's pictures, drawn in a second Python process while training goes on.

Drawing the labelled figures with matplotlib costs about as much as the ten epochs of the
default run: importing matplotlib, laying the figure out, then tens of milliseconds an
epoch. A thread would not help: matplotlib holds the interpreter lock while it draws, and
the training loop needs it between every small tensor operation. A process of its own
(see worker_command) draws on another core instead, and it imports neither
torch nor anything of training: numpy, matplotlib and Pillow (for PNG) only.

The protocol is pickle over the worker's stdin and stdout, between two processes of this
package: the trainer sends PictureJobs (numpy arrays) and gets back, for each job and in
order, a Picture (PNG bytes) or a PictureFailure. The worker ends when its stdin does, so it
ends with the trainer (once a forked DataLoader worker, which shares the pipe, is gone too),
and it runs in a session of its own so that Ctrl-C at the terminal stops the trainer (which
decides what to finish) and not the drawing.

TensorBoard shows about ten pictures per tag unless told otherwise (--samples_per_plugin),
so when MAX_BACKLOG or more pictures wait to be drawn (epochs of milliseconds, on a GPU), an
epoch's templates are skipped rather than queued; the last finished epoch's are always drawn.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Images are drawn for TensorBoard's cards (about 350-400 px wide unless enlarged): small
# figures with large type, so class names and counts stay legible when scaled into a card.
IMAGE_DPI = 80
TEMPLATES_SIZE_IN = (5.2, 3.3)
CONFUSION_SIZE_IN = (5.2, 4.9)
MAX_BACKLOG = 8
# How long the end of a run waits for the pictures still being drawn: ample for the few
# tenths of a second they take, bounded so a stuck worker cannot hold the run's exit.
FINISH_TIMEOUT_S = 60.0
STOPPED_FINISH_TIMEOUT_S = 5.0  # after Ctrl-C or SIGTERM, when the user waits for the exit


class PictureError(Exception):
    """The picture worker failed or is gone; the message says how, in one line. `drawn` holds
    the pictures that came back before the failure, so the caller can still write them."""

    def __init__(self, message: str, drawn: list[Picture] | None = None) -> None:
        super().__init__(message)
        self.drawn = drawn or []


@dataclass(frozen=True)
class PictureJob:
    """One figure to draw: the weight templates (values W, 784 x 10, and the input std of a
    standardized model) or the confusion matrix (values: counts, 10 x 10)."""

    kind: str  # "templates" or "confusion"
    tag: str
    step: int
    values: np.ndarray
    class_names: tuple[str, ...]
    input_std: np.ndarray | None = None
    normalize: bool = False


@dataclass(frozen=True)
class Picture:
    tag: str
    step: int
    png: bytes = field(repr=False)
    height: int
    width: int


@dataclass(frozen=True)
class PictureFailure:
    tag: str
    step: int
    reason: str


# --------------------------------------------------------------------------- the trainer's side


def worker_command() -> list[str]:
    """The command that starts the worker: this interpreter, isolated (-I: no current folder,
    no PYTHON* variables on its path, where a stray `softmax_cli/` or `numpy.py` could shadow
    ours), given the trainer's own import path so it loads the very same modules."""
    code = (
        "import json, sys; sys.path[:] = json.loads(sys.argv[1]); from softmax_cli.pictures.worker import main; main()"
    )
    return [sys.executable, "-I", "-c", code, json.dumps([os.path.abspath(entry) for entry in sys.path])]


class PictureWorker:
    """The drawing process, seen from the trainer: submit() never blocks, ready() and finish()
    hand back the pictures drawn so far, in order. A failure raises PictureError.

    Whoever holds it closes it; TensorBoardLogger takes over one it is given.
    """

    max_backlog = MAX_BACKLOG

    def __init__(self) -> None:
        """Start the process. Never raises: a process that cannot start (no memory, no file
        descriptors left) is reported by the first ready() or finish(), like any failure."""
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.pending = 0  # jobs submitted whose picture has not been handed back
        self.submitted = 0
        self._last_words = collections.deque(maxlen=1)  # the worker's last line on stderr
        self._process = None
        try:
            self._process = subprocess.Popen(
                worker_command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # POSIX: the terminal's Ctrl-C goes to the trainer's process group, not here
                # (main() also ignores SIGINT, for systems without sessions).
                start_new_session=True,
            )
            # The pipes are served by threads that block in the kernel, not holding the
            # interpreter lock: a job waiting for a busy worker never stalls an epoch.
            self._listener = threading.Thread(target=self._listen, name="pictures-stderr", daemon=True)
            self._listener.start()
            threading.Thread(target=self._send, name="pictures-send", daemon=True).start()
            threading.Thread(target=self._receive, name="pictures-receive", daemon=True).start()
        except (OSError, RuntimeError) as exc:  # RuntimeError: no thread could start
            self._kill()
            reason = getattr(exc, "strerror", None) or str(exc)
            self._inbox.put(PictureFailure("", 0, f"the picture process could not start: {reason}"))

    def __enter__(self) -> PictureWorker:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def submit(self, job: PictureJob) -> None:
        self.pending += 1
        self.submitted += 1
        self._outbox.put(job)

    def is_behind(self) -> bool:
        """Whether max_backlog or more pictures wait to be drawn (see the module's docstring)."""
        return self.pending >= self.max_backlog

    def ready(self) -> list[Picture]:
        """The pictures drawn since the last call, without waiting."""
        return self._collect(timeout=None)

    def finish(self, timeout: float = FINISH_TIMEOUT_S) -> list[Picture]:
        """Wait (at most `timeout` seconds) for every submitted picture, then let the worker end."""
        try:
            return self._collect(timeout)
        finally:
            self.close()

    def close(self) -> None:
        """End the worker: its stdin closes, so an idle worker ends by itself (not waited for:
        its interpreter's exit takes a tenth of a second); one that was never given a job or
        is still drawing is stopped."""
        self._outbox.put(None)
        if self.pending or not self.submitted:
            self._kill()

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def _collect(self, timeout: float | None) -> list[Picture]:
        pictures = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.pending or self._process is None:
            try:
                if deadline is None:
                    item = self._inbox.get_nowait()
                else:
                    item = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                if deadline is None:
                    break
                raise PictureError(f"the pictures took over {timeout:.0f} s to draw", pictures) from None
            if isinstance(item, PictureFailure):
                reason = f"{item.tag} (step {item.step}): {item.reason}" if item.tag else item.reason
                raise PictureError(reason, pictures)
            self.pending -= 1
            pictures.append(item)
        return pictures

    def _send(self) -> None:
        stdin = self._process.stdin
        try:
            while (job := self._outbox.get()) is not None:
                pickle.dump(job, stdin, protocol=pickle.HIGHEST_PROTOCOL)
                stdin.flush()
        except OSError:
            pass  # the worker is gone; _receive reports how
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _receive(self) -> None:
        stdout = self._process.stdout
        while True:
            try:
                self._inbox.put(pickle.load(stdout))
            except Exception as exc:  # EOF, a broken pipe, a garbled answer: the worker is done for
                if not isinstance(exc, EOFError):
                    self._kill()
                code = self._process.wait()
                self._listener.join(timeout=1)  # until the worker's stderr is read to its end
                last_words = f": {self._last_words[0]}" if self._last_words else ""
                self._inbox.put(PictureFailure("", 0, f"the picture process ended (exit code {code}){last_words}"))
                return

    def _listen(self) -> None:
        # Drained all along, so a chatty worker never blocks on a full pipe; the last line says
        # why a worker died (a missing matplotlib, say). _receive reads it only after wait().
        for line in self._process.stderr:
            text = line.decode(errors="replace").strip()
            if text:
                self._last_words.append(text)


# --------------------------------------------------------------------------- the worker's side


class Drawer:
    """Draws jobs as PNGs, keeping each figure (templates, plain or standardized; confusion,
    counts or normalized) to update and redraw in place (viz.WeightTemplates, viz.ConfusionMatrix)."""

    def __init__(self) -> None:
        self._figures = {}

    def prepare(self, class_names: Sequence[str]) -> None:
        """Lay the confusion figures out now, while the trainer loads torch and trains, rather
        than at the end of the run, which waits for them: then only their contents are redrawn."""
        import numpy as np

        counts = np.diag(np.full(len(class_names), 1000.0))  # the widest colour-bar labels
        for normalize in (False, True):
            confusion = self._figure("confusion", tuple(class_names), normalize)
            confusion.update(counts, "epoch 10")  # a title as long as a run's, give or take a digit
            confusion.pixels()

    def draw(self, job: PictureJob) -> Picture:
        if job.kind == "templates":
            figure = self._figure("templates", job.class_names, job.input_std is not None)
            figure.update(job.values, job.input_std, f"epoch {job.step}")
        elif job.kind == "confusion":
            figure = self._figure("confusion", job.class_names, job.normalize)
            figure.update(job.values, f"epoch {job.step}")
        else:
            raise ValueError(f"no such picture: {job.kind!r}")
        pixels = figure.pixels()
        height, width, _ = pixels.shape
        return Picture(job.tag, job.step, _png(pixels), height, width)

    def _figure(self, kind: str, class_names: tuple[str, ...], variant: bool):
        from softmax_cli.pictures.figures import ConfusionMatrix, WeightTemplates

        key = (kind, variant, class_names)
        if key not in self._figures:
            if kind == "templates":
                self._figures[key] = WeightTemplates(class_names, variant, IMAGE_DPI, TEMPLATES_SIZE_IN)
            else:
                self._figures[key] = ConfusionMatrix(class_names, variant, IMAGE_DPI, CONFUSION_SIZE_IN)
        return self._figures[key]


def _png(pixels) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def serve(source, sink, drawer: Drawer | None = None) -> None:
    """Answer each job read from `source` with its Picture or PictureFailure on `sink`, until `source` ends."""
    drawer = drawer or Drawer()
    while True:
        try:
            job = pickle.load(source)
        except EOFError:
            return
        try:
            answer = drawer.draw(job)
        except Exception as exc:  # reported to the trainer, which says it in one line
            first_line = (str(exc).strip().splitlines() or [""])[0]
            answer = PictureFailure(job.tag, job.step, f"{type(exc).__name__}: {first_line}")
        pickle.dump(answer, sink, protocol=pickle.HIGHEST_PROTOCOL)
        sink.flush()


def main() -> None:
    """The worker process's body (see worker_command)."""
    # The trainer decides when drawing stops (it closes stdin, or kills a stuck worker).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The answers get their own copy of stdout; anything else written to it (a library's
    # stray print) goes to stderr instead of garbling them.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Work done before the first job: a trainer that started this process first (the CLI does)
    # spends the next second loading torch.
    from softmax_cli.data.fashion_mnist import CLASS_NAMES

    drawer = Drawer()
    try:
        drawer.prepare(CLASS_NAMES)
    except Exception:
        pass  # the jobs will meet the same failure and report it
    try:
        serve(sys.stdin.buffer, answers, drawer)
    except BrokenPipeError:
        pass  # the trainer is gone: nobody wants the pictures
