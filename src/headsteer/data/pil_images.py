"""Decoded PIL images -> one in-memory uint8 split tensor, shared by the imagefolder and hf loaders.

Every PIL mode becomes 8 bits per channel (`to_8bit`), gray modes as one channel ('L'), the others
as RGB, or is refused with one line naming the file:
- 16-bit integer modes (I;16, I;16L, I;16B, I;16N) are scaled by their type's range (0..65535);
  32-bit integer 'I' the same when its values fit in 0..65535 (what PIL gives for most 16-bit
  files), else by the image's own min..max; 32-bit float 'F' maps 0..1 to 0..255 when its values lie
  there, else its own min..max. A constant image outside those ranges becomes 0.
- Transparency (RGBA, LA, PA, palette images with a transparent colour, premultiplied RGBa / La) is
  composited over black, which for fully transparent pixels stored as black equals dropping alpha.
- CMYK, YCbCr, HSV, LAB, RGBX, palette: PIL's conversion to RGB; '1': 0 or 255.
- An EXIF orientation (a phone photo stored sideways) is applied first (`ImageOps.exif_transpose`), so
  images are seen upright, as viewers show them; the size from a header is the upright one.
"""

from __future__ import annotations

import io
from typing import Iterable

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import v2

from headsteer.core.errors import HeadsteerError
from headsteer.data.base import seeded_subset

GRAY_MODES = ("L", "1", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
"""Modes held as one channel (the others become RGB)."""
WIDE_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N")
"""Modes with more than 8 bits per pixel, scaled to 0..255 by `_scaled`."""
ALPHA_MODES = ("RGBA", "LA", "PA")


ORIENTATION = 0x0112
"""The EXIF tag of an image's orientation."""
TURNED = (5, 6, 7, 8)
"""Orientations that turn the image by 90 degrees (width and height swap)."""


def _read(source: str | bytes, name: str, pixels: bool):
    """Open an image file or its bytes; the header alone, or (pixels) the decoded image. Unreadable -> one line."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            if not pixels:
                w, h = img.size
                return img.mode, (h, w) if img.getexif().get(ORIENTATION) in TURNED else (w, h)
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise HeadsteerError(f"cannot read image {name} ({type(exc).__name__}); delete or replace it") from None


def header(source: str | bytes, name: str) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) of an image file or its bytes, from the header alone (no pixel decoding)."""
    return _read(source, name, pixels=False)


def decode(path: str) -> Image.Image:
    """The decoded image of a file, as 8-bit gray or RGB (`to_8bit`)."""
    return to_8bit(_read(path, path, pixels=True), path)


def _scaled(img: Image.Image, name: str) -> Image.Image:
    """A 16- or 32-bit gray image as 8-bit 'L' (the ranges in the module docstring)."""
    a = np.asarray(img).astype(np.float64)  # (H, W)
    if not np.isfinite(a).all():
        raise HeadsteerError(f"image {name} (mode {img.mode}) holds NaN or infinite pixels; fix or remove it")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if img.mode == "F" and 0.0 <= lo and hi <= 1.0:
        top, lo = 1.0, 0.0
    elif img.mode != "F" and 0.0 <= lo and hi <= 65535.0:
        top, lo = 65535.0, 0.0
    else:
        top = hi
    scale = 255.0 / (top - lo) if top > lo else 0.0
    return Image.fromarray(np.rint((a - lo) * scale).astype(np.uint8))


def _over_black(img: Image.Image) -> Image.Image:
    """An image with transparency, composited over black: 'L' from gray + alpha, else 'RGB'."""
    if img.mode == "La":  # premultiplied: the colour already is the composite over black
        return img.getchannel(0)
    if img.mode == "RGBa":
        return Image.fromarray(np.asarray(img)[..., :3].copy())
    a = np.asarray(img.convert("LA" if img.mode == "LA" else "RGBA")).astype(np.float64)  # (H, W, 2 or 4)
    out = np.rint(a[..., :-1] * a[..., -1:] / 255.0).astype(np.uint8)
    return Image.fromarray(out[..., 0] if img.mode == "LA" else out)


def to_8bit(img: Image.Image, name: str) -> Image.Image:
    """`img`, upright (its EXIF orientation applied), as 8-bit 'L' (gray modes) or 'RGB' (the module
    docstring says how each mode maps)."""
    mode = img.mode
    try:
        if img.getexif().get(ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img)
        if mode in ("L", "RGB"):
            return img
        if mode in WIDE_MODES:
            return _scaled(img, name)
        if mode in ("La", "RGBa") or mode in ALPHA_MODES or (mode == "P" and "transparency" in img.info):
            return _over_black(img)
        return img.convert("L" if mode == "1" else "RGB")
    except (ValueError, OSError) as exc:
        raise HeadsteerError(
            f"cannot convert image {name} (mode {mode}) to 8 bits ({exc}); save it as 8-bit gray or RGB"
        ) from None


def mixed_sizes(where: str, a: tuple[int, int], b: tuple[int, int], names: tuple[str, str] | None = None):
    """The one-line error for images of different sizes (a, b: (width, height)) without data.image_size;
    `names`: one file of each size, when known."""
    which = f": {names[0]} is {a[0]}x{a[1]}, {names[1]} is {b[0]}x{b[1]}" if names else ""
    return HeadsteerError(
        f"images in {where} have different sizes ({a[0]}x{a[1]}, {b[0]}x{b[1]}, ...){which}; set data.image_size=N "
        "to resize and centre-crop them to N x N"
    )


def common_shape(heads: list[tuple[str, str, tuple[int, int]]], size: int | None, where: str) -> tuple[bool, tuple]:
    """(gray, (C, H, W)) of a dataset from its images' headers, (name, mode, (width, height)) each; mixed
    sizes need `size` (data.image_size)."""
    if not heads:
        raise HeadsteerError(f"{where} holds no images")
    by_size = {s: name for name, _, s in reversed(heads)}  # a size -> its first image
    sizes = sorted(by_size)
    if size is None and len(sizes) > 1:
        raise mixed_sizes(where, *sizes[:2], names=(by_size[sizes[0]], by_size[sizes[1]]))
    gray = all(mode in GRAY_MODES for _, mode, _ in heads)
    h, w = (size, size) if size else sizes[0][::-1]
    return gray, (1 if gray else 3, h, w)


def to_uint8(images: Iterable[Image.Image], n: int, gray: bool, size: int | None, where: str) -> torch.Tensor:
    """(N, C, H, W) uint8, filled one image at a time (only one decoded image is alive at once); images
    of different sizes need `size` (resize the shorter side, centre-crop)."""
    resize = v2.Compose([v2.Resize(size), v2.CenterCrop(size)]) if size else None
    out, first = None, None
    for i, img in enumerate(images):
        if resize is None and first is not None and img.size != first:
            raise mixed_sizes(where, first, img.size)
        first = first or img.size
        t = torch.from_numpy(np.asarray(img.convert("L" if gray else "RGB")).copy())
        t = t[None] if gray else t.permute(2, 0, 1)
        t = resize(t) if resize else t
        if out is None:
            out = torch.empty((n, *t.shape), dtype=torch.uint8)
        out[i] = t
    return out if out is not None else torch.zeros((0, 1 if gray else 3, size or 0, size or 0), dtype=torch.uint8)


STAT_IMAGES = 2000
"""Training images (seeded sample) behind the mean and std of a streamed dataset (in memory: all)."""


def channel_stats(images, chunk: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (unbiased) std in [0, 1] of (N, C, H, W) uint8 training images, summed in
    float64 chunk by chunk: all of them in memory, a seeded sample of STAT_IMAGES of a streamed split."""
    rows = None if isinstance(images, torch.Tensor) else seeded_subset(len(images), STAT_IMAGES, seed=0)
    rows = torch.arange(len(images)) if rows is None else rows
    total = sq = 0.0
    for part in rows.split(chunk):
        x = images[part].double().div(255)  # (b, C, H, W)
        total, sq = total + x.sum(dim=(0, 2, 3)), sq + (x * x).sum(dim=(0, 2, 3))
    count = rows.numel() * images.shape[2] * images.shape[3]
    mean = total / count
    var = (sq - count * mean * mean) / max(1, count - 1)
    return tuple(mean.tolist()), tuple(var.clamp(min=0).sqrt().clamp(min=1e-3).tolist())
