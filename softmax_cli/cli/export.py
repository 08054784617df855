"""`softmax export`: a trained checkpoint as a model file other tools run (ONNX, or a torch.export .pt2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from softmax_cli.cli.options import CheckpointArgument, JsonOption, RunsDirOption, path_value
from softmax_cli.cli.output import print_json, printable, results_console, say
from softmax_cli.cli.runs import find_checkpoint

# The suffixes --out may end in; softmax_cli.runs.export.FORMATS maps them to formats (kept
# here too so that checking a name imports no torch).
OUT_SUFFIXES = (".onnx", ".pt2")


def _check_out(path: Path) -> Path:
    """A Typer callback: the format follows the name, so a suffix no format has is a usage error."""
    if path.suffix.lower() not in OUT_SUFFIXES:
        raise typer.BadParameter(f"{path}: name a {' or '.join(OUT_SUFFIXES)} file (the format follows the name)")
    return path


def export(
    checkpoint: CheckpointArgument = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            parser=path_value,
            callback=_check_out,
            metavar="FILE",
            help="The model file to write: .onnx (ONNX, opset 18) or .pt2 (torch.export.save).",
            show_default=False,
        ),
    ] = ...,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists.")] = False,
    runs_dir: RunsDirOption = Path("runs"),
    as_json: JsonOption = False,
) -> None:
    """Export a checkpoint's model: float32 images in [0, 1] (N x 1 x 28 x 28) in, the N x 10 logits out.

    Standardisation, when the run used it, is inside the graph; the class names are in the
    file's metadata. .onnx needs the export extra: pip install 'softmax-cli[export]'.

    With no CHECKPOINT, the newest run's under --runs-dir; a run folder stands for its checkpoint.
    """
    if os.path.isdir(out):
        raise typer.BadParameter(f"{out} is a directory; name a file such as {out / 'model.onnx'}", param_hint="--out")
    if os.path.lexists(out) and not overwrite:
        raise typer.BadParameter(f"{out} exists; add --overwrite to replace it", param_hint="--out")
    from softmax_cli.runs import checkpoint as ckpt
    from softmax_cli.runs.export import export_checkpoint, format_of, require_onnx

    if format_of(out) == "onnx":
        require_onnx()  # before finding or loading anything: the one thing to install, said first
    path = find_checkpoint(checkpoint, runs_dir, "export")
    loaded = ckpt.load_checkpoint(path)
    exported = export_checkpoint(loaded, out)
    inside = ", standardisation inside the graph" if exported.standardized else ""
    kind = f"ONNX, opset {exported.opset}" if exported.format == "onnx" else "torch.export program"
    say(f"Exported {escape(printable(str(path)))} (epoch {loaded['epoch']}) as {kind}{inside}")
    results_console(as_json).print(escape(printable(str(out))), soft_wrap=True)
    if as_json:
        print_json({
            "checkpoint": str(path),
            "out": str(out),
            "format": exported.format,
            "opset": exported.opset,
            "input": "images",
            "output": "logits",
            "standardized": exported.standardized,
            "class_names": loaded["class_names"],
            "epoch": loaded["epoch"],
            "impl": loaded["impl"],
        })  # fmt: skip
