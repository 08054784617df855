"""What a sweep leaves to look at: a TensorBoard run per configuration, and the figure of
validation accuracy against learning rate.

TensorBoard: each configuration gets runs/sweep/<sweep>/<config tag>/ with the same scalar
tags as a `softmax train` run (tboard.SCALAR_TAGS) and its hyperparameters (TensorBoard's own records,
as a `train` run's), so TensorBoard's HPARAMS tab compares the whole grid. A group's runs are written when
the group ends, one writer at a time (a thousand open writers would be a thousand threads), each whole
or not at all (write_tensorboard_run).

The figure is drawn with matplotlib's object API on the Agg canvas (no pyplot, no display),
imported only here, when a sweep draws it.
"""

from __future__ import annotations

import math
import os
import shutil
from collections import defaultdict
from pathlib import Path

from softmax_cli.config import count
from softmax_cli.pictures.figures import save_image
from softmax_cli.pictures.tensorboard import (
    SCALAR_TAGS,
    quiet_writer_thread_failures,
    session_end_status,
    session_end_summary,
    session_start_summary,
)
from softmax_cli.runs.histories import describe
from softmax_cli.sweep.grid import SHORT_NAMES, format_value, varying
from softmax_cli.sweep.search import ConfigResult


def write_tensorboard_run(member: ConfigResult) -> None:
    """Write one configuration's TensorBoard run into member.log_dir, as a whole or not at all.

    The events go into a hidden folder beside it, renamed to member.log_dir once the writer is
    closed, so a full disk or a killed process never leaves half a run for TensorBoard to show.
    A failed write raises (an OSError naming the file where TensorBoard says which); the hidden
    folder is removed first.
    """
    from torch.utils.tensorboard import SummaryWriter

    quiet_writer_thread_failures()  # the writer thread's failure is raised here, not printed there
    target = member.log_dir
    temp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(temp, ignore_errors=True)  # a killed sweep's leftover
    try:
        writer = SummaryWriter(log_dir=str(temp))
        try:
            for entry in member.history:
                for field, tag in SCALAR_TAGS.items():
                    if entry.get(field) is not None:
                        writer.add_scalar(tag, entry[field], entry["epoch"])
            # TensorBoard's own HPARAMS records, as `softmax train` writes them (tboard.py says why not
            # add_hparams): the settings typed, the scalar tags as metric columns, diverged as a failure.
            trial_id = f"{target.parent.name}/{target.name}"
            hparams = {**member.hparams.as_dict(), "diverged": member.diverged}
            writer.file_writer.add_summary(session_start_summary(hparams, trial_id))
            writer.file_writer.add_summary(session_end_summary(session_end_status(diverged=member.diverged)))
            writer.flush()
        finally:
            writer.close()
        os.replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _line_label(hparams, names: list[str]) -> str:
    return ", ".join(f"{SHORT_NAMES[name]} {format_value(getattr(hparams, name))}".strip() for name in names)


def line_settings(configs: list[ConfigResult]) -> list[str]:
    """The settings that tell the lines apart: those that vary, but lr (the x axis) and the seed (pooled)."""
    return [name for name in varying([c.hparams for c in configs]) if name not in ("lr", "seed")]


def val_acc_lines(configs: list[ConfigResult]) -> dict[str, list[tuple[float, list[float]]]]:
    """label -> [(lr, [val acc of each seed])] sorted by lr: one line per combination of the
    other varying settings, seeds pooled. Diverged configurations are left out."""
    names = line_settings(configs)
    points: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for config in sorted(configs, key=lambda c: tuple(getattr(c.hparams, name) for name in names)):
        label = _line_label(config.hparams, names)
        if config.diverged or config.final is None:
            points[label]  # keeps the line's place (and colour) even if every point diverged
            continue
        points[label][config.hparams.lr].append(config.final["val_acc"])
    return {label: sorted(by_lr.items()) for label, by_lr in points.items()}


def plot_val_acc_vs_lr(configs: list[ConfigResult], best: ConfigResult | None, path: Path) -> None:
    """Write val_acc_figure atomically, in the format its name says (.png, .jpg or .jpeg; the Agg canvas)."""
    save_image(val_acc_figure(configs, best), path)


# The settings a sweep's figure names when the grid held them fixed (lr is the x axis).
FIXED_SHOWN = ("preset", "batch_size", "seed", "val_split", "momentum", "weight_decay", "schedule", "standardize")


def held_fixed(configs: list[ConfigResult]) -> str:
    """The settings every configuration shared, in words: "book preset, batch 256, seed 326, val split 0.1, ..."."""
    hparams = [c.hparams for c in configs]
    shared = [name for name in FIXED_SHOWN if len({getattr(h, name) for h in hparams}) == 1]
    return ", ".join(describe(name, getattr(hparams[0], name)) for name in shared)


def val_acc_figure(configs: list[ConfigResult], best: ConfigResult | None):
    """Validation accuracy after the last epoch against the learning rate (log axis), one line per
    combination of the other settings; with several seeds, their mean and a min-max band.
    Diverged configurations are marked on the axis; the chosen one is starred."""
    from matplotlib.figure import Figure

    lines = val_acc_lines(configs)
    seeds = len({c.hparams.seed for c in configs})
    epochs = configs[0].hparams.epochs
    figure = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    for label, points in lines.items():
        if not points:
            continue
        lrs = [lr for lr, _ in points]
        means = [sum(accs) / len(accs) for _, accs in points]
        (line,) = axes.plot(lrs, means, marker="o", label=label or "val acc")
        if seeds > 1:
            axes.fill_between(lrs, [min(a) for _, a in points], [max(a) for _, a in points], alpha=0.15,
                              color=line.get_color(), linewidth=0)  # fmt: skip
    if best is not None and best.final is not None:
        axes.plot([best.hparams.lr], [best.final["val_acc"]], "*", color="gold", markeredgecolor="black",
                  markersize=16, zorder=5, label=f"chosen (val acc {best.final['val_acc']:.4f})")  # fmt: skip
    axes.set_xscale("log")
    # The axis spans the learning rates that trained; a diverged one far beyond (1e3, say) would squash
    # every line into a corner, so only those within reach are marked on it, the rest named in the legend.
    trained = sorted({c.hparams.lr for c in configs if not c.diverged and c.final is not None})
    diverged = sorted({c.hparams.lr for c in configs if c.diverged})
    low, high = (trained[0] / 3, trained[-1] * 3) if trained else (min(diverged) / 3, max(diverged) * 3)
    marked = [lr for lr in diverged if low <= lr <= high]
    beyond = [lr for lr in diverged if lr not in marked]
    if diverged:
        bottom = axes.get_ylim()[0]
        off_axis = ", ".join(f"{lr:g}" for lr in beyond)
        label = "diverged" + (
            (f" (also lr {off_axis}, off the axis)" if marked else f": lr {off_axis}") if beyond else ""
        )
        axes.plot(marked, [bottom] * len(marked), "X", color="black", markersize=9, clip_on=False, label=label)
    # Label the learning rates the grid tried, not the decades of a log axis.
    ticks = sorted(set(trained) | set(marked))
    axes.set_xticks(ticks, [f"{lr:g}" for lr in ticks])
    axes.minorticks_off()
    axes.set_xlim(ticks[0] / 1.5, ticks[-1] * 1.5)
    axes.set_xlabel("learning rate")
    pooled = f"\nmean of {seeds} seeds (band: min to max)" if seeds > 1 else ""
    axes.set_ylabel("validation accuracy")
    fixed = held_fixed(configs)
    axes.set_title(
        f"Validation accuracy after {count(epochs, 'epoch')}{pooled}" + (f"\nheld fixed: {fixed}" if fixed else ""),
        wrap=True,
    )
    axes.grid(True, which="both", alpha=0.3)
    entries = len(axes.get_legend_handles_labels()[1])
    if entries > 8:  # a long legend would hide the lines: beside the axes instead, in columns
        figure.set_figwidth(8 + 2.5 * math.ceil(entries / 24))
        figure.legend(fontsize="x-small", loc="outside right upper", ncols=math.ceil(entries / 24))
    else:
        axes.legend(fontsize="small", loc="best")
    return figure
