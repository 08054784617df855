"""A trained model for other tools: ONNX (torch.onnx's exporter) or a torch.export program (.pt2).

Both hold the same small graph, built from a checkpoint by ExportedModel: float32 images in
[0, 1], N x 1 x 28 x 28 with any N, in; the N x 10 logits out. A run trained on standardised
pixels carries its mean and std inside the graph, so a caller never standardises. The class
names travel with the model: the ONNX file's metadata_props (key "class_names", a JSON list),
the .pt2 archive's extra file "class_names". Files are written atomically (softmax_cli.atomic).

ONNX needs the optional packages onnx and onnxscript (`pip install 'softmax-cli[export]'`);
they are imported only here, when an ONNX file is asked for. Nothing here prints.
"""

from __future__ import annotations

import importlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from softmax_cli import __version__
from softmax_cli.atomic import atomic_write
from softmax_cli.data.batches import NUM_CLASSES
from softmax_cli.errors import ExportError
from softmax_cli.models import model_from_checkpoint, standardize

# The file formats, by the suffix of the file written.
FORMATS = {".onnx": "onnx", ".pt2": "pt2"}
# The ONNX operator set the graph is written in: fixed, so a file does not change with torch's default.
ONNX_OPSET = 18
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
EXPORT_EXTRA = "pip install 'softmax-cli[export]'"
# An example batch for tracing: 2, since torch.export specialises a dimension that is 0 or 1.
_EXAMPLE_BATCH = 2


def format_of(path: Path) -> str | None:
    """The format a file name asks for ("onnx", "pt2"), or None for a suffix no format has."""
    return FORMATS.get(path.suffix.lower())


def require_onnx() -> None:
    """Import the optional ONNX packages, or raise an ExportError saying what to install."""
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f"ONNX export needs {' and '.join(missing)}, not installed: {EXPORT_EXTRA}")


class ExportedModel(nn.Module):
    """The exported graph: logits = standardize(images) @ weight + bias, with the checkpoint's weights.

    weight is the canonical 784 x 10 layout (models.weight_bias), and standardize the very
    function training and evaluation apply, so the graph computes what `softmax eval` does.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, input_stats=None) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().to("cpu", torch.float32).contiguous())
        self.register_buffer("bias", bias.detach().to("cpu", torch.float32).contiguous())
        self.standardized = input_stats is not None
        if input_stats is not None:
            self.register_buffer("mean", input_stats[0].detach().to("cpu", torch.float32).contiguous())
            self.register_buffer("std", input_stats[1].detach().to("cpu", torch.float32).contiguous())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        stats = (self.mean, self.std) if self.standardized else None
        return standardize(images, stats) @ self.weight + self.bias


def exported_model(checkpoint: dict) -> ExportedModel:
    """The graph of a validated checkpoint, on the CPU, in eval mode."""
    model = model_from_checkpoint(checkpoint, torch.device("cpu"), to_train=False)
    weight, bias = model.weight_bias()
    return ExportedModel(weight, bias, model.input_stats).eval()


@dataclass
class Exported:
    """What was written: the file, its format, the ONNX opset (None for .pt2), whether it standardises."""

    out: Path
    format: str
    opset: int | None
    standardized: bool


def export_checkpoint(checkpoint: dict, out: Path) -> Exported:
    """Write the checkpoint's model to `out`, in the format its suffix names (see FORMATS).

    Raises ExportError: a missing optional package, an exporter failure, an unwritable path.
    """
    fmt = format_of(out)
    if fmt is None:
        raise ExportError(f"{out}: name a {' or '.join(FORMATS)} file (the format follows the name)")
    if fmt == "onnx":
        require_onnx()
    module = exported_model(checkpoint)
    metadata = _metadata(checkpoint, module)
    payload = _onnx_bytes(module, metadata) if fmt == "onnx" else _pt2_bytes(module, metadata)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(out) as handle:
            handle.write(payload)
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from None
    return Exported(out, fmt, ONNX_OPSET if fmt == "onnx" else None, module.standardized)


def _metadata(checkpoint: dict, module: ExportedModel) -> dict[str, str]:
    """The strings stored beside the graph: class names (JSON), what the input and output are, provenance."""
    return {
        "class_names": json.dumps(list(checkpoint["class_names"])),
        "input": f"{INPUT_NAME}: float32 N x 1 x 28 x 28, pixels in [0, 1]"
        + ("; standardised inside the graph" if module.standardized else ""),
        "output": f"{OUTPUT_NAME}: float32 N x {NUM_CLASSES}; softmax gives the class probabilities",
        "impl": str(checkpoint["impl"]),
        "epoch": str(checkpoint["epoch"]),
        "softmax_cli_version": __version__,
    }


def _example_input() -> torch.Tensor:
    return torch.rand(_EXAMPLE_BATCH, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _dynamic_batch() -> tuple[dict, ...]:
    return ({0: torch.export.Dim("batch")},)


def _onnx_bytes(module: ExportedModel, metadata: dict[str, str]) -> bytes:
    """The model as ONNX, exported by torch.onnx's torch.export-based exporter, checked by onnx's checker."""
    import onnx

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes would stand around the one result line
            program = torch.onnx.export(
                module,
                (_example_input(),),
                dynamo=True,
                opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=_dynamic_batch(),
                optimize=True,
                verbose=False,
            )
        proto = program.model_proto
    except Exception as exc:  # the exporter reports failures through many exception types
        raise ExportError(f"the ONNX exporter failed: {' '.join(str(exc).split())[:300]}") from None
    proto.producer_name = "softmax-cli"
    proto.producer_version = __version__
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    _check_onnx(proto, onnx)
    return proto.SerializeToString()


def _check_onnx(proto, onnx) -> None:
    """onnx's checker, and the one input and output with the shapes promised (a dynamic batch)."""
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise ExportError(f"the exported ONNX model fails onnx's checker: {exc}") from None
    graph = proto.graph
    shapes = [[dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim] for value in graph.input]
    names = ([value.name for value in graph.input], [value.name for value in graph.output])
    if names != ([INPUT_NAME], [OUTPUT_NAME]) or shapes[0][1:] != [1, 28, 28] or not isinstance(shapes[0][0], str):
        raise ExportError(f"the exported ONNX graph has unexpected inputs or outputs: {names}, {shapes}")


def _pt2_bytes(module: ExportedModel, metadata: dict[str, str]) -> bytes:
    """The model as a torch.export program, saved with torch.export.save (load it with torch.export.load)."""
    try:
        program = torch.export.export(module, (_example_input(),), dynamic_shapes=_dynamic_batch())
        buffer = io.BytesIO()
        torch.export.save(program, buffer, extra_files=metadata)
    except Exception as exc:  # torch.export reports failures through many exception types
        raise ExportError(f"torch.export failed: {' '.join(str(exc).split())[:300]}") from None
    return buffer.getvalue()
