"""What `headsteer.api` accepts from a user, checked and turned into tensors: images, labels, layers,
latent ids, numbers. A wrong value raises `HeadsteerError` naming it and the fix (one line).

Images are pixels, always: uint8 in 0..255, or floats in [0, 1] (torchvision's `ToTensor` convention),
which are scaled by 255 and then transformed exactly as uint8 pixels are. Floats outside [0, 1] (an
already-normalised batch, say) are refused, never guessed at."""

from __future__ import annotations

import math
import numbers
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image

from headsteer.core.errors import HeadsteerError
from headsteer.data.pil_images import to_uint8

ImageInput = Union[torch.Tensor, np.ndarray, Image.Image, Sequence[Image.Image]]
"""Images as the API takes them: a tensor or array (B, C, H, W), (C, H, W) or (H, W) of uint8 pixels
0..255 or float pixels in [0, 1]; or PIL images (one, or a list)."""


def as_batch(images: ImageInput, in_chans: int) -> torch.Tensor:
    """(B, C, H, W) pixels on the CPU: uint8, or float32 in [0, 1]; B >= 1."""
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)):
        if not images or not all(isinstance(img, Image.Image) for img in images):
            raise HeadsteerError("images: a list must hold PIL images (one or more); pass tensors as one (B, C, H, W)")
        return to_uint8(images, len(images), in_chans == 1, None, "the images given")
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not torch.is_tensor(images):
        raise HeadsteerError(f"images of type {type(images).__name__}; pass a uint8 tensor (B, C, H, W) or PIL images")
    shape = tuple(images.shape)
    if images.ndim in (2, 3):
        images = images.reshape(1, *([1] if images.ndim == 2 else []), *images.shape)
    if images.ndim != 4 or images.shape[1] != in_chans:
        raise HeadsteerError(
            f"images of shape {shape}; the model takes (B, {in_chans}, H, W) (or one image, ({in_chans}, H, W))"
        )
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise HeadsteerError(f"images of shape {shape} hold no pixels; pass one image or more")
    if images.dtype == torch.uint8:
        return images.cpu()
    if not images.is_floating_point():
        raise HeadsteerError(f"images of dtype {images.dtype}; pass uint8 pixels 0..255 or float pixels in [0, 1]")
    return _float_pixels(images.detach().cpu().float())


def _float_pixels(x: torch.Tensor) -> torch.Tensor:
    """Float pixels, checked: finite and in [0, 1]."""
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise HeadsteerError(f"images hold {bad} NaN or infinite pixel value(s); pass finite pixels")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0 or hi > 1:
        raise HeadsteerError(
            f"float images range over [{lo:.3g}, {hi:.3g}], but float pixels must lie in [0, 1] (headsteer "
            "normalises them itself): pass uint8 pixels 0..255, or floats divided by 255"
        )
    return x


def as_labels(labels: Sequence[int] | torch.Tensor, n: int, num_classes: int) -> torch.Tensor:
    """(n,) int64 class labels in 0..num_classes-1, on the CPU."""
    out = _integers(labels, "labels", "class indices")
    if out.ndim != 1:
        raise HeadsteerError(f"labels of shape {tuple(out.shape)}; pass one class index per image, shape ({n},)")
    if out.numel() != n:
        raise HeadsteerError(f"{out.numel()} labels for {n} images; give one label per image")
    bad = out[(out < 0) | (out >= num_classes)]
    if bad.numel():
        raise HeadsteerError(
            f"labels hold {bad[0].item()}, outside 0..{num_classes - 1} (the run's {num_classes} classes); "
            "pass class indices (Run.classes names them)"
        )
    return out


def _integers(values, key: str, what: str) -> torch.Tensor:
    """`values` as an int64 tensor on the CPU; strings, bools and floats refused."""
    if isinstance(values, (str, bytes)):
        raise HeadsteerError(f"{key}={values!r} is a string; pass {what} as a list or tensor of ints")
    try:
        out = torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError):
        raise HeadsteerError(f"{key}={values!r} is not a list of ints; pass {what} as ints") from None
    if out.dtype == torch.bool or out.is_floating_point() or out.is_complex():
        raise HeadsteerError(f"{key} of dtype {out.dtype}; pass {what} as ints")
    return out.long().cpu()


def block_index(layer, hint: str = "") -> int:
    """`layer` when it is an int (a block index; negative counts from the end)."""
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
        raise HeadsteerError(f"layer={layer!r} must be a block index (an int){hint}")
    return int(layer)


def check_layer(layer: int | None, headline: int, layers: list[int], depth: int) -> int:
    """`layer` (None = the headline layer; negative = from the end) when the run has an SAE there."""
    if layer is not None:
        layer = block_index(layer, f"; use one of {layers}")
    resolved = headline if layer is None else layer % depth if -depth <= layer < depth else layer
    if resolved not in layers:
        raise HeadsteerError(f"layer={layer} has no SAE in this run; use one of {layers} (extract.layers)")
    return resolved


def latent_ids(ids, d_sae: int, key: str, num_classes: int | None = None) -> torch.Tensor:
    """(|S|,) distinct int64 latent ids, each in 0..d_sae-1; with `num_classes`, also (C, |S|): one set
    per class (each row distinct). `key` names them in the error."""
    out = _integers(ids, key, "latent ids")
    shapes = "(|S|,)" + (f" or (C={num_classes}, |S|)" if num_classes is not None else "")
    if out.ndim == 2 and num_classes is not None and out.shape[0] != num_classes:
        raise HeadsteerError(f"{key} of shape {tuple(out.shape)}: one row per class needs {num_classes} rows")
    if out.ndim not in ((1, 2) if num_classes is not None else (1,)) or out.numel() == 0:
        raise HeadsteerError(f"{key} of shape {tuple(out.shape)}; pass one or more latent ids, shape {shapes}")
    if (out < 0).any() or (out >= d_sae).any():
        raise HeadsteerError(f"{key}={out.tolist()} must be one or more latent ids in 0..{d_sae - 1}")
    rows = out.reshape(-1, out.shape[-1])
    if (rows.sort(1).values.diff(dim=1) == 0).any():
        raise HeadsteerError(f"{key}={out.tolist()} repeats a latent; list each one once")
    return out


def finite(value, key: str) -> float:
    """A finite real number (int or float, not bool) as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise HeadsteerError(f"{key}={value!r} must be a number (e.g. {key}=1.5)")
    if not math.isfinite(value):
        raise HeadsteerError(f"{key}={value} must be a finite number")
    return float(value)


def as_batch_size(value, default: int) -> int:
    """`value` (None = `default`) as a batch size >= 1."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise HeadsteerError(f"batch_size={value!r} must be a whole number >= 1 (or None for {default})")
    return int(value)


def choice(value, allowed, key: str) -> str:
    """`value` when it is one of `allowed` (strings)."""
    if not isinstance(value, str) or value not in allowed:
        raise HeadsteerError(f"{key}={value!r} is not one of {', '.join(allowed)}")
    return value
