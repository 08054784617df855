"""A user's own pictures, brought to what the model was trained on. No CLI code here; nothing prints.

Fashion-MNIST's images were made from product photos on a light background: cropped to the
object, the longest side scaled to 28 pixels, centred on a 28 x 28 canvas, inverted (the
object light on black) and stored as 8-bit grey. to_fashion_mnist does the same to any
picture Pillow opens (PNG, JPEG, ...; RGB, RGBA, grey, palette; any size):

1. grey: the ITU-R 601 luma Pillow's convert("L") computes; transparent pixels are first
   laid on the background that sets the object apart (black under a light object, white
   under a dark one); 16-bit and float pixels are scaled to 0..255;
2. light on dark: the background is the median of the border pixels; a light background
   (above mid-grey) is inverted;
3. cropped to the bounding box of the pixels clearly lighter than that background
   (OBJECT_THRESHOLD above it);
4. the longest side scaled to 28 pixels, the aspect ratio kept (Pillow's LANCZOS);
5. levels: the background becomes 0 and the brightest pixel 255, as in about 92% of the
   test images (the rest peak a little lower);
6. centred on a black 28 x 28 canvas.

model_input turns the result into the float pixels in [0, 1] the model reads (uint8 / 255,
as training's batches do); the model applies its own standardisation. Pillow, numpy and
torch are imported inside the functions that use them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from softmax_cli.data.fashion_mnist import IMAGE_SIDE
from softmax_cli.errors import PictureError, UsageError

if TYPE_CHECKING:
    import torch
    from PIL import Image

# A picture whose header promises more pixels than this is refused before it is decoded: a
# small file can expand to gigabytes (a decompression bomb). 50 megapixels is a 200 MB RGBA
# image, above any camera's photo a user would show a 28 x 28 model.
MAX_PIXELS = 50_000_000
# A pixel belongs to the object when it is this much lighter than the background (0..255, after
# the inversion): about 10% of the range, well above JPEG noise (Fashion-MNIST trimmed at 5%).
OBJECT_THRESHOLD = 26
# The side of the copy of each picture kept to be shown beside what the model saw.
SHOWN_SIDE = 256


@dataclass
class Picture:
    """One user picture: where it came from, a small copy as given (RGBA), and the 28 x 28 grey image the model sees."""

    path: Path
    shown: Image.Image
    seen: Image.Image


def picture_files(paths: list[Path], option: str = "--image") -> list[Path]:
    """The files to read, in order: each file as given, each folder's pictures sorted by name.

    A path that does not exist is a UsageError (exit 2); a folder without one picture Pillow
    could open (judged by the name's suffix) is a PictureError.
    """
    from PIL import Image

    suffixes = set(Image.registered_extensions())
    files = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes and p.is_file())
            if not found:
                raise PictureError(f"{path}: a folder without pictures (no .png, .jpg or other file Pillow reads)")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder", option)
    return files


def open_picture(path: Path) -> Image.Image:
    """The picture in `path`, decoded: refused in one PictureError line when it is not a picture,
    is truncated or damaged, or is larger than MAX_PIXELS (judged from its header, before decoding)."""
    from PIL import Image

    if not path.is_file():
        raise PictureError(f"{path}: not a regular file")
    with warnings.catch_warnings():
        # Pillow warns above its own limit (89 MP) and raises above twice that; ours is lower.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except Image.DecompressionBombError:
            raise _too_large(path, None) from None
        except Image.UnidentifiedImageError:
            raise PictureError(f"{path}: not a picture Pillow can read (PNG, JPEG, GIF, BMP, TIFF, ...)") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise PictureError(f"{path}: cannot read it: {_reason(exc)}") from None
        with image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise _too_large(path, (width, height))
            try:
                image.load()
            except Image.DecompressionBombError:
                raise _too_large(path, (width, height)) from None
            except (OSError, ValueError, SyntaxError, EOFError) as exc:
                raise PictureError(f"{path}: a damaged or truncated picture: {_reason(exc)}") from None
            return image.copy()


def _too_large(path: Path, size: tuple[int, int] | None) -> PictureError:
    said = f"{size[0]} x {size[1]} pixels" if size else "its header promises too many pixels"
    return PictureError(f"{path}: too large ({said}; at most {MAX_PIXELS // 1_000_000} megapixels are read)")


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def load_picture(path: Path) -> Picture:
    """Read one picture (open_picture) and prepare it (to_fashion_mnist), keeping a small copy as given."""
    from PIL import ImageOps

    image = ImageOps.exif_transpose(open_picture(path))
    seen = to_fashion_mnist(image, path)
    shown = _grey(image, keep_colour=True, name=path)
    shown.thumbnail((SHOWN_SIDE, SHOWN_SIDE))
    return Picture(path, shown, seen)


def to_fashion_mnist(image: Image.Image, name: object = "the picture") -> Image.Image:
    """The 28 x 28 grey image ("L") Fashion-MNIST would have made of `image` (see the module's steps).

    A picture of one colour holds no object: a PictureError naming `name`.
    """
    import numpy as np
    from PIL import Image as PILImage
    from PIL import ImageOps

    grey = _grey(image, name=name)
    pixels = np.asarray(grey)
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    background = int(np.median(border))
    if background > 127:
        grey = ImageOps.invert(grey)
        background = 255 - background
    cut = background + OBJECT_THRESHOLD
    box = grey.point([255 if v > cut else 0 for v in range(256)]).getbbox()
    if box is None:
        raise PictureError(f"{name}: no object stands out from the background (a picture of one colour?)")
    cropped = grey.crop(box)
    width, height = cropped.size
    scale = IMAGE_SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cropped.resize(size, PILImage.Resampling.LANCZOS)
    peak = max(small.getextrema()[1], background + 1)
    small = small.point([min(255, max(0, round((v - background) * 255 / (peak - background)))) for v in range(256)])
    canvas = PILImage.new("L", (IMAGE_SIDE, IMAGE_SIDE), 0)
    canvas.paste(small, ((IMAGE_SIDE + 1 - size[0]) // 2, (IMAGE_SIDE + 1 - size[1]) // 2))
    return canvas


def model_input(image: Image.Image) -> torch.Tensor:
    """The 28 x 28 float32 pixels in [0, 1] the model reads for `image` (any picture: to_fashion_mnist
    first when it is not 28 x 28 grey already); stack them, shaped N x 1 x 28 x 28, for model.logits."""
    import numpy as np
    import torch

    if image.mode != "L" or image.size != (IMAGE_SIDE, IMAGE_SIDE):
        image = to_fashion_mnist(image)
    return torch.from_numpy(np.array(image, dtype=np.uint8)).to(torch.float32).div_(255)


def _grey(image: Image.Image, keep_colour: bool = False, name: object = "the picture") -> Image.Image:
    """The picture as 8-bit grey ("L"; with keep_colour, RGBA as given) with transparency laid on a
    contrasting background (grey) or kept (colour); 16-bit and float pixels scaled to 0..255."""
    import numpy as np
    from PIL import Image as PILImage
    from PIL import ImageStat

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        pixels = np.asarray(image, dtype=np.float32)
        high = pixels.max(initial=0)
        scale = 1 / 257 if image.mode.startswith("I") and high > 255 else 255 if image.mode == "F" and high <= 1 else 1
        image = PILImage.fromarray(np.clip(pixels * scale, 0, 255).astype(np.uint8))
    try:
        if keep_colour:
            return image.convert("RGBA")
        if image.mode in ("L", "1", "RGB", "CMYK", "YCbCr") and "transparency" not in image.info:
            return image.convert("L")
        rgba = image.convert("RGBA")
    except ValueError as exc:  # a mode Pillow cannot convert (LAB, HSV, ...)
        raise PictureError(f"{name}: cannot read {image.mode} pictures: {exc}") from None
    grey, alpha = rgba.convert("L"), rgba.getchannel("A")
    if alpha.getextrema()[0] == 255:
        return grey
    opaque = alpha.point([255 if a >= 128 else 0 for a in range(256)])
    light = opaque.getbbox() is not None and ImageStat.Stat(grey, opaque).mean[0] > 127.5
    return PILImage.composite(grey, PILImage.new("L", grey.size, 0 if light else 255), alpha)
