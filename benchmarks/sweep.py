"""What training a grid together saves: a `softmax sweep` against its `softmax train` processes, stacked epochs."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

# Two measurements, each alternating its two sides so that load from other processes falls on both:
#
# * Whole processes: one `softmax sweep` of a grid (4 learning rates x 4 weight decays, 5 epochs)
#   against one `softmax train --impl scratch` process per configuration with the same settings,
#   every process timed from start to exit (imports, data, training, evaluation, checkpoints,
#   TensorBoard). The sweep runs before, between and after the two halves of the train processes;
#   its median is compared with the train processes' total. Both sides' final metrics are compared
#   too: each configuration of the sweep must equal its own run.
# * Training epochs in this process: one `softmax train` epoch (ScratchSoftmax, training.train_epoch)
#   against one epoch of K stacked configurations (StackedSoftmax) on the same batches, for each K,
#   round after round after a warm-up round; medians per side.
#
# Run as `python benchmarks/sweep.py --data-dir DIR`; --quick is a small smoke run.

Progress = Optional[Callable[[str], None]]


@dataclass
class SweepBenchSettings:
    data_dir: Path
    device: str
    lrs: tuple = (0.01, 0.03, 0.1, 0.3)
    weight_decays: tuple = (0.0, 1e-4, 1e-3, 1e-2)
    epochs: int = 5  # of every sweep and train process
    k_values: tuple = (1, 16, 64)
    rounds: int = 3  # timed rounds of stacked epochs, after one warm-up round
    batch_size: int = 256
    threads: Optional[int] = None
    quick: bool = False
    max_batches: Optional[int] = None  # per stacked epoch; set by quick
    commands: list = field(default_factory=list)  # filled in: the commands the processes ran

    @classmethod
    def for_run(cls, data_dir: Path, device: str, batch_size: int, rounds: Optional[int], threads, quick: bool):
        """The targets' settings, or a small smoke run with quick; a GPU adds K = 1024."""
        k_values = (1, 4) if quick else (1, 16, 64, 1024) if device.startswith("cuda") else (1, 16, 64)
        return cls(
            data_dir=data_dir,
            device=device,
            lrs=(0.03, 0.3) if quick else cls.lrs,
            weight_decays=(0.0,) if quick else cls.weight_decays,
            epochs=1 if quick else cls.epochs,
            k_values=k_values,
            rounds=rounds or (1 if quick else cls.rounds),
            batch_size=batch_size,
            threads=threads,
            quick=quick,
            max_batches=20 if quick else None,
        )


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


# ---------------------------------------------------------------------------------------
# Whole processes


def _run_process(argv: list[str], what: str, threads: Optional[int]) -> tuple[float, dict]:
    # --threads reaches the processes as OMP_NUM_THREADS, which sets torch's intra-op threads at start-up.
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    except OSError as exc:
        raise SystemExit(f"cannot start {what}: {exc}") from None
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise SystemExit(f"{what} failed (exit {done.returncode}): {tail}")
    return seconds, json.loads(done.stdout)


def measure_processes(settings: SweepBenchSettings, progress: Progress = None) -> dict:
    """Seconds of one `softmax sweep` process (median of up to 3) against the total of the
    `softmax train` processes of the same grid, run alternately; and how far their results differ."""
    say = progress or (lambda message: None)
    base = [sys.executable, "-m", "softmax_cli"]
    grid = [(lr, wd) for lr in settings.lrs for wd in settings.weight_decays]
    with tempfile.TemporaryDirectory(prefix="softmax-bench-sweep-") as scratch:
        common = ["--data-dir", str(settings.data_dir), "--device", settings.device, "--runs-dir", scratch,
                  "--epochs", str(settings.epochs), "--batch-size", str(settings.batch_size), "--json"]  # fmt: skip
        sweep_argv = base + ["sweep", *common, "--lr", ",".join(map(repr, settings.lrs)),
                             "--weight-decay", ",".join(map(repr, settings.weight_decays))]  # fmt: skip
        train_argvs = [base + ["train", "--impl", "scratch", "--val-split", "0.1", *common, "--lr", repr(lr),
                               "--weight-decay", repr(wd)] for lr, wd in grid]  # fmt: skip
        public = ["--data-dir", str(settings.data_dir), "--device", settings.device, "--epochs", str(settings.epochs),
                  "--batch-size", str(settings.batch_size)]  # fmt: skip
        settings.commands = [
            " ".join(["softmax", "sweep", *public, *sweep_argv[-4:]]),
            " ".join(["softmax", "train", "--impl", "scratch", "--val-split", "0.1", *public, "--lr", "LR",
                      "--weight-decay", "WD"]),
        ]  # fmt: skip
        # Sweep, half of the train processes, sweep, the other half, sweep: load that comes and goes
        # falls on both sides. A quick run times one sweep and then its train processes.
        half = len(grid) // 2
        plan = [None, train_argvs] if settings.quick else [None, train_argvs[:half], None, train_argvs[half:], None]
        sweep_seconds, train_seconds, sweep_payload, train_finals = [], [], None, []
        for step in plan:
            if step is None:
                say(f"`softmax sweep` of {len(grid)} configurations ({len(sweep_seconds) + 1}) ...")
                seconds, sweep_payload = _run_process(sweep_argv, "softmax sweep", settings.threads)
                sweep_seconds.append(seconds)
                continue
            for argv in step:
                say(f"`softmax train` process {len(train_seconds) + 1}/{len(grid)} ...")
                seconds, payload = _run_process(argv, "softmax train", settings.threads)
                train_seconds.append(seconds)
                train_finals.append(payload["history"][-1])
    by_setting = {(c["hparams"]["lr"], c["hparams"]["weight_decay"]): c["final"] for c in sweep_payload["configs"]}
    diffs = {
        setting: max(abs(by_setting[setting][key] - final[key]) for key in ("val_acc", "test_acc", "train_loss"))
        for setting, final in zip(grid, train_finals, strict=True)
    }
    sweep_median = statistics.median(sweep_seconds)
    return {
        "configs": len(grid),
        "epochs": settings.epochs,
        "sweep_seconds": sweep_seconds,
        "sweep_median_s": sweep_median,
        "train_seconds": train_seconds,
        "train_total_s": sum(train_seconds),
        "train_median_s": statistics.median(train_seconds),
        "ratio": sweep_median / sum(train_seconds),
        # Float rounding only, except where a learning rate makes the loss oscillate: there any two
        # implementations part ways (`softmax compare` shows it between scratch and concise).
        "max_metric_diff": max(diffs.values()),
        "agreeing_within_1e-4": sum(diff <= 1e-4 for diff in diffs.values()),
        "differing": [
            {"lr": lr, "weight_decay": wd, "max_metric_diff": diff} for (lr, wd), diff in diffs.items() if diff > 1e-4
        ],  # fmt: skip
    }


# ---------------------------------------------------------------------------------------
# Training epochs in this process


def _stacked_configs(k: int, batch_size: int):
    """K configurations of one group: learning rates spread over 0.01-0.3 (log scale) and four weight decays."""
    from softmax_cli.config import Hparams
    from softmax_cli.sweep.grid import group_configs

    decays = (0.0, 1e-4, 1e-3, 1e-2)
    configs = [
        Hparams(
            lr=0.01 * 30 ** ((i // len(decays)) / max(1, (k - 1) // len(decays))),
            weight_decay=decays[i % 4],
            batch_size=batch_size,
        )  # fmt: skip
        for i in range(k)
    ]
    return [configs[i] for i in group_configs(configs)[0]]


def measure_stacked_epochs(settings: SweepBenchSettings, progress: Progress = None) -> dict:
    """Median seconds of one `softmax train` epoch and of one epoch of K stacked configurations,
    alternated round by round on the same batches (the training pass only)."""
    import torch

    from softmax_cli.bench.pipelines import synchronize
    from softmax_cli.config import Hparams
    from softmax_cli.data import batches as data
    from softmax_cli.models import make_model
    from softmax_cli.sweep.model import StackedSoftmax
    from softmax_cli.training import train_epoch

    say = progress or (lambda message: None)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    generator = torch.Generator(device=device).manual_seed(1)
    batches = data.MemoryBatches(
        data.read_split(settings.data_dir, "train"), settings.batch_size, device, shuffle=True, generator=generator
    )
    if settings.max_batches:
        batches = CappedBatches(batches, settings.max_batches, settings.batch_size)
    single_hparams = Hparams(impl="scratch", batch_size=settings.batch_size)
    single, single_lr = make_model(single_hparams, device), single_hparams.lr
    stacks = {k: StackedSoftmax(_stacked_configs(k, settings.batch_size), device) for k in settings.k_values}
    sides = {"single": lambda: train_epoch(single, batches, itertools.repeat(single_lr))}
    for k, model in stacks.items():
        lrs = model.learning_rates(0, len(batches))
        sides[k] = lambda model=model, lrs=lrs: train_epoch(model, batches, lrs)
    seconds: dict = {side: [] for side in sides}
    for round_index in range(1 + settings.rounds):
        for side, run_epoch in sides.items():
            synchronize(device)
            started = time.perf_counter()
            run_epoch()
            synchronize(device)
            if round_index:  # round 0 warms up
                seconds[side].append(time.perf_counter() - started)
        say(f"stacked epochs: round {round_index + 1}/{1 + settings.rounds}")
    single_s = statistics.median(seconds["single"])
    rows = []
    for k in settings.k_values:
        epoch_s = statistics.median(seconds[k])
        rows.append({"k": k, "seconds_per_epoch": epoch_s, "seconds_per_config": epoch_s / k, "epoch_seconds":
                     seconds[k], "speedup_per_config": single_s / (epoch_s / k)})  # fmt: skip
    return {"single_seconds_per_epoch": single_s, "single_epoch_seconds": seconds["single"], "stacked": rows,
            "batches_per_epoch": len(batches), "torch_threads": torch.get_num_threads()}  # fmt: skip


# ---------------------------------------------------------------------------------------
# The whole run


def sweep_targets(processes: dict, epochs: dict, device: str) -> list[dict]:
    """The issue's targets that this run can check, with the measured values."""
    targets = [
        {"target": f"a {processes['configs']}-configuration sweep <= 1/8 of its separate train processes",
         "value": processes["ratio"], "limit": 1 / 8, "met": processes["ratio"] <= 1 / 8},
    ]  # fmt: skip
    by_k = {row["k"]: row for row in epochs["stacked"]}
    if 64 in by_k:
        value = by_k[64]["seconds_per_config"] / epochs["single_seconds_per_epoch"]
        targets.append({"target": "K = 64: time per configuration <= 1/6 of one run's epoch", "value": value,
                        "limit": 1 / 6, "met": value <= 1 / 6})  # fmt: skip
    if 1024 in by_k and device.startswith("cuda"):
        value = by_k[1024]["seconds_per_epoch"] / epochs["single_seconds_per_epoch"]
        targets.append({"target": "GPU, K = 1024: epoch <= 3x one run's epoch", "value": value, "limit": 3.0,
                        "met": value <= 3.0})  # fmt: skip
    return targets


def run_sweep_bench(settings: SweepBenchSettings, progress: Progress = None) -> dict:
    """Both measurements and the targets, as one JSON-ready dict."""
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    epochs = measure_stacked_epochs(settings, progress)
    processes = measure_processes(settings, progress)
    try:
        load_end = os.getloadavg()
    except OSError:
        load_end = None
    settings_json = {**asdict(settings), "data_dir": str(settings.data_dir)}
    return {
        "settings": settings_json,
        "processes": processes,
        "epochs": epochs,
        "targets": [] if settings.quick else sweep_targets(processes, epochs, settings.device),
        "environment": {
            "cpu_count": os.cpu_count(),
            "loadavg": load,
            "loadavg_end": load_end,
            "torch_threads": settings.threads,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        },  # fmt: skip
    }


# ---------------------------------------------------------------------------------------
# Report


def describe(payload: dict) -> list[str]:
    """The measurements in plain lines: stacked epochs against one run's, then whole processes."""
    s, epochs, processes = payload["settings"], payload["epochs"], payload["processes"]
    capped = f", at most {s['max_batches']} batches" if s.get("max_batches") else ""
    single = epochs["single_seconds_per_epoch"]
    lines = [
        f"Training epochs on {s['device']}, batch {s['batch_size']}{capped}: median of {s['rounds']} rounds, "
        "alternated (training pass only)",
        f"  1 (softmax train): {single:.3f} s/epoch",
    ]
    for row in epochs["stacked"]:
        lines.append(
            f"  {row['k']} stacked: {row['seconds_per_epoch']:.3f} s/epoch, {row['seconds_per_config']:.4f} s per "
            f"configuration ({row['speedup_per_config']:.1f}x cheaper)"
        )
    n = processes["configs"]
    sweep_runs = ", ".join(f"{t:.1f}" for t in processes["sweep_seconds"])
    lines.append(
        f"Whole processes, {n} configurations x {processes['epochs']} epochs: one `softmax sweep` "
        f"{processes['sweep_median_s']:.1f} s (median of {sweep_runs}) against {n} `softmax train` processes "
        f"{processes['train_total_s']:.1f} s in total ({processes['train_median_s']:.1f} s each, median): "
        f"{processes['ratio']:.3f}x the time ({1 / processes['ratio']:.1f}x faster)"
    )
    lines.append(
        f"{processes['agreeing_within_1e-4']} of {n} configurations end with the same train loss, val acc and "
        "test acc as their own process (within 1e-4)"
    )
    for differing in processes["differing"]:
        lines.append(
            f"  lr {differing['lr']:g}, weight decay {differing['weight_decay']:g}: differs by "
            f"{differing['max_metric_diff']:.3f}"
        )
    for target in payload["targets"]:
        lines.append(f"target: {target['target']}: {target['value']:.3f} ({'met' if target['met'] else 'missed'})")
    env = payload["environment"]
    if env.get("loadavg") and env.get("loadavg_end"):
        lines.append(f"load average {env['loadavg'][0]:.2f} at the start, {env['loadavg_end'][0]:.2f} at the end")
    if s.get("quick"):
        lines.append("--quick: a small smoke run; these figures are not a benchmark")
    return lines


def main() -> None:
    from softmax_cli.data.paths import resolve_data_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data-dir", type=Path, help="the folder of the four .gz files (default: the tool's own)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, help="timed rounds of stacked epochs (default: 3; 1 with --quick)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads, here and in every process (OMP_NUM_THREADS; default 1, as the command line)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 configurations, 1 epoch, K = 1 and 4")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout instead of the lines")
    args = parser.parse_args()
    settings = SweepBenchSettings.for_run(
        resolve_data_dir(args.data_dir), args.device, args.batch_size, args.rounds, args.threads, args.quick
    )
    payload = run_sweep_bench(settings, progress=lambda message: print(message, file=sys.stderr))
    print(json.dumps(payload) if args.json else "\n".join(describe(payload)))


if __name__ == "__main__":
    main()
