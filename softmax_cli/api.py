"""The Python API: train a model, load one, predict, evaluate and export it, without the CLI.

    import softmax_cli as sc
    run = sc.train("scratch", epochs=3, data_dir="data")
    model = sc.load(run.run_dir)
    model.predict("shoe.jpg")

`train` takes `softmax train`'s options, with the same defaults and checks, and runs the same
code (runs.session.train_run): a run made here has the folder, checkpoint, summary and
TensorBoard logs of one made by the CLI. `load` takes a checkpoint file or a run folder, as
`softmax eval` does. What `train --json`, `eval --json` and `predict --image --json` print,
the result objects here hold, built by the same functions. A problem is one of
softmax_cli.errors' exceptions, its message the line the CLI would show.

Nothing here prints, except train(progress=True): see ProgressLine.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from softmax_cli.config import CHOICES, PRESETS, RANGES, ConflictingOption, Range, out_of_range
from softmax_cli.errors import SoftmaxError, UsageError

# The train options the CLI validates with a range, and whether each is a whole number.
_WHOLE = ("epochs", "batch_size", "seed", "workers")
_REAL = ("lr", "momentum", "weight_decay", "val_split")
_FLAGS = ("standardize", "naive_softmax")


@dataclass
class TrainResult:
    """How a `train` call ended: what `softmax train --json` prints (`as_dict()`), and the final metrics."""

    history: list[dict]
    checkpoint: Path | None
    run_dir: Path | None
    hparams: dict
    interrupted: bool
    device: str
    name: str | None
    payload: dict = field(repr=False)

    def as_dict(self) -> dict:
        """The dict `softmax train --json` prints for this run."""
        return dict(self.payload)

    def _last(self, key: str) -> float | None:
        return self.history[-1].get(key) if self.history else None

    @property
    def epochs(self) -> int:
        return self.payload["epochs"]

    @property
    def test_acc(self) -> float | None:
        return self._last("test_acc")

    @property
    def test_loss(self) -> float | None:
        return self._last("test_loss")

    @property
    def train_acc(self) -> float | None:
        return self._last("train_acc")

    @property
    def train_loss(self) -> float | None:
        return self._last("train_loss")

    @property
    def val_acc(self) -> float | None:
        return self._last("val_acc")

    def load(self, device: str = "auto") -> Model:
        """The trained model (load(self.checkpoint))."""
        if self.checkpoint is None:
            raise SoftmaxError("no epoch completed, so there is no checkpoint to load")
        return load(self.checkpoint, device=device)


class ProgressLine:
    """train(progress=True)'s one line per epoch on stderr. The body never prints otherwise; this
    is the one place, because a caller asked for it, and it is stderr so that a script's own
    output on stdout stays clean (the CLI's live table is its own, in softmax_cli.cli)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr

    def on_train_start(self, plan) -> None: ...
    def on_batch_end(self) -> None: ...
    def on_train_end(self, result, model) -> None: ...

    def on_epoch_end(self, metrics, model) -> None:
        val = f", val acc {metrics.val_acc:.4f}" if metrics.val_acc is not None else ""
        self.stream.write(
            f"epoch {metrics.epoch}: train loss {metrics.train_loss:.4f}, train acc {metrics.train_acc:.4f}, "
            f"test acc {metrics.test_acc:.4f}{val} ({metrics.seconds:.1f} s)\n"
        )
        self.stream.flush()


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _usage(name: str, problem: str) -> UsageError:
    """A bad argument: its Python name and what the CLI says of the same value."""
    return UsageError(f"{name}: {problem}", _option(name))


def _checked_options(options: dict[str, Any]) -> dict[str, Any]:
    """The training options given (None = not given), checked as the CLI checks them, numbers as the CLI reads them."""
    checked = {}
    for name, value in options.items():
        if value is None:
            continue
        if name in _WHOLE:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _usage(name, f"{value!r} is not a whole number")
        elif name in _REAL:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _usage(name, f"{value!r} is not a number")
            value = float(value)
        elif name in _FLAGS:
            if not isinstance(value, bool):
                raise _usage(name, f"{value!r} is not True or False")
        elif name in CHOICES and value not in CHOICES[name]:
            raise _usage(name, f"{value!r} is not one of {', '.join(CHOICES[name])}")
        allowed: Range | None = RANGES.get(name)
        if allowed is not None and value not in allowed:
            raise _usage(name, out_of_range(allowed, value))
        checked[name] = value
    return checked


def _path(value, name: str) -> Path:
    if not str(value).strip():
        raise _usage(name, "must be a path, not empty")
    return Path(value)


def _device(name: str):
    from softmax_cli.devices import resolve_device

    try:
        return resolve_device(name)
    except ValueError as exc:
        raise _usage("device", str(exc)) from None


def train(
    impl: str = "scratch",
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    *,
    preset: str | None = None,
    momentum: float | None = None,
    weight_decay: float | None = None,
    schedule: str | None = None,
    standardize: bool | None = None,
    val_split: float | None = None,
    seed: int | None = None,
    naive_softmax: bool | None = None,
    loader: str | None = None,
    workers: int | None = None,
    data_dir: str | Path | None = None,
    runs_dir: str | Path = "runs",
    device: str = "auto",
    name: str | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train softmax regression on Fashion-MNIST as `softmax train` does, with its options and defaults.

    None means "not given": the preset's value (the book's unless preset="tuned"), then Hparams'
    default. The run gets its folder under runs_dir/<impl>/ with a checkpoint, summary and
    TensorBoard logs. progress=True writes one line per epoch to stderr. Ctrl-C during training
    ends it after the epoch under way; the result then says interrupted=True.
    """
    from softmax_cli import stops
    from softmax_cli.config import default_workers, resolve_hparams
    from softmax_cli.data.paths import resolve_data_dir
    from softmax_cli.data.ready import ready_dataset
    from softmax_cli.runs.folders import name_problem, named_run_dir

    given = _checked_options(
        dict(
            impl=impl, epochs=epochs, lr=lr, batch_size=batch_size, loader=loader, seed=seed,
            naive_softmax=naive_softmax, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
            standardize=standardize, val_split=val_split,
        )
    )  # fmt: skip
    if preset is not None and preset not in PRESETS:
        raise _usage("preset", f"{preset!r} is not one of {', '.join(PRESETS)}")
    workers = _checked_options({"workers": workers}).get("workers")
    try:
        hparams = resolve_hparams(given, preset)
    except ConflictingOption as exc:
        raise UsageError(str(exc)) from None
    if hparams.naive_softmax and hparams.impl != "scratch":
        raise _usage("naive_softmax", "is for impl='scratch' only")
    runs_dir = _path(runs_dir, "runs_dir")
    if name is not None:
        problem = name_problem(name)
        if problem:
            raise _usage("name", f"{problem}: {name!r}")
        folder = named_run_dir(runs_dir, hparams.impl, name)
        if folder.exists():
            raise _usage("name", f"{folder} already exists; choose another name or remove that folder")
    workers = default_workers() if workers is None else workers
    torch_device = _device(device)
    target = resolve_data_dir(None if data_dir is None else _path(data_dir, "data_dir"))
    ready_dataset(target)
    from softmax_cli.runs.session import train_payload, train_run
    from softmax_cli.training import check_validation_split

    try:
        check_validation_split(hparams, target)
    except UsageError as exc:
        raise _usage("val_split", str(exc)) from None
    stops.reset()  # a stop recorded by an earlier call in this process is not this run's
    callbacks = [ProgressLine()] if progress else []
    warnings = []  # a log that could not be written: training went on; said in the result's warnings
    trained = train_run(
        hparams, target, runs_dir, torch_device, workers=workers, name=name, callbacks=callbacks,
        warn=warnings.append,
    )  # fmt: skip
    result = trained.result
    payload = train_payload(result, name)
    return TrainResult(
        history=list(result.history),
        checkpoint=result.checkpoint,
        run_dir=result.log_dir,
        hparams=hparams.as_dict(),
        interrupted=result.interrupted,
        device=str(result.device),
        name=name,
        payload=payload,
    )


def test_split(data_dir: str | Path | None = None):
    """The 10,000 test images (uint8 tensor N x 28 x 28, light on black) and their labels (class indices),
    read from the data as train finds it, fetched and verified first where needed."""
    from softmax_cli.data.batches import read_split
    from softmax_cli.data.paths import resolve_data_dir
    from softmax_cli.data.ready import ready_dataset

    target = resolve_data_dir(None if data_dir is None else _path(data_dir, "data_dir"))
    ready_dataset(target)
    split = read_split(target, "test")
    return split.images, split.labels


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file `path` stands for: the file itself, a run folder's checkpoint, a folder's only
    .pt file, or the newest run's in a folder of runs (as `softmax eval PATH` resolves it)."""
    from softmax_cli.runs import checkpoint as ckpt
    from softmax_cli.runs import folders as run_files

    path = _path(path, "path")
    if path.is_dir():
        own = run_files.run_folder_checkpoint(path)
        if own is not None:
            return own
        files = run_files.checkpoint_files(path)
        if len(files) == 1:
            return files[0]
        if files:
            names = " or ".join(str(file) for file in files)
            raise SoftmaxError(f"{path} holds {len(files)} checkpoints; name one: {names}")
        newest = run_files.newest_checkpoints(path, 1)
        if newest:
            return newest[0].checkpoint
        raise SoftmaxError(f"{path} is a directory with no checkpoint and no run in it")
    ckpt.check_checkpoint_file(path)
    return path


def load(path: str | Path, device: str = "auto") -> Model:
    """The model of a checkpoint file or a run folder (see checkpoint_path), validated as the CLI does."""
    from softmax_cli.runs import checkpoint as ckpt

    found = checkpoint_path(path)
    return Model(found, ckpt.load_checkpoint(found), _device(device))


class Model:
    """A trained model, loaded from its checkpoint: predict pictures, evaluate on the test split, export."""

    def __init__(self, checkpoint: Path, loaded: dict, device) -> None:
        self.checkpoint = checkpoint
        self._loaded = loaded
        self._device = device

    def __repr__(self) -> str:
        return f"Model({str(self.checkpoint)!r}, impl={self.impl!r}, epoch={self.epoch})"

    @property
    def class_names(self) -> list[str]:
        return list(self._loaded["class_names"])

    @property
    def hparams(self) -> dict:
        from softmax_cli.config import Hparams

        return Hparams.from_checkpoint(self._loaded).as_dict()

    @property
    def impl(self) -> str:
        return self._loaded["impl"]

    @property
    def epoch(self) -> int:
        return self._loaded["epoch"]

    @property
    def history(self) -> list[dict]:
        return list(self._loaded["history"])

    def _inputs(self, images) -> tuple[list, Any]:
        """(labels, N x 28 x 28 float pixels in [0, 1]) of what predict was given."""
        import torch

        if isinstance(images, torch.Tensor):
            return _tensor_inputs(images)
        if isinstance(images, (str, Path)) or not isinstance(images, Sequence):
            images = [images]
        if not images:
            raise _usage("images", "no picture given")
        labels, pixels = [], []
        for index, image in enumerate(images):
            label, seen = _picture_input(image, index)
            labels.append(label)
            pixels.append(seen)
        return labels, torch.stack(pixels)

    def predict_proba(self, images):
        """The N x 10 class probabilities (a numpy array, rows summing to 1) of the pictures, in class_names' order."""
        import torch

        from softmax_cli.models import model_from_checkpoint

        _, inputs = self._inputs(images)
        model = model_from_checkpoint(self._loaded, self._device, to_train=False)
        with torch.no_grad():
            logits = model.logits(inputs.to(self._device).reshape(-1, 1, *inputs.shape[-2:]))
            return torch.softmax(logits, dim=1).cpu().numpy()

    def predict(self, images, top: int = 3) -> list[dict]:
        """One row per picture, as `softmax predict --image --json` lists them:
        {"image", "predicted", "confidence", "top": [{"class", "probability"}, ...]}.

        images: a path or a list of paths (any picture Pillow reads, made to look like Fashion-MNIST as
        predict --image does), PIL images, numpy arrays (H x W or H x W x C, uint8 0..255 or float 0..1),
        or a torch tensor N x 28 x 28 already like Fashion-MNIST's (light object on black; float in [0, 1]
        or uint8), used as is. "image" is the path for a path, else the position in what was given.
        """
        from softmax_cli.evaluation import classify_pictures, picture_rows

        labels, inputs = self._inputs(images)
        ranked = classify_pictures(self._loaded, inputs, self._device, top=top)
        return picture_rows(labels, ranked, self.class_names)

    def evaluate(self, data_dir: str | Path | None = None, batch_size: int | None = None) -> dict:
        """Accuracy, loss, per-class figures and the confusion matrix on the test split: the dict `softmax eval
        --json` prints. The data as train finds it (data_dir, else $SOFTMAX_DATA_DIR, else the default)."""
        from softmax_cli.data.paths import resolve_data_dir
        from softmax_cli.data.ready import ready_dataset
        from softmax_cli.evaluation import evaluate_checkpoint, evaluation_payload

        checked = _checked_options({"batch_size": batch_size}).get("batch_size")
        target = resolve_data_dir(None if data_dir is None else _path(data_dir, "data_dir"))
        ready_dataset(target)
        evaluation, _ = evaluate_checkpoint(self._loaded, target, self._device, checked)
        return evaluation_payload(self.checkpoint, self._loaded, evaluation)

    def export(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the model as `softmax export` does: .onnx (needs the export extra) or .pt2; the path written."""
        import os

        from softmax_cli.runs.export import FORMATS, export_checkpoint

        out = _path(path, "path")
        if out.suffix.lower() not in FORMATS:
            raise _usage("path", f"{out}: name a {' or '.join(FORMATS)} file (the format follows the name)")
        if os.path.isdir(out):
            raise _usage("path", f"{out} is a directory; name a file such as {out / 'model.onnx'}")
        if os.path.lexists(out) and not overwrite:
            raise _usage("path", f"{out} exists; pass overwrite=True to replace it")
        export_checkpoint(self._loaded, out)
        return out


def _tensor_inputs(images):
    """A torch tensor of Fashion-MNIST-like images (28 x 28, N x 28 x 28 or N x 1 x 28 x 28; uint8 or float 0..1)."""
    import torch

    from softmax_cli.data.fashion_mnist import IMAGE_SIDE

    shape = tuple(images.shape)
    if len(shape) == 2:
        images = images.unsqueeze(0)
    elif len(shape) == 4 and shape[1] == 1:
        images = images[:, 0]
    if images.dim() != 3 or tuple(images.shape[1:]) != (IMAGE_SIDE, IMAGE_SIDE) or len(images) == 0:
        raise _usage("images", f"a tensor must be N x 28 x 28 (Fashion-MNIST-like images), not {list(shape)}")
    if images.dtype == torch.uint8:
        images = images.to(torch.float32).div(255)
    elif images.is_floating_point():
        images = images.to(torch.float32)
        low, high = float(images.min()), float(images.max())
        if not (0 <= low and high <= 1):
            raise _usage("images", f"float pixels must lie in [0, 1], not [{low:g}, {high:g}]")
    else:
        raise _usage("images", f"a tensor must hold uint8 or float pixels, not {images.dtype}")
    return list(range(len(images))), images.detach().cpu()


def _picture_input(image, index: int):
    """(label, 28 x 28 float pixels) of one picture: a path, a PIL image or a numpy array."""
    import numpy as np
    from PIL import Image

    from softmax_cli.data.photos import load_picture, model_input

    if isinstance(image, (str, Path)):
        path = _path(image, "images")
        if not path.exists():
            raise _usage("images", f"{path}: no such file")
        return str(path), model_input(load_picture(path).seen)
    if isinstance(image, Image.Image):
        return index, model_input(image)
    if isinstance(image, np.ndarray):
        return index, model_input(_array_picture(image, index))
    raise _usage("images", f"cannot read a {type(image).__name__}: give paths, PIL images, numpy arrays or a tensor")


def _array_picture(array, index: int):
    """A numpy array (H x W or H x W x C; uint8 0..255 or float 0..1) as a PIL image."""
    import numpy as np
    from PIL import Image

    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))) or array.size == 0:
        raise _usage("images", f"picture {index}: an array must be H x W or H x W x 3 or 4, not {list(array.shape)}")
    if array.dtype == np.uint8:
        pixels = array
    elif np.issubdtype(array.dtype, np.floating):
        if not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
            raise _usage("images", f"picture {index}: float pixels must lie in [0, 1]")
        pixels = np.round(array * 255).astype(np.uint8)
    else:
        raise _usage("images", f"picture {index}: pixels must be uint8 or float, not {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(pixels))
