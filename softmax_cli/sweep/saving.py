"""What a sweep keeps on disk, group by group: its TensorBoard runs, the best configuration's
checkpoint and run summary, sweep.json, and at the end the figure.

Each group's results are written when the group ends (run_sweep calls on_group_end and
on_results inside stops.uninterrupted, so a stop waits for them), every file atomically, so a
sweep stopped, killed or starved of disk space later keeps every group it finished. A file that
cannot be written (a full disk, a quota, a file size limit) costs that file only: on_failure
hears of it once, naming the file, and the sweep goes on; `failed` says which files do not hold
the latest result. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from softmax_cli.errors import CheckpointError
from softmax_cli.runs import folders as runs
from softmax_cli.sweep import search
from softmax_cli.sweep.report import plot_val_acc_vs_lr, write_tensorboard_run
from softmax_cli.training import describe_failure


class SweepFiles(search.SweepCallbacks):
    """Keeps the sweep's results on disk as they grow; payload(result) is sweep.json's object."""

    def __init__(self, payload: Callable[[search.SweepResult], dict], on_failure: Callable[[str], None]) -> None:
        self.payload = payload
        self.on_failure = on_failure
        self.failed: dict[Path, str] = {}  # file -> why its latest write failed
        self.tensorboard_failure: str | None = None
        self._warned: set[Path] = set()

    def on_group_end(self, plan: search.GroupPlan, model) -> None:
        """Each configuration's TensorBoard run; after a first failure TensorBoard logging stops, as train's does."""
        for member in plan.configs:
            if self.tensorboard_failure is not None:
                member.log_dir = None
                continue
            try:
                write_tensorboard_run(member)
            except Exception as exc:
                self.tensorboard_failure = describe_failure(exc)
                self.on_failure(
                    f"TensorBoard logging stopped at {member.log_dir}: {self.tensorboard_failure}; the sweep goes on"
                )
                member.log_dir = None

    def on_results(self, result: search.SweepResult) -> None:
        self.save(result, "running")

    def save(self, result: search.SweepResult, status: str) -> None:
        """The checkpoint (when the best changed), the summary, sweep.json: each file whole, or the old one kept."""
        best = result.best
        if best is not None and best.checkpoint is None:
            path = result.run_dir / runs.CHECKPOINT_NAME
            if self._attempt(path, lambda: search.save_best(result)) is False:
                result.checkpoint = None  # the file, if any, holds an earlier group's best (its config says so)
        if any(config.checkpoint is not None for config in result.configs):
            self._attempt(result.run_dir / runs.SUMMARY_NAME, lambda: search.write_best_summary(result, status))
        self._attempt(
            result.run_dir / search.SWEEP_JSON, lambda: search.write_sweep_json(self.payload(result), result.run_dir)
        )

    def plot(self, result: search.SweepResult, path: Path) -> bool:
        """The figure of validation accuracy against learning rate; True when it is written."""

        def draw() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            plot_val_acc_vs_lr(result.configs, result.best, path)

        return self._attempt(path, draw)

    def _attempt(self, path: Path, write: Callable[[], object]) -> bool:
        try:
            write()
        except Exception as exc:  # a stop (KeyboardInterrupt) is no Exception: it passes
            why = _reason(exc)
            self.failed[path] = why
            if path not in self._warned:
                self._warned.add(path)
                self.on_failure(f"cannot write {path}: {why}")
            return False
        self.failed.pop(path, None)
        return True


def _reason(exc: Exception) -> str:
    """Why a write failed, without the path the warning names already."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, CheckpointError):  # "cannot write the checkpoint PATH: REASON"
        return str(exc).rsplit(": ", 1)[-1]
    return describe_failure(exc)
