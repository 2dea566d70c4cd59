"""Decoded PIL images -> one in-memory uint8 split tensor, shared by the imagefolder and hf loaders."""

from __future__ import annotations

import io
from typing import Iterable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

from headsteer.data.base import seeded_subset
from headsteer.errors import HeadsteerError

GRAY_MODES = ("L", "1", "I;16", "I")


def _read(source: str | bytes, name: str, pixels: bool):
    """Open an image file or its bytes; the header alone, or (pixels) the decoded image. Unreadable -> one line."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            if not pixels:
                return img.mode, img.size
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise HeadsteerError(f"cannot read image {name} ({type(exc).__name__}); delete or replace it") from None


def header(source: str | bytes, name: str) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) of an image file or its bytes, from the header alone (no pixel decoding)."""
    return _read(source, name, pixels=False)


def decode(path: str) -> Image.Image:
    """The decoded image of a file."""
    return _read(path, path, pixels=True)


def mixed_sizes(where: str, a: tuple[int, int], b: tuple[int, int]) -> HeadsteerError:
    """The one-line error for images of different sizes (a, b: (width, height)) without data.image_size."""
    return HeadsteerError(
        f"images in {where} have different sizes ({a[0]}x{a[1]}, {b[0]}x{b[1]}, ...); set data.image_size=N "
        "to resize and centre-crop them to N x N"
    )


def common_shape(heads: list[tuple[str, tuple[int, int]]], size: int | None, where: str) -> tuple[bool, tuple]:
    """(gray, (C, H, W)) of a dataset from its images' headers; mixed sizes need `size` (data.image_size)."""
    sizes = sorted({s for _, s in heads})
    if size is None and len(sizes) > 1:
        raise mixed_sizes(where, *sizes[:2])
    gray = all(mode in GRAY_MODES for mode, _ in heads)
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
