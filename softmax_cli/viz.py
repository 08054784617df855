"""Pictures of what the model learned and how it errs, through torchvision and Pillow only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from softmax_cli.data import IMAGE_SIDE, NUM_CLASSES

if TYPE_CHECKING:
    from PIL import Image


def weight_templates(weight: torch.Tensor) -> torch.Tensor:
    """The 10 columns of W (784 x 10) as 10 x 1 x 28 x 28 images, each min-max scaled to [0, 1]."""
    templates = weight.detach().cpu().T.reshape(NUM_CLASSES, 1, IMAGE_SIDE, IMAGE_SIDE)
    low = templates.amin(dim=(1, 2, 3), keepdim=True)
    high = templates.amax(dim=(1, 2, 3), keepdim=True)
    return (templates - low) / (high - low).clamp_min(1e-12)


def confusion_image(confusion: torch.Tensor, class_names: list[str], cell: int = 48) -> torch.Tensor:
    """The confusion matrix as an H x W x 3 uint8 heat map with class names and counts."""
    import numpy as np
    from PIL import Image, ImageDraw

    n = len(class_names)
    margin = 90
    size = margin + n * cell
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    # Row-normalised, so each row shows where that true class went.
    rates = confusion.double() / confusion.sum(1, keepdim=True).clamp_min(1)
    for row in range(n):
        draw.text((4, margin + row * cell + cell // 2 - 5), class_names[row][:13], fill="black")
        draw.text((margin + row * cell + 2, margin - 14 - 12 * (row % 2)), class_names[row][:7], fill="black")
        for col in range(n):
            shade = int(255 * (1 - float(rates[row, col])))
            x0, y0 = margin + col * cell, margin + row * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=(shade, shade, 255), outline=(200, 200, 200))
            text_colour = "white" if shade < 128 else "black"
            draw.text((x0 + 4, y0 + cell // 2 - 5), str(int(confusion[row, col])), fill=text_colour)
    return torch.from_numpy(np.asarray(image).copy())


def template_sheet(weight: torch.Tensor, class_names: list[str], scale: int = 4) -> "Image.Image":
    """The ten weight templates enlarged `scale` times, each titled with its class: what each
    class's score looks for (bright) and against (dark). Returns a PIL image."""
    from PIL import Image, ImageDraw

    templates = (weight_templates(weight) * 255).round().to(torch.uint8)
    side, title, pad = IMAGE_SIDE * scale, 14, 6
    sheet = Image.new("L", (5 * (side + pad) + pad, 2 * (side + title + pad) + pad), 255)
    draw = ImageDraw.Draw(sheet)
    for k, name in enumerate(class_names):
        x = pad + (k % 5) * (side + pad)
        y = pad + (k // 5) * (side + title + pad)
        draw.text((x, y), name, fill=0)
        tile = Image.fromarray(templates[k, 0].numpy(), mode="L").resize((side, side), Image.NEAREST)
        sheet.paste(tile, (x, y + title))
    return sheet


def prediction_grid(
    images_u8: torch.Tensor, titles: list[tuple[str, str]], wrong: list[bool], columns: int = 6, scale: int = 3
) -> "Image.Image":
    """A grid of test images, each titled with its true and predicted class (as the book's
    predict_ch3 does), the wrong ones titled in red and framed. Returns a PIL image."""
    from PIL import Image, ImageDraw

    side = IMAGE_SIDE * scale
    title_height = 26
    cell_width = max(side, 96)
    rows = -(-len(titles) // columns)
    sheet = Image.new("RGB", (columns * (cell_width + 8), rows * (side + title_height + 8)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (image, (true_name, predicted_name), is_wrong) in enumerate(zip(images_u8, titles, wrong, strict=True)):
        x = (k % columns) * (cell_width + 8) + 4
        y = (k // columns) * (side + title_height + 8) + 4
        colour = (200, 0, 0) if is_wrong else (0, 0, 0)
        draw.text((x, y), true_name, fill=(0, 0, 0))
        draw.text((x, y + 12), ("x " if is_wrong else "") + predicted_name, fill=colour)
        tile = Image.fromarray(image.numpy(), mode="L").resize((side, side), Image.NEAREST)
        sheet.paste(tile, (x, y + title_height))
        if is_wrong:
            draw.rectangle(
                [x - 2, y + title_height - 2, x + side + 1, y + title_height + side + 1], outline=colour, width=2
            )
    return sheet
