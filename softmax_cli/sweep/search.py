"""`softmax sweep`'s body: train a grid of configurations in as few passes over the data as possible.

Reads top-down: run_sweep() trains the groups of sweep_grid.group_configs one after another;
train_group() prepares a group's data exactly as training.fit would for each of its
configurations (same validation split, standardisation statistics and batch order) and
trains them together with sweep_model.StackedSoftmax, evaluating every configuration on the
validation and test splits after each epoch. A configuration whose loss or weights become
NaN or infinite is marked diverged in that epoch and drops out; the others go on.

The best configuration is chosen on validation accuracy (then validation loss), never on
test accuracy, and saved with training.save_training_checkpoint in the standard checkpoint
format, with a run summary, so `eval`, `predict`, `runs` and `train --resume` accept it.
It reports through SweepCallbacks and never prints or knows the command line.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from softmax_cli import stops
from softmax_cli.atomic import atomic_write
from softmax_cli.config import Hparams
from softmax_cli.data.batches import class_names, prepare_data
from softmax_cli.models import make_model
from softmax_cli.runs import folders as runs
from softmax_cli.sweep.grid import available_host_memory, config_tag, group_configs, varying
from softmax_cli.sweep.model import StackedSoftmax
from softmax_cli.training import EpochMetrics, save_training_checkpoint, shuffle_generator_for, train_epoch

SWEEP_JSON = "sweep.json"


@dataclass
class ConfigResult:
    """One configuration of the grid: its settings, its per-epoch history, and how it ended."""

    index: int  # position in the grid
    hparams: Hparams
    tag: str
    history: list[dict] = field(default_factory=list)
    diverged_epoch: int | None = None
    val_loss: float | None = None  # the last epoch's mean validation cross-entropy: the tie-breaker
    log_dir: Path | None = None
    checkpoint: Path | None = None

    @property
    def diverged(self) -> bool:
        return self.diverged_epoch is not None

    @property
    def final(self) -> dict | None:
        """The last completed epoch's entry (for a diverged configuration, the last good one)."""
        return self.history[-1] if self.history else None

    def rank_key(self) -> tuple:
        """Best first: not diverged, highest validation accuracy, then lowest validation loss, then grid order."""
        if self.diverged or self.final is None:
            return (1, 0.0, 0.0, self.index)
        return (0, -self.final["val_acc"], self.val_loss, self.index)

    def as_dict(self) -> dict:
        return {
            "tag": self.tag,
            "hparams": self.hparams.as_dict(),
            "final": self.final,
            "val_loss": self.val_loss,
            "diverged": self.diverged,
            "diverged_epoch": self.diverged_epoch,
            "history": self.history,
            "log_dir": None if self.log_dir is None else str(self.log_dir),
            "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
        }


@dataclass
class GroupPlan:
    """What a group is about to train: shown by the progress display."""

    index: int
    groups: int
    configs: list[ConfigResult]
    epochs: int
    batches_per_epoch: int
    train_examples: int
    batch_size: int
    seed: int


@dataclass
class BestSnapshot:
    """Everything the best configuration's checkpoint needs, kept when its group ends."""

    result: ConfigResult
    weight: torch.Tensor
    bias: torch.Tensor
    optimizer_state: dict | None
    shuffle_state: torch.Tensor
    train_examples: int
    input_stats: tuple[torch.Tensor, torch.Tensor] | None


@dataclass
class SweepResult:
    configs: list[ConfigResult]  # the configurations trained to the end (or diverged), in grid order
    planned: int
    groups: int
    device: torch.device
    run_dir: Path
    seconds: float = 0.0
    started: str = ""
    interrupted: bool = False
    best_snapshot: BestSnapshot | None = None
    checkpoint: Path | None = None
    plot: Path | None = None
    name: str | None = None  # the sweep's name (--name), its folder's

    @property
    def ranked(self) -> list[ConfigResult]:
        return sorted(self.configs, key=ConfigResult.rank_key)

    @property
    def best(self) -> ConfigResult | None:
        return self.best_snapshot.result if self.best_snapshot else None

    def as_dict(self, reproduce: str | None = None) -> dict:
        """The --json payload (and sweep.json): configurations best first, the best one, the grid."""
        ranked = self.ranked
        best = self.best
        return runs.json_safe(
            {
                "configs": [c.as_dict() for c in ranked],
                "best": None if best is None else best.as_dict(),
                "chosen_on": "val_acc",
                "varying": varying([c.hparams for c in self.configs]) if self.configs else [],
                "planned": self.planned,
                "trained": len(self.configs),
                "diverged": sum(c.diverged for c in self.configs),
                "groups": self.groups,
                "device": str(self.device),
                "seconds": self.seconds,
                "run_dir": str(self.run_dir),
                "name": self.name,
                "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
                "plot": None if self.plot is None else str(self.plot),
                "reproduce": reproduce,
                "interrupted": self.interrupted,
            }
        )


class SweepCallbacks:
    """Hooks the sweep reports through; the CLI supplies a Rich display and a TensorBoard writer."""

    def on_group_start(self, plan: GroupPlan) -> None: ...
    def on_batch_end(self) -> None: ...
    def on_epoch_end(self, plan: GroupPlan, epoch: int, model: StackedSoftmax) -> None: ...
    def on_group_end(self, plan: GroupPlan, model: StackedSoftmax) -> None: ...
    def on_results(self, result: SweepResult) -> None:
        """The result so far, once a group's configurations are in it: the moment to keep them on disk."""


def run_sweep(
    configs: list[Hparams],
    data_dir: Path,
    device: torch.device,
    run_dir: Path,
    callbacks: SweepCallbacks | None = None,
) -> SweepResult:
    """Train every configuration, a group of shared batches at a time, and keep the best one's state.

    Ctrl-C ends the sweep cleanly: the groups already finished are the result (interrupted=True).
    A stop arriving while a group ends (its logs and files written by on_group_end, on_results)
    takes effect once they are written.
    """
    callbacks = callbacks or SweepCallbacks()
    groups = group_configs(configs)
    result = SweepResult(configs=[], planned=len(configs), groups=len(groups), device=device, run_dir=run_dir)
    result.started = _now()
    started = time.perf_counter()
    try:
        for group_index, indices in enumerate(groups):
            members = [ConfigResult(i, configs[i], config_tag(configs[i])) for i in indices]
            for member in members:
                member.log_dir = run_dir / member.tag
            plan, model, snapshot = train_group(members, group_index, len(groups), data_dir, device, callbacks)
            # A group ends as a whole (a stop waits for it, softmax_cli.stops): its runs logged, its
            # configurations in the result, and the result kept on disk by on_results.
            with stops.uninterrupted():
                callbacks.on_group_end(plan, model)
                result.configs = sorted([*result.configs, *members], key=lambda c: c.index)
                if snapshot is not None and (
                    result.best_snapshot is None or snapshot.result.rank_key() < result.best_snapshot.result.rank_key()
                ):
                    result.best_snapshot = snapshot
                result.seconds = time.perf_counter() - started
                callbacks.on_results(result)
    except KeyboardInterrupt:
        result.interrupted = True
    result.seconds = time.perf_counter() - started
    return result


def train_group(
    members: list[ConfigResult],
    group_index: int,
    groups: int,
    data_dir: Path,
    device: torch.device,
    callbacks: SweepCallbacks,
) -> tuple[GroupPlan, StackedSoftmax, BestSnapshot | None]:
    """Train one group's configurations together; fill in their histories; snapshot the group's best.

    Returns the plan, the trained model (for on_group_end, which run_sweep calls) and the snapshot."""
    configs = [member.hparams for member in members]
    first = configs[0]
    shuffle_generator = shuffle_generator_for(first, device)
    data = prepare_data(first, data_dir, device, 0, shuffle_generator, resuming=False)
    model = StackedSoftmax(configs, device, data.input_stats)
    batches, n_train = len(data.train), data.train.num_examples
    plan = GroupPlan(group_index, groups, members, first.epochs, batches, n_train, first.batch_size, first.seed)
    callbacks.on_group_start(plan)
    for epoch_index in range(first.epochs):
        epoch = epoch_index + 1
        started = time.perf_counter()
        learning_rates = model.learning_rates(epoch_index, batches)
        loss_sum, correct = train_epoch(model, data.train, learning_rates, callbacks.on_batch_end)
        train_seconds = time.perf_counter() - started
        finite = model.finite() & torch.isfinite(loss_sum)
        test_loss, test_correct, n_test = model.evaluate(data.test)
        val_loss, val_correct, n_val = model.evaluate(data.validation)
        seconds = time.perf_counter() - started
        # One transfer to the host per epoch, for all K configurations.
        rows = torch.stack([loss_sum.double(), correct.double(), test_loss.double(), test_correct.double(),
                            val_loss.double(), val_correct.double(), finite.double()]).cpu().tolist()  # fmt: skip
        dropped = []
        for k, member in enumerate(members):
            if member.diverged:
                continue
            if not rows[6][k]:
                member.diverged_epoch = epoch
                dropped.append(k)
                continue
            h = member.hparams
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=rows[0][k] / n_train,
                train_acc=rows[1][k] / n_train,
                test_acc=rows[3][k] / n_test,
                test_loss=rows[2][k] / n_test,
                seconds=seconds,
                examples_per_s=n_train / train_seconds,
                lr=h.learning_rates(epoch_index, batches)[-1],
                val_acc=rows[5][k] / n_val,
            )
            member.history.append(metrics.as_dict())
            member.val_loss = rows[4][k] / n_val
        if dropped:
            model.drop(dropped)
        callbacks.on_epoch_end(plan, epoch, model)
    return plan, model, _snapshot_best(members, model, shuffle_generator, data.input_stats, n_train)


def choose_best(configs: list[ConfigResult]) -> int | None:
    """The index of the configuration to keep: the highest validation accuracy, then the lowest
    validation loss (never the test accuracy); None when every configuration diverged."""
    best = min(range(len(configs)), key=lambda k: configs[k].rank_key())
    return None if configs[best].diverged or configs[best].final is None else best


def _snapshot_best(
    members, model: StackedSoftmax, shuffle_generator, input_stats, train_examples: int
) -> BestSnapshot | None:
    best = choose_best(members)
    if best is None:
        return None
    weight, bias = model.weight_bias(best)
    return BestSnapshot(
        result=members[best],
        weight=weight.cpu().clone(),
        bias=bias.cpu().clone(),
        optimizer_state=model.optimizer_state(best),
        shuffle_state=shuffle_generator.get_state(),
        train_examples=train_examples,
        input_stats=None if input_stats is None else (input_stats[0].cpu(), input_stats[1].cpu()),
    )


def save_best(result: SweepResult) -> Path | None:
    """Write the best configuration's checkpoint into the sweep's folder (atomically); return its path.

    The checkpoint is the one `softmax train` would write for that configuration alone (same
    format, impl scratch, optimizer and batch-order state), so eval, predict, runs and
    `train --resume` accept it. None when no configuration finished. A failed write raises
    CheckpointError and leaves the previous file (an earlier group's best) as it was.
    """
    snapshot = result.best_snapshot
    if snapshot is None:
        return None
    best = snapshot.result
    hparams = best.hparams
    model = make_model(hparams, torch.device("cpu"), snapshot.weight, snapshot.bias, snapshot.input_stats)
    model.load_optimizer_state(snapshot.optimizer_state)
    generator = shuffle_generator_for(hparams, result.device)
    generator.set_state(snapshot.shuffle_state)
    path = result.run_dir / runs.CHECKPOINT_NAME
    save_training_checkpoint(model, hparams, len(best.history), best.history, generator, class_names(), path)
    for config in result.configs:
        config.checkpoint = None  # an earlier group's best, whose file this one replaced
    best.checkpoint = path
    result.checkpoint = path
    return path


def write_best_summary(result: SweepResult, status: str) -> None:
    """The run summary of the configuration whose checkpoint is in the folder (result.checkpoint):
    `runs` lists the sweep by it. status: "running" while groups remain, then "finished" or "interrupted"."""
    best = next((c for c in result.configs if c.checkpoint is not None), None)
    if best is None or result.best_snapshot is None:
        return
    hparams = best.hparams
    runs.write_summary(
        result.run_dir,
        {
            "format": runs.SUMMARY_FORMAT,
            "version": runs.SUMMARY_VERSION,
            "started": result.started,
            "updated": _now(),
            "impl": hparams.impl,
            "name": result.name,
            "device": str(result.device),
            "hparams": hparams.as_dict(),
            "epochs_planned": hparams.epochs,
            "epochs_done": len(best.history),
            "train_examples": result.best_snapshot.train_examples,
            "status": status,
            "checkpoint": str(best.checkpoint),
            "resumed_from": None,
            "resumed_from_checkpoint": None,
            "history": best.history,
            "sweep": {"configs": len(result.configs), "best": best.tag, "results": SWEEP_JSON},
        },
    )


def write_sweep_json(payload: dict, run_dir: Path) -> Path:
    """Keep the sweep's whole result beside its runs (the same object --json prints)."""
    path = run_dir / SWEEP_JSON
    with atomic_write(path, "w") as handle:
        json.dump(payload, handle, indent=1, allow_nan=False)
        handle.write("\n")
    return path


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a group on `device`: the GPU's free memory, the host's available memory, or None."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free
    if device.type == "cpu":
        return available_host_memory()
    return None  # mps shares the host's memory but says nothing reliable about it


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
