"""What `softmax bench` measures: the rows, and timing one of them in the current process.

Rows (N = --workers):

* book-w0, book-wN: torchvision FashionMNIST + ToTensor + DataLoader(num_workers=...),
  the concise model, and the project's training loop (losses summed on the device).
* article-wN: the same pipeline with the book's d2l loop, which reads every batch's
  loss and accuracy back with float(), one host sync per batch.
* memory-data: the memory loader alone (draw, index, cast), no model.
* memory-concise, memory-scratch: both implementations on the memory loader.

`measure_row` trains one warm-up epoch, then `settings.epochs` timed epochs, and
reports the *median* timed epoch (the training pass only: no test evaluation, no
checkpoint, no TensorBoard). On CUDA/MPS the device is synchronised before every clock
read, so queued kernels are counted in the epoch that launched them. It also reports
the memory the row's own process used (VmHWM, which starts afresh at exec, unlike
ru_maxrss) and the largest peak of its DataLoader workers.

Apart from the harness in softmax_cli.bench.measure (settings, subprocesses, the whole run) so
that each side reads on its own; this module does not import softmax_cli.bench.measure, so the
row worker `python -m softmax_cli.bench.measure row ...` loads each module once. No torch at
import time, never prints, knows nothing of Typer or Rich.
"""

from __future__ import annotations

import itertools
import math
import os
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Optional

from softmax_cli.config import DEFAULT_SEED

BOOK_LR = 0.1


@dataclass
class BenchSettings:
    """What one run measures with; it travels to every isolated row as JSON, so plain values only."""

    data_dir: Path
    device: str  # a resolved device string: "cpu", "cuda", "cuda:1", "mps"
    batch_size: int = 256
    epochs: int = 3
    workers: int = 4
    quick: bool = False
    isolate: bool = True
    max_batches: Optional[int] = None  # cap per epoch; set by quick
    lr: float = BOOK_LR
    seed: int = DEFAULT_SEED
    threads: Optional[int] = None  # torch.set_num_threads in each row; None keeps torch's default
    startup_only: bool = False  # no rows, imports or --help: the start-up probes alone


Progress = Optional[Callable[[str], None]]

WARMUP_EPOCHS = 1


@dataclass(frozen=True)
class RowSpec:
    """One configuration to time."""

    key: str
    label: str
    loader: str  # "dataloader" or "memory"
    impl: Optional[str]  # "concise", "scratch", or None for the data path alone
    workers: int = 0
    per_batch_sync: bool = False


def plan_rows(workers: int) -> list[RowSpec]:
    """The rows, in display order; with --workers 0 the two book rows collapse into one."""
    rows = [RowSpec("book-w0", "book, 0 workers", "dataloader", "concise", 0)]
    if workers > 0:
        rows.append(RowSpec(f"book-w{workers}", f"book, {workers} workers", "dataloader", "concise", workers))
    rows += [
        RowSpec(
            f"article-w{workers}",
            f"book (per-batch float sync), {workers} workers",
            "dataloader",
            "concise",
            workers,
            per_batch_sync=True,
        ),
        RowSpec("memory-data", "memory loader, data only", "memory", None),
        RowSpec("memory-concise", "memory loader, concise", "memory", "concise"),
        RowSpec("memory-scratch", "memory loader, scratch", "memory", "scratch"),
    ]
    return rows


# ---------------------------------------------------------------------------------------
# Memory probes (Linux /proc where it exists)


def _vmhwm_mib(pid: str) -> Optional[float]:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _child_pids() -> list[str]:
    """Live children of this process, from /proc/<pid>/stat (Linux); [] elsewhere."""
    me, children = os.getpid(), []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for pid in entries:
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(me):
            children.append(pid)
    return children


def children_peak_rss_mib() -> Optional[float]:
    """The largest peak RSS among this process's live children (the DataLoader workers), Linux only.

    Not RUSAGE_CHILDREN: that also counts helpers that torch's import runs, which
    inherit their parent's high-water mark through execve.
    """
    peaks = [peak for peak in map(_vmhwm_mib, _child_pids()) if peak is not None]
    return max(peaks) if peaks else None


def _maxrss_mib(who: int) -> float:
    value = resource.getrusage(who).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return value / (1024 * 1024) if sys.platform == "darwin" else value / 1024


def peak_rss_mib() -> float:
    """This process's own peak RSS (MiB).

    On Linux ru_maxrss survives execve: a child started by a 700 MiB process that has
    imported torch reports at least 700 MiB whatever it does itself. VmHWM belongs to
    the current address space, so it starts afresh at exec; use it where it exists.
    """
    peak = _vmhwm_mib("self")
    return peak if peak is not None else _maxrss_mib(resource.RUSAGE_SELF)


# ---------------------------------------------------------------------------------------
# Timing one row


class CappedBatches:
    """At most `max_batches` batches of an iterator of batches, with num_examples to match."""

    def __init__(self, batches, max_batches: int, batch_size: int) -> None:
        self.batches = batches
        self.max_batches = max_batches
        self.num_examples = min(batches.num_examples, max_batches * batch_size)

    def __len__(self) -> int:
        return min(len(self.batches), self.max_batches)

    def __iter__(self) -> Iterator:
        for i, batch in enumerate(self.batches):
            if i >= self.max_batches:
                break
            yield batch


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _memory_epoch(model, batches, lr: float) -> tuple[float, float]:
    """training.train_epoch at a constant rate, its sums read back once at the end, as fit reads them."""
    from softmax_cli.training import train_epoch

    loss_sum, correct = train_epoch(model, batches, itertools.repeat(lr))
    return loss_sum.item() / batches.num_examples, correct.item() / batches.num_examples


def _article_epoch(model, batches, lr: float) -> tuple[float, float]:
    """The book's d2l train_epoch_ch3: every batch's loss and accuracy read back with float()."""
    loss_sum = correct = count = 0.0
    for X, y in batches:
        losses, y_hat = model.train_step(X, y, lr)
        loss_sum += float(losses.sum())
        correct += float((y_hat.argmax(1).type(y.dtype) == y).sum())
        count += y.numel()
    return loss_sum / count, correct / count


def _data_epoch(batches) -> tuple[float, float]:
    """The loader alone: every batch is produced (and, on CPU, materialised) but not used."""
    n = 0
    for X, _ in batches:
        n += X.shape[0]
    return 0.0, float(n)


def measure_row(spec: RowSpec, settings: BenchSettings, progress: Progress = None) -> dict:
    """Time `spec` in this process: setup, one warm-up epoch, then settings.epochs timed epochs."""
    import torch

    if spec.loader == "dataloader":
        import torchvision  # noqa: F401  (the book's pipeline: its import counts as the row's, not its setup)

    from softmax_cli.config import Hparams
    from softmax_cli.data import batches as data
    from softmax_cli.models import make_model

    if settings.threads:
        torch.set_num_threads(settings.threads)
    rss_after_imports = peak_rss_mib()
    device = torch.device(settings.device)
    torch.manual_seed(settings.seed)
    started = time.perf_counter()
    if spec.loader == "memory":
        generator = torch.Generator(device=device).manual_seed(settings.seed)
        batches = data.MemoryBatches(
            data.read_split(settings.data_dir, "train"), settings.batch_size, device, shuffle=True, generator=generator
        )
    else:
        generator = torch.Generator().manual_seed(settings.seed)
        batches = data.DataLoaderBatches(
            settings.data_dir,
            "train",
            settings.batch_size,
            device,
            shuffle=True,
            workers=spec.workers,
            generator=generator,
        )
    if settings.max_batches:
        batches = CappedBatches(batches, settings.max_batches, settings.batch_size)
    model = None
    if spec.impl is not None:
        hparams = Hparams(
            impl=spec.impl, lr=settings.lr, batch_size=settings.batch_size, seed=settings.seed, loader=spec.loader
        )
        model = make_model(hparams, device)
    synchronize(device)
    setup_seconds = time.perf_counter() - started

    if model is None:
        run_epoch = partial(_data_epoch, batches)
    elif spec.per_batch_sync:
        run_epoch = partial(_article_epoch, model, batches, settings.lr)
    else:
        run_epoch = partial(_memory_epoch, model, batches, settings.lr)

    seconds: list[float] = []
    warmup_seconds = 0.0
    last_loss = None
    total = WARMUP_EPOCHS + settings.epochs
    for i in range(total):
        synchronize(device)
        t0 = time.perf_counter()
        loss, _ = run_epoch()
        synchronize(device)
        elapsed = time.perf_counter() - t0
        if i < WARMUP_EPOCHS:
            warmup_seconds += elapsed
        else:
            seconds.append(elapsed)
        last_loss = loss if model is not None else None
        if progress is not None:
            what = "warm-up" if i < WARMUP_EPOCHS else f"epoch {i - WARMUP_EPOCHS + 1}/{settings.epochs}"
            progress(f"{spec.label}: {what} {elapsed:.3f} s")

    workers_peak = children_peak_rss_mib() if spec.workers else None  # before the workers end
    examples = batches.num_examples
    n_batches = len(batches)
    del batches, model, run_epoch  # ends persistent DataLoader workers before the next row
    import gc

    gc.collect()
    per_epoch = statistics.median(seconds)
    return {
        **asdict(spec),
        "device": str(device),
        "examples_per_epoch": examples,
        "batches_per_epoch": n_batches,
        "setup_seconds": setup_seconds,
        "warmup_seconds": warmup_seconds,
        "epoch_seconds": seconds,
        "seconds_per_epoch": per_epoch,
        "seconds_mean": statistics.fmean(seconds),
        "seconds_min": min(seconds),
        "examples_per_s": examples / per_epoch if per_epoch > 0 else None,
        "final_train_loss": last_loss if last_loss is not None and math.isfinite(last_loss) else None,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mib": peak_rss_mib(),
        "rss_after_imports_mib": rss_after_imports,
        "workers_peak_rss_mib": workers_peak,
    }
