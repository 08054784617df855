"""TensorBoard's pictures, drawn in a second Python process while training goes on.

Drawing the labelled figures with matplotlib costs about as much as the ten epochs of the
default run: importing matplotlib, laying the figure out, then tens of milliseconds an
epoch. A thread would not help: matplotlib holds the interpreter lock while it draws, and
the training loop needs it between every small tensor operation. A process of its own
(`python -m softmax_cli.pictures`) draws on another core instead, and it imports neither
torch nor anything of training: numpy, matplotlib and Pillow (for PNG) only.

The protocol is pickle over the worker's stdin and stdout, between two processes of this
package: the trainer sends PictureJobs (numpy arrays) and gets back, for each job and in
order, a Picture (PNG bytes) or a PictureFailure. The
worker ends when its stdin does, so it never outlives the trainer, and it runs in a session
of its own so that Ctrl-C at the terminal stops the trainer (which decides what to finish)
and not the drawing.

TensorBoard shows about ten pictures per tag unless told otherwise (--samples_per_plugin),
so when the worker falls more than MAX_BACKLOG pictures behind (epochs of milliseconds, on a
GPU), an epoch's templates are skipped rather than queued; the last epoch's is always drawn.
"""

from __future__ import annotations

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
from pathlib import Path
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


class PictureError(Exception):
    """The picture worker failed or is gone; the message says how, in one line."""


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


class PictureWorker:
    """The drawing process, seen from the trainer: submit() never blocks, ready() and finish()
    hand back the pictures drawn so far, in order. A failure raises PictureError."""

    def __init__(self) -> None:
        """Start the process. Never raises: a process that cannot start (no memory, no file
        descriptors left) is reported by the first ready() or finish(), like any failure."""
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.pending = 0  # jobs submitted whose picture has not been handed back
        package_root = str(Path(__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "softmax_cli.pictures"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # failures come back as PictureFailures, one line each
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            self._process = None
            self._inbox.put(PictureFailure("", 0, f"the picture process could not start: {exc.strerror or exc}"))
            return
        # The pipes are served by threads that block in the kernel, not holding the
        # interpreter lock: a job waiting for a busy worker never stalls an epoch.
        threading.Thread(target=self._send, name="pictures-send", daemon=True).start()
        threading.Thread(target=self._receive, name="pictures-receive", daemon=True).start()

    def __enter__(self) -> PictureWorker:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def submit(self, job: PictureJob) -> None:
        self.pending += 1
        self._outbox.put(job)

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
        its interpreter's exit takes a tenth of a second); one still drawing is stopped."""
        self._outbox.put(None)
        if self._process is not None and self.pending and self._process.poll() is None:
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
                raise PictureError(f"the pictures took over {timeout:.0f} s to draw") from None
            if isinstance(item, PictureFailure):
                raise PictureError(f"{item.tag} (step {item.step}): {item.reason}" if item.tag else item.reason)
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
            except Exception:  # EOF, a broken pipe, a garbled answer: the process is gone or going
                code = self._process.wait()
                self._inbox.put(PictureFailure("", 0, f"the picture process ended (exit code {code})"))
                return


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
        from softmax_cli.viz import ConfusionMatrix, WeightTemplates

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
    """The worker process's body."""
    # The trainer decides when drawing stops (it closes stdin, or kills a stuck worker).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Work done before the first job: a trainer that started this process first (the CLI does)
    # spends the next second loading torch.
    from softmax_cli.fashion_mnist import CLASS_NAMES

    drawer = Drawer()
    try:
        drawer.prepare(CLASS_NAMES)
    except Exception:
        pass  # the jobs will meet the same failure and report it
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer, drawer)
    except BrokenPipeError:
        pass  # the trainer is gone: nobody wants the pictures


if __name__ == "__main__":
    # Run through the package's module, so the pickled Pictures name softmax_cli.pictures, not __main__.
    from softmax_cli import pictures

    pictures.main()
