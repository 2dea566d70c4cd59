"""Decoded PIL images -> one in-memory uint8 split tensor, shared by the imagefolder and hf loaders."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from headsteer.errors import HeadsteerError

GRAY_MODES = ("L", "1", "I;16", "I")


def all_gray(images: list[Image.Image]) -> bool:
    """True when every image is single-channel (then the dataset gets 1 channel, else RGB)."""
    return all(img.mode in GRAY_MODES for img in images)


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


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] of (N, C, H, W) uint8 training images."""
    x = images.float().div(255)
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).clamp(min=1e-3).tolist())
