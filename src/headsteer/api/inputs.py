"""What `headsteer.api` accepts from a user, checked and turned into tensors: images, labels, layers,
latent ids. A wrong value raises `HeadsteerError` naming it and the fix."""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image

from headsteer.data.pil_images import to_uint8
from headsteer.errors import HeadsteerError

ImageInput = Union[torch.Tensor, np.ndarray, Image.Image, Sequence[Image.Image]]
"""Images as the API takes them: uint8 tensors or arrays (B, C, H, W), (C, H, W) or (H, W); PIL images
or a list of them; or a float tensor (B, C, h, w) that is already the model's input (`Run.transform`)."""


def as_batch(images: ImageInput, in_chans: int) -> torch.Tensor:
    """(B, C, H, W): uint8 pixels on the CPU, or a float batch already transformed (left where it is)."""
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)):
        if not images or not all(isinstance(img, Image.Image) for img in images):
            raise HeadsteerError("images: a list must hold PIL images (one or more); pass tensors as one (B, C, H, W)")
        return to_uint8(images, len(images), in_chans == 1, None, "the images given")
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not torch.is_tensor(images):
        raise HeadsteerError(f"images of type {type(images).__name__}; pass a uint8 tensor (B, C, H, W) or PIL images")
    shape = tuple(images.shape)
    if images.ndim in (2, 3):
        images = images.reshape(1, *([1] if images.ndim == 2 else []), *images.shape)
    if images.ndim != 4 or images.shape[1] != in_chans:
        raise HeadsteerError(
            f"images of shape {shape}; the model takes (B, {in_chans}, H, W) (or one image, ({in_chans}, H, W))"
        )
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise HeadsteerError(f"images of dtype {images.dtype}; pass uint8 pixels (or the float output of transform)")
    return images


def as_labels(labels: Sequence[int] | torch.Tensor, n: int) -> torch.Tensor:
    """(n,) int64 class labels on the CPU."""
    out = torch.as_tensor(labels).long().cpu().reshape(-1)
    if out.numel() != n:
        raise HeadsteerError(f"{out.numel()} labels for {n} images; give one label per image")
    return out


def check_layer(layer: int | None, headline: int, layers: list[int], depth: int) -> int:
    """`layer` (None = the headline layer; negative = from the end) when the run has an SAE there."""
    resolved = headline if layer is None else layer % depth if -depth <= layer < depth else layer
    if resolved not in layers:
        raise HeadsteerError(f"layer={layer} has no SAE in this run; use one of {layers} (extract.layers)")
    return resolved


def latent_ids(ids: Sequence[int] | torch.Tensor, d_sae: int, key: str) -> torch.Tensor:
    """(|S|,) distinct int64 latent ids, each in 0..d_sae-1 (`key` names them in the error)."""
    out = torch.as_tensor(ids).long().reshape(-1)
    if out.numel() == 0 or (out < 0).any() or (out >= d_sae).any():
        raise HeadsteerError(f"{key}={out.tolist()} must be one or more latent ids in 0..{d_sae - 1}")
    if out.unique().numel() != out.numel():
        raise HeadsteerError(f"{key}={out.tolist()} repeats a latent; list each one once")
    return out
