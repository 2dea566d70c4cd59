"""Batch transforms on uint8 tensors: augmentation, resize, normalisation.

Done on whole batches (on the training device) rather than per PIL image: the data already sits in
memory as a tensor, and this keeps augmentation a pure function of a seeded generator.
"""

from __future__ import annotations

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

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = images.float().div_(255.0)  # (B, C, H, W) in [0, 1]
        if self.augment:
            x = random_crop_flip(x, generator)
        if x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std


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
