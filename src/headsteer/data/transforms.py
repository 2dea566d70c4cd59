"""Batch transforms on uint8 tensors: augmentation, resize, normalisation.

Done on whole batches (on the training device) rather than per PIL image: the data already sits in
memory as a tensor, and this keeps augmentation a pure function of a seeded generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class BatchTransform:
    img_size: int
    """Output side length; images are resized (bilinear) when it differs from the input."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = False
    """Random crop with padding (1/8 of the side) and horizontal flip."""
    crop_pct: float = 1.0
    """Centre crop of a pretrained model's eval transform (timm's data config): resize to img_size / crop_pct,
    then crop img_size. 1.0 = resize straight to img_size."""
    interpolation: str = "bilinear"
    """Resize mode: 'bilinear' (scratch models, no antialias) or a pretrained config's (e.g. 'bicubic', with
    antialias, as PIL resizes)."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = images.float().div_(255.0)  # (B, C, H, W) in [0, 1]
        if self.augment:
            x = random_crop_flip(x, generator)
        x = self.resize(x)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """To img_size x img_size: a plain bilinear resize (scratch models), or timm's eval resize and centre
        crop of the pretrained config (interpolation, crop_pct)."""
        if self.interpolation == "bilinear" and self.crop_pct == 1.0:
            if x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
                x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
            return x
        return _resize_crop(x, self.img_size, self.crop_pct, self.interpolation)


def _resize_crop(x: torch.Tensor, size: int, crop_pct: float, mode: str) -> torch.Tensor:
    """timm's eval resize: shorter side to floor(size / crop_pct) with `mode`, then the centre size x size."""
    H, W = x.shape[-2:]
    scale = math.floor(size / crop_pct)
    h, w = (scale, max(scale, round(W * scale / H))) if H <= W else (max(scale, round(H * scale / W)), scale)
    if (h, w) != (H, W):
        x = F.interpolate(x, size=(h, w), mode=mode, align_corners=False, antialias=True).clamp_(0, 1)
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def random_crop_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample random translation by up to side/8 pixels (zero padding) and horizontal flip."""
    B, C, H, W = x.shape
    pad = max(1, H // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (B,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (B,), generator=generator)
    flip = torch.rand(B, generator=generator) < 0.5
    rows = (dy.view(B, 1) + torch.arange(H).view(1, H)).to(x.device)  # (B, H)
    cols = (dx.view(B, 1) + torch.arange(W).view(1, W)).to(x.device)  # (B, W)
    cols = torch.where(flip.view(B, 1).to(x.device), cols.flip(1), cols)
    b = torch.arange(B, device=x.device).view(B, 1, 1)
    out = padded.permute(0, 2, 3, 1)[b, rows.view(B, H, 1), cols.view(B, 1, W)]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()
