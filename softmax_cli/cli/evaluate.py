"""`softmax eval` and `softmax predict`: what a trained checkpoint gets right and wrong on the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from softmax_cli.cli.options import (
    CheckpointArgument,
    DataDirOption,
    DeviceOption,
    JsonOption,
    OverwriteOption,
    RunsDirOption,
    check_image_path,
    check_picture_target,
    ensure_data,
    resolve_device_or_usage_error,
    within,
    write_image,
)
from softmax_cli.cli.output import fail, print_json, results_console
from softmax_cli.cli.runs import find_checkpoint
from softmax_cli.config import Range
from softmax_cli.data.paths import resolve_data_dir

# How many test images predict shows unless -n says.
TEST_IMAGES_SHOWN = 18


def _checkpoint_device_and_data(checkpoint: Path, device: str, data_dir: Optional[Path]):
    """What eval and predict start from: a validated checkpoint, the device, and a data dir holding the data."""
    from softmax_cli.runs import checkpoint as ckpt

    loaded = ckpt.load_checkpoint(checkpoint)
    torch_device = resolve_device_or_usage_error(device)
    target = resolve_data_dir(data_dir)
    ensure_data(target)
    return loaded, torch_device, target


def _checkpoint_heading(path: Path, loaded: dict) -> str:
    """Which checkpoint a picture shows, in a line: its run folder and file, impl, epoch and recorded test accuracy."""
    planned = loaded["hparams"].get("epochs")
    epoch = f"epoch {loaded['epoch']}" + (f" of {planned}" if isinstance(planned, int) else "")
    recorded = [entry for entry in loaded["history"] if entry.get("epoch") == loaded["epoch"]]
    test_acc = recorded[-1].get("test_acc") if recorded else None
    accuracy = f", test accuracy {test_acc:.4f}" if isinstance(test_acc, float) else ""
    return f"{path.parent.name}/{path.name}: {loaded['impl']}, {epoch}{accuracy}"


def evaluate(
    checkpoint: CheckpointArgument = None,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    batch_size: Annotated[
        Optional[int],
        typer.Option(
            callback=within(Range(1)),
            metavar="N",
            help="Evaluation batch size. [default: the checkpoint's]",
            show_default=False,
        ),
    ] = None,
    weights_png: Annotated[
        Optional[Path],
        typer.Option(
            callback=check_image_path,
            metavar="FILE",
            help="Also write the 10 learned weight templates (columns of W as 28x28 images, titled by class; "
            "in pixel space for a standardized run) as a .png or .jpg picture.",
            show_default=False,
        ),
    ] = None,
    confusion_png: Annotated[
        Optional[Path],
        typer.Option(
            callback=check_image_path,
            metavar="FILE",
            help="Also write the labelled confusion matrix (counts, full class names, true class by row) "
            "as a .png or .jpg picture.",
            show_default=False,
        ),
    ] = None,
    runs_dir: RunsDirOption = Path("runs"),
    overwrite: OverwriteOption = False,
    as_json: JsonOption = False,
) -> None:
    """Evaluate a checkpoint on the 10,000 test images: accuracy, loss, per-class table, confusion matrix.

    With no CHECKPOINT, the newest run's under --runs-dir; a run folder stands for its checkpoint.
    """
    check_picture_target(weights_png, overwrite, "--weights-png")
    check_picture_target(confusion_png, overwrite, "--confusion-png")
    path = find_checkpoint(checkpoint, runs_dir, "eval")  # before torch: a bad path costs no import
    from softmax_cli.cli.tables import render_evaluation
    from softmax_cli.evaluation import evaluate_checkpoint, evaluation_payload, per_class_metrics

    loaded, torch_device, target = _checkpoint_device_and_data(path, device, data_dir)
    evaluation, model = evaluate_checkpoint(loaded, target, torch_device, batch_size)
    names = loaded["class_names"]
    per_class = per_class_metrics(evaluation.confusion, names)
    # Files first: a reader that stops early (`| head`) must not cost the picture.
    if weights_png is not None:
        from softmax_cli.pictures.figures import save_image, weight_templates_figure

        std = None if model.input_stats is None else model.input_stats[1]
        figure = weight_templates_figure(model.weight_bias()[0], names, std, f"epoch {loaded['epoch']}")
        write_image(lambda target: save_image(figure, target), weights_png)
    if confusion_png is not None:
        from softmax_cli.pictures.figures import confusion_figure, save_image

        figure = confusion_figure(evaluation.confusion, names, when=f"epoch {loaded['epoch']}", dpi=150)
        write_image(lambda target: save_image(figure, target), confusion_png)
    render_evaluation(results_console(as_json), path, loaded, evaluation, per_class)
    if as_json:
        print_json(evaluation_payload(path, loaded, evaluation))


def predict(
    checkpoint: CheckpointArgument = None,
    images: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--image",
            metavar="PATH",
            help="Show the model your own picture instead (PNG, JPEG, anything Pillow reads), made to look like "
            "Fashion-MNIST's: grey, light object on black, cropped, fitted into 28x28. Repeatable; a folder "
            "stands for every picture in it.",
            show_default=False,
        ),
    ] = None,
    n: Annotated[
        Optional[int],
        typer.Option(
            "-n",
            "--n",
            callback=within(Range(1, 10000)),
            metavar="N",
            help=f"How many test images to show, 1 to 10000. [default: {TEST_IMAGES_SHOWN}]",
            show_default=False,
        ),
    ] = None,
    only_wrong: Annotated[bool, typer.Option("--only-wrong", help="Show only misclassified images.")] = False,
    out: Annotated[
        Optional[Path],
        typer.Option(
            callback=check_image_path,
            metavar="FILE",
            help="Picture (.png or .jpg) of the images titled true / predicted (probability); with --image, "
            "each picture beside the 28x28 image the model saw. [default: predictions.png beside the "
            "checkpoint, in its run folder; with --image, none]",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    runs_dir: RunsDirOption = Path("runs"),
    overwrite: OverwriteOption = False,
    as_json: JsonOption = False,
) -> None:
    """Like the book's predict_ch3: test images with true and predicted classes, as a picture and a table.

    With --image, your own pictures instead, with the three likeliest classes of each. With no CHECKPOINT,
    the newest run's under --runs-dir; a run folder stands for its checkpoint.
    """
    if images:
        if n is not None or only_wrong:
            hint = "-n" if n is not None else "--only-wrong"
            raise typer.BadParameter("chooses test images; it cannot be used with --image", param_hint=hint)
        predict_pictures(checkpoint, images, out, device, runs_dir, as_json)
        return
    path = find_checkpoint(checkpoint, runs_dir, "predict")  # before torch: a bad path costs no import
    out = out if out is not None else path.parent / "predictions.png"
    check_picture_target(out, overwrite, "--out")
    from softmax_cli.cli.tables import render_predictions
    from softmax_cli.evaluation import predict_test_examples
    from softmax_cli.pictures.figures import prediction_figure, save_image

    n = TEST_IMAGES_SHOWN if n is None else n
    out = Path("predictions.png") if out is None else out
    loaded, torch_device, target = _checkpoint_device_and_data(path, device, data_dir)
    shown = predict_test_examples(loaded, target, torch_device, n, only_wrong)
    names = loaded["class_names"]
    rows = [
        {"index": int(i), "true": names[int(t)], "predicted": names[int(p)], "confidence": float(c),
         "correct": int(t) == int(p)}
        for i, t, p, c in zip(shown.indices, shown.labels, shown.predicted, shown.confidence, strict=True)
    ]  # fmt: skip
    if not rows:
        raise fail("no test image matches (--only-wrong on a model that gets every one right?)")
    grid = prediction_figure(
        shown.images,
        [r["true"] for r in rows],
        [r["predicted"] for r in rows],
        [r["confidence"] for r in rows],
        heading=_checkpoint_heading(path, loaded),
    )
    write_image(lambda target: save_image(grid, target), out)
    render_predictions(results_console(as_json), rows, only_wrong)
    if as_json:
        print_json({"checkpoint": str(path), "out": str(out), "predictions": rows})


def predict_pictures(
    checkpoint: Optional[Path], images: list[Path], out: Optional[Path], device: str, runs_dir: Path, as_json: bool
) -> None:
    """`predict --image`: the user's pictures, each made to look like Fashion-MNIST, with the three likeliest classes.

    Every picture is read and checked before the checkpoint is used, so a bad one fails first and alone.
    """
    import torch

    from softmax_cli.cli.tables import render_picture_predictions
    from softmax_cli.data.photos import load_picture, model_input, picture_files
    from softmax_cli.evaluation import classify_pictures, picture_rows
    from softmax_cli.runs import checkpoint as ckpt

    pictures = [load_picture(file) for file in picture_files(images)]
    path = find_checkpoint(checkpoint, runs_dir, "predict")
    loaded = ckpt.load_checkpoint(path)
    torch_device = resolve_device_or_usage_error(device)
    ranked = classify_pictures(loaded, torch.stack([model_input(p.seen) for p in pictures]), torch_device)
    rows = picture_rows([str(p.path) for p in pictures], ranked, loaded["class_names"])
    if out is not None:
        from softmax_cli.pictures.figures import picture_predictions_figure, save_image

        grid = picture_predictions_figure(
            [p.shown for p in pictures],
            [p.seen for p in pictures],
            [p.path.name for p in pictures],
            [r["predicted"] for r in rows],
            [r["confidence"] for r in rows],
        )
        write_image(lambda target: save_image(grid, target), out)
    render_picture_predictions(results_console(as_json), rows)
    if as_json:
        print_json({"checkpoint": str(path), "out": None if out is None else str(out), "predictions": rows})
