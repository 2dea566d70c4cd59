"""Decoded PIL images -> one in-memory uint8 split tensor, shared by the imagefolder and hf loaders."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

from headsteer.errors import HeadsteerError

GRAY_MODES = ("L", "1", "I;16", "I")


def header(source: str | bytes, name: str) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) of an image file or its bytes, from the header alone (no pixel decoding)."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            return img.mode, img.size
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise HeadsteerError(f"cannot read image {name} ({type(exc).__name__}); delete or replace it") from None


def common_shape(heads: list[tuple[str, tuple[int, int]]], size: int | None, where: str) -> tuple[bool, tuple]:
    """(gray, (C, H, W)) of a dataset from its images' headers; mixed sizes need `size` (data.image_size)."""
    sizes = sorted({s for _, s in heads})
    if size is None and len(sizes) > 1:
        (w1, h1), (w2, h2) = sizes[:2]
        raise HeadsteerError(
            f"images in {where} have different sizes ({w1}x{h1}, {w2}x{h2}, ...); set data.image_size=N "
            "to resize and centre-crop them to N x N"
        )
    gray = all(mode in GRAY_MODES for mode, _ in heads)
    h, w = (size, size) if size else sizes[0][::-1]
    return gray, (1 if gray else 3, h, w)


def to_uint8(images: list[Image.Image], gray: bool, size: int | None, where: str) -> torch.Tensor:
    """(N, C, H, W) uint8; images of different sizes need `size` (resize the shorter side, centre-crop)."""
    sizes = {img.size for img in images}
    if size is None and len(sizes) > 1:
        a, b = sorted(sizes)[:2]
        raise HeadsteerError(
            f"images in {where} have different sizes ({a[0]}x{a[1]}, {b[0]}x{b[1]}, ...); set data.image_size=N "
            "to resize and centre-crop them to N x N"
        )
    resize = v2.Compose([v2.Resize(size), v2.CenterCrop(size)]) if size else (lambda t: t)
    out = []
    for img in images:
        t = torch.from_numpy(np.asarray(img.convert("L" if gray else "RGB")).copy())
        out.append(resize(t[None] if gray else t.permute(2, 0, 1)))
    return torch.stack(out)


STAT_IMAGES = 2000
"""Training images (seeded sample) behind the mean and std of a streamed dataset (in memory: all)."""


def channel_stats(images) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] of (N, C, H, W) uint8 training images: all of them in memory,
    a seeded sample of STAT_IMAGES of a streamed split (`lazy.LazyImages`)."""
    if not isinstance(images, torch.Tensor):
        rows = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:STAT_IMAGES]
        images = images[rows.sort().values]
    x = images.float().div(255)
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).clamp(min=1e-3).tolist())
