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
the peak resident memory of this process while the row ran, where the high-water mark
can be reset (Linux), else this process's peak so far.

No torch at import time, never prints, knows nothing of Typer or Rich.
"""

from __future__ import annotations

import itertools
import math
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

from softmax_cli.config import DEFAULT_SEED

BOOK_LR = 0.1
WARMUP_EPOCHS = 1

Progress = Optional[Callable[[str], None]]


@dataclass
class BenchSettings:
    """What one run measures with; plain values only, so that it reads as JSON."""

    data_dir: Path
    device: str  # a resolved device string: "cpu", "cuda", "cuda:1", "mps"
    batch_size: int = 256
    epochs: int = 3
    workers: int = 4
    lr: float = BOOK_LR
    seed: int = DEFAULT_SEED


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


def lightest_first(rows: list[RowSpec]) -> list[RowSpec]:
    """The order to run rows in one process: what each row imports, every later row imports too.

    The data alone needs torch; scratch adds the model; concise adds torch.optim's SGD (which
    imports torch._dynamo); the book's rows add torchvision. Modules stay loaded, so a heavy
    row run first would count its imports in every lighter row's memory.
    """
    weight = {None: 0, "scratch": 1, "concise": 2}
    return sorted(rows, key=lambda row: (row.loader == "dataloader", weight[row.impl]))


# ---------------------------------------------------------------------------------------
# Memory (Linux /proc where it exists)


def vmhwm_mib(pid: str = "self") -> Optional[float]:
    """The peak resident memory (VmHWM) of process `pid` in MiB, or None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_mib() -> float:
    """This process's peak RSS (MiB): VmHWM where it exists, else ru_maxrss.

    On Linux ru_maxrss survives execve (a child of a 700 MiB process reports at least
    700 MiB) and cannot be reset; VmHWM starts afresh at exec and reset_peak_rss resets it.
    """
    peak = vmhwm_mib()
    if peak is not None:
        return peak
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / (1024 * 1024) if sys.platform == "darwin" else value / 1024  # macOS bytes, Linux KiB


def reset_peak_rss() -> bool:
    """Bring this process's peak RSS down to its current RSS (Linux 4.0+); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------
# Timing one row


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
    """Time `spec` in this process: setup, one warm-up epoch, then settings.epochs timed epochs.

    progress, if given, hears of every epoch while it is still set up (DataLoader workers alive).
    """
    import torch

    if spec.loader == "dataloader":
        import torchvision  # noqa: F401  (the book's pipeline: its import counts as the row's, not its setup)

    from softmax_cli.config import Hparams
    from softmax_cli.data import batches as data
    from softmax_cli.models import make_model

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
    for i in range(WARMUP_EPOCHS + settings.epochs):
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
    }
