"""Pictures for learners, drawn with matplotlib: weight templates, the confusion matrix, a
predictions grid, training curves, and a small line plot other commands reuse.

matplotlib is what the book draws with, and it gives axes, legends, colour bars and fonts
that a hand-drawn bitmap lacks. It is imported only inside the functions that draw, so
`--help` and training never pay for it (TensorBoard's pictures are drawn with torch, in
pictures/tensorboard.py). Nothing here imports torch: tensors are taken as they come and
computed on with numpy (as_array), so `softmax plot` of run folders never loads it. Figures are built with the
object-oriented API on the non-interactive Agg canvas: no pyplot, so no GUI backend is
looked for and no global figure registry keeps figures alive. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from softmax_cli.atomic import atomic_write
from softmax_cli.data.fashion_mnist import IMAGE_SIDE

if TYPE_CHECKING:
    import numpy as np
    import torch
    from matplotlib.figure import Figure

# Pixels whose train-split std is below this fraction of the median std are rarely lit in
# training (the border): their weights get little signal, and dividing by their small std
# blows them up until they drown the template (about 10% of Fashion-MNIST's pixels). They
# are shown grey, not coloured.
RARELY_LIT_STD_FRACTION = 0.25
# Colour scales end at this quantile of |value|, so a few extreme pixels or cells do not
# wash the rest out; the colour bar's arrows say when values lie beyond.
COLOUR_LIMIT_QUANTILE = 0.995
SPLIT_STYLES = {"train": "-", "test": "--", "val": ":"}
# Every picture says who wrote it, so a later command may replace its own pictures but never a
# file it did not write (is_our_picture): PNGs in a "Software" text chunk, JPEGs in a comment.
SOFTWARE = "softmax-cli"
JPEG_COMMENT = b"Software: " + SOFTWARE.encode()
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIGNATURE_SEARCH_BYTES = 64 * 1024
WRONG_COLOUR = "#c62828"


# One style for every picture. matplotlib reads rcParams while it draws too (how many ticks fit
# an axis depends on the font size), so building, drawing and saving all happen inside it.
STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "figure.titlesize": 11}


@contextmanager
def _style():
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width_in: float, height_in: float, dpi: float) -> Figure:
    """An empty figure on an Agg canvas (non-interactive), laid out so nothing is cut off."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: Path) -> None:
    """Write the figure as a PNG of exactly figsize x dpi pixels, atomically (never half a file)."""
    save_image(figure, path, "png")


def save_image(figure: Figure, path: Path, image_format: str | None = None) -> None:
    """Write the figure atomically in the format its name says (.png, .jpg or .jpeg), unless one is given,
    signed as ours (a PNG text chunk, a JPEG comment: see is_our_picture)."""
    if image_format is None:
        image_format = "jpeg" if Path(path).suffix.lower() in (".jpg", ".jpeg") else "png"
    if image_format == "png":
        signed = {"metadata": {"Software": SOFTWARE}}
    else:
        signed = {"pil_kwargs": {"comment": JPEG_COMMENT}}
    with atomic_write(path, "wb") as handle, _style():
        figure.savefig(handle, format=image_format, dpi=figure.dpi, **signed)


def is_our_picture(path: Path) -> bool:
    """True when path is a PNG or JPEG that save_image wrote: a PNG whose "Software" text chunk is
    SOFTWARE, or a JPEG whose comment is JPEG_COMMENT. Reads at most the first 64 KiB of a regular
    file (never opens a FIFO or a device); anything else, or an unreadable file, is not ours."""
    try:
        if not Path(path).is_file():
            return False
        with open(path, "rb") as handle:
            head = handle.read(_SIGNATURE_SEARCH_BYTES)
    except OSError:
        return False
    if head.startswith(_PNG_SIGNATURE):
        return _png_signed(head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_signed(head)
    return False


def _png_signed(data: bytes) -> bool:
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IDAT":  # matplotlib writes its text chunks before the image data
            return False
        if kind == b"tEXt" and body == b"Software\x00" + SOFTWARE.encode("latin-1"):
            return True
        position += 12 + length
    return False


def _jpeg_signed(data: bytes) -> bool:
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:  # start of scan: no more headers
            return False
        if marker == 0xFE and data[position + 4 : position + 2 + length] == JPEG_COMMENT:
            return True
        position += 2 + length
    return False


def as_array(values) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like as a float64 numpy array.

    The figures compute with numpy, which matplotlib brings anyway, so that `softmax plot`
    never has to import torch."""
    import numpy as np

    if hasattr(values, "detach"):  # a torch tensor, without importing torch to ask
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def _colour_limit(values: np.ndarray) -> float:
    import numpy as np

    finite = np.abs(values[np.isfinite(values)])
    if finite.size == 0:
        return 1.0
    limit = float(np.quantile(finite, COLOUR_LIMIT_QUANTILE))
    return limit if limit > 0 else max(float(finite.max()), 1e-12)


# --------------------------------------------------------------------------- weight templates


def pixel_space_templates(weight, input_std=None) -> np.ndarray:
    """The ten columns of W (784 x 10, a tensor or an array) as 10 x 28 x 28 templates, in raw pixel units.

    A standardized model computes sum_i W_i (x_i - mean_i) / std_i, that is (W_i / std_i) x_i
    plus a constant: W / std is what it weighs each raw pixel by. Pixels rarely lit in
    training (std under RARELY_LIT_STD_FRACTION of the median) are NaN: drawn grey.
    """
    import numpy as np

    templates = as_array(weight)
    if input_std is not None:
        std = as_array(input_std)
        templates = templates / std[:, None]
        templates[std < RARELY_LIT_STD_FRACTION * np.median(std)] = np.nan
    return templates.T.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)


class WeightTemplates:
    """The learned templates as one labelled figure: a 2 x 5 grid of 28 x 28 images titled by
    class, one diverging colour map centred at 0 shared by all ten, and a colour bar.
    """

    def __init__(
        self, class_names: Sequence[str], standardized: bool, dpi: float = 100, size: tuple[float, float] = (6.4, 3.4)
    ):
        import matplotlib
        import numpy as np
        from matplotlib.colors import CenteredNorm

        self.standardized = standardized
        self.norm = CenteredNorm(vcenter=0.0, halfrange=1.0)
        cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.72")
        with _style():
            self.figure = new_figure(*size, dpi)
            axes = self.figure.subplots(2, 5)
            blank = np.zeros((IMAGE_SIDE, IMAGE_SIDE))
            self.images = []
            for ax, name in zip(axes.flat, class_names, strict=True):
                self.images.append(ax.imshow(blank, cmap=cmap, norm=self.norm, interpolation="nearest"))
                ax.set_title(name, pad=3, fontsize=11)
                ax.set_xticks([])
                ax.set_yticks([])
            unit = "pixel-space weight (W / std)" if standardized else "weight"
            self.colour_bar = self.figure.colorbar(self.images[0], ax=axes, shrink=0.9, pad=0.02, extend="both")
            self.colour_bar.set_label(unit)
            self.heading = self.figure.suptitle("", wrap=True, fontsize=10)

    def update(self, weight, input_std=None, when: str = "") -> Figure:
        """Show these weights (a tensor or an array, 784 x 10); `when` (e.g. "epoch 3") joins
        the title. Returns the figure."""
        templates = pixel_space_templates(weight, input_std)
        for image, template in zip(self.images, templates, strict=True):
            image.set_data(template)
        self.norm.halfrange = _colour_limit(templates)
        title = f"Weight templates{', ' + when if when else ''}: red raises the class score, blue lowers it"
        if self.standardized:
            title += "\nshown in pixel space (the input was standardized); grey: pixels rarely lit"
        self.heading.set_text(title)
        return self.figure


def weight_templates_figure(weight, class_names: Sequence[str], input_std=None, when: str = "") -> Figure:
    """One templates figure (see WeightTemplates), for a PNG."""
    return WeightTemplates(class_names, standardized=input_std is not None, dpi=150).update(weight, input_std, when)


# --------------------------------------------------------------------------- confusion matrix


class ConfusionMatrix:
    """The confusion matrix with full class names, axis titles, a number in every cell and a
    colour bar: counts, or with normalize=True the percentage of each true class (each row
    divided by its count; the diagonal is then each class's recall).
    """

    def __init__(self, class_names: Sequence[str], normalize: bool = False, dpi: float = 100, size=(6.4, 5.8)) -> None:
        import numpy as np

        self.normalize = normalize
        n = len(class_names)
        with _style():
            self.figure = new_figure(*size, dpi)
            self.ax = ax = self.figure.subplots()
            self.image = ax.imshow(np.zeros((n, n)), cmap="Blues", vmin=0, vmax=1)
            self.cells = [
                [ax.text(col, row, "", ha="center", va="center", fontsize=8) for col in range(n)] for row in range(n)
            ]
            ax.set_xticks(range(n), class_names, rotation=40, ha="right", rotation_mode="anchor")
            ax.set_yticks(range(n), class_names)
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            what = "% of the true class" if normalize else "test images"
            self.colour_bar = self.figure.colorbar(self.image, ax=ax, shrink=0.85, pad=0.02)
            self.colour_bar.set_label(what)

    def update(self, confusion, when: str = "") -> Figure:
        """Show these counts (a tensor or an array, true class by predicted class); `when`
        (e.g. "epoch 3") joins the title. Returns the figure."""
        counts = as_array(confusion)
        total = int(counts.sum())
        accuracy = float(counts.trace() / total) if total else 0.0
        normalize = self.normalize
        values = 100 * counts / counts.sum(1, keepdims=True).clip(min=1) if normalize else counts
        high = float(values.max()) or 1.0
        self.image.set_data(values)
        self.image.set_clim(0, high)
        for row, cells in enumerate(self.cells):
            for col, cell in enumerate(cells):
                value, count = float(values[row, col]), int(counts[row, col])
                cell.set_text(("<1" if count and round(value) == 0 else f"{value:.0f}") if normalize else f"{count}")
                # Zeros stay readable but recede, so the confusions stand out.
                cell.set_color("0.65" if count == 0 else "white" if value > 0.55 * high else "black")
        kind = "% of each true class" if normalize else "counts"
        recall = "; diagonal: recall" if normalize else ""
        self.ax.set_title(
            f"Confusion matrix{', ' + when if when else ''}: {kind}\n"
            f"{total:,} test images, accuracy {accuracy:.4f}{recall}"
        )
        return self.figure


def confusion_figure(
    confusion,
    class_names: Sequence[str],
    normalize: bool = False,
    when: str = "",
    dpi: float = 100,
    size: tuple[float, float] = (6.4, 5.8),
) -> Figure:
    """One confusion matrix figure (see ConfusionMatrix), for a PNG."""
    return ConfusionMatrix(class_names, normalize, dpi, size).update(confusion, when)


# --------------------------------------------------------------------------- predictions


def prediction_figure(
    images_u8: torch.Tensor,
    true_names: Sequence[str],
    predicted_names: Sequence[str],
    confidence: Sequence[float],
    columns: int = 6,
    dpi: float = 100,
    heading: str = "",
) -> Figure:
    """Test images as the book's predict_ch3 shows them, each titled with its true class above
    the predicted one and its probability; wrong predictions in red, framed and marked ✗. The
    title starts with `heading` (which checkpoint) and says how many of the shown are right."""
    count = len(true_names)
    columns = min(columns, count)
    rows = -(-count // columns)
    with _style():
        # A heading (which checkpoint) is a line more, and needs the width of a few columns to wrap into.
        width = max(1.45 * columns, 6.4) if heading else 1.45 * columns
        figure = new_figure(width, 1.8 * rows + (0.6 if heading else 0.4), dpi)
        axes = figure.subplots(rows, columns, squeeze=False)
        for k, ax in enumerate(axes.flat):
            ax.set_xticks([])
            ax.set_yticks([])
            if k >= count:
                ax.set_axis_off()
                continue
            wrong = true_names[k] != predicted_names[k]
            ax.imshow(images_u8[k].cpu().numpy(), cmap="gray", vmin=0, vmax=255)
            colour = WRONG_COLOUR if wrong else "black"
            mark = "✗ " if wrong else ""
            ax.set_title(f"{true_names[k]}\n{mark}{predicted_names[k]} {float(confidence[k]):.2f}", color=colour)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour if wrong else "0.8")
                spine.set_linewidth(3 if wrong else 1)
        right = sum(true == predicted for true, predicted in zip(true_names, predicted_names, strict=True))
        score = f"{right} of {count} shown right ({right / count:.0%})"
        legend = "each image: true class, then predicted class and its probability (red ✗: wrong)"
        lines = [heading, f"{score}; {legend}"] if heading else [f"{score}; {legend}"]
        figure.suptitle("\n".join(lines), fontsize=10, wrap=True)
    return figure


def picture_predictions_figure(
    pictures: Sequence,
    seen: Sequence,
    labels: Sequence[str],
    predicted_names: Sequence[str],
    confidence: Sequence[float],
    pairs_per_row: int = 3,
    dpi: float = 100,
) -> Figure:
    """A user's pictures, each as given (any size, colour kept) beside the 28 x 28 image the model
    saw, the pair titled with the predicted class and its probability and labelled with `labels`
    (the file names). Pictures are anything imshow takes: PIL images or arrays."""
    import numpy as np

    count = len(labels)
    pairs_per_row = min(pairs_per_row, count)
    rows = -(-count // pairs_per_row)
    with _style():
        figure = new_figure(2.9 * pairs_per_row, 1.9 * rows + 0.4, dpi)
        cells = figure.subfigures(rows, pairs_per_row, squeeze=False)
        for k, cell in enumerate(cells.flat):
            if k >= count:
                continue
            given_ax, seen_ax = cell.subplots(1, 2)
            given_ax.imshow(np.asarray(pictures[k]), cmap="gray", interpolation="antialiased")
            seen_ax.imshow(as_array(seen[k]), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            for ax in (given_ax, seen_ax):
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_edgecolor("0.8")
            label = labels[k] if len(labels[k]) <= 28 else labels[k][:12] + "…" + labels[k][-15:]
            given_ax.set_xlabel(label, fontsize=8)
            seen_ax.set_xlabel("28×28", fontsize=8)
            cell.suptitle(f"{predicted_names[k]} {float(confidence[k]):.2f}", fontsize=10)
        figure.suptitle(
            "Each picture as given (left) and as the model saw it (right): predicted class and its probability",
            fontsize=10,
        )
    return figure


# --------------------------------------------------------------------------- curves


def training_curves_figure(runs: Sequence[tuple[str, list[dict]]], heading: str = "", dpi: float = 100) -> Figure:
    """The book's Animator figure, split in two: cross-entropy loss (train, test) and accuracy
    (train, test, val where present) against epoch. One line per run and metric: the colour
    names the run, the line style the split (train solid, test dashed, val dotted)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    several = len(runs) > 1
    panels = (
        ("Loss", "cross-entropy loss", ("train_loss", "test_loss")),
        ("Accuracy", "accuracy", ("train_acc", "test_acc", "val_acc")),
    )
    with _style():
        figure = new_figure(10, 4.2 if several else 3.8, dpi)
        axes = figure.subplots(1, 2)
        splits_drawn: set[str] = set()
        for ax, (title, ylabel, keys) in zip(axes, panels, strict=True):
            for run_index, (label, history) in enumerate(runs):
                for key_index, key in enumerate(keys):
                    points = [(entry["epoch"], entry[key]) for entry in history if entry.get(key) is not None]
                    if not points:
                        continue
                    split = key.split("_")[0]
                    splits_drawn.add(split)
                    colour = f"C{run_index % 10}" if several else f"C{key_index}"
                    epochs, values = zip(*points, strict=True)
                    ax.plot(
                        epochs, values, SPLIT_STYLES[split], color=colour, marker="o", markersize=3,
                        label=f"{label}: {key.replace('_', ' ')}" if several else key.replace("_", " "),
                    )  # fmt: skip
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if not several:
                ax.legend(loc="best")
        if several:
            # Two small legends instead of runs x metrics entries: colour = run, line style = split.
            run_handles = [Line2D([], [], color=f"C{i % 10}", marker="o", markersize=3) for i in range(len(runs))]
            longest = max(len(label) for label, _ in runs)
            columns = 1 if longest > 45 else min(len(runs), 2 if longest > 28 else 3)
            figure.legend(run_handles, [label for label, _ in runs], loc="outside lower center", ncols=columns)
            split_handles = [
                Line2D([], [], color="0.3", linestyle=SPLIT_STYLES[s]) for s in SPLIT_STYLES if s in splits_drawn
            ]
            axes[1].legend(split_handles, [s for s in SPLIT_STYLES if s in splits_drawn], loc="best", title="split")
        if heading:
            figure.suptitle(heading, wrap=True)
    return figure


def line_plot(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    log_x: bool = False,
    dpi: float = 100,
) -> Figure:
    """One labelled line (with a marker per point) for each named (xs, ys) series on one axes;
    e.g. validation accuracy against learning rate for a sweep (log_x=True). Save it with save_png."""
    with _style():
        figure = new_figure(6.4, 4.0, dpi)
        ax = figure.subplots()
        for label, (xs, ys) in series.items():
            ax.plot(list(xs), list(ys), marker="o", markersize=4, label=label)
        if log_x:
            ax.set_xscale("log")
        xs_used = sorted({float(x) for xs, _ in series.values() for x in xs})
        if len(xs_used) <= 12:
            # Ticks at the values actually tried (a sweep's grid), written as they were given.
            ax.set_xticks(xs_used, [f"{x:g}" for x in xs_used])
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(loc="best")
    return figure
