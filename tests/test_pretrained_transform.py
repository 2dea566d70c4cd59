"""A pretrained model's eval transform follows timm's data config (mean, std, size, crop, interpolation):
our batched tensor transform against timm's own `create_transform` on PIL images."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from headsteer.data.transforms import BatchTransform


@pytest.mark.parametrize("side", [64, 300])  # upsampled and downsampled to 224
def test_eval_transform_matches_timm_create_transform(side):
    data_cfg = timm.data.resolve_model_data_config(timm.create_model("vit_small_patch16_224"))
    assert data_cfg["crop_pct"] == 0.9 and data_cfg["interpolation"] == "bicubic"
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(side // 8, side // 8, 3), dtype=np.uint8)
    array = np.asarray(Image.fromarray(small).resize((side, side), Image.BILINEAR))  # smooth, like a photo
    theirs = timm.data.create_transform(**data_cfg, is_training=False)(Image.fromarray(array))  # (3, 224, 224)
    ours = BatchTransform(224, data_cfg["mean"], data_cfg["std"], crop_pct=0.9, interpolation="bicubic")(
        torch.from_numpy(array.copy()).permute(2, 0, 1)[None]
    )[0]
    assert ours.shape == theirs.shape == (3, 224, 224)
    diff = (ours - theirs).abs()
    assert diff.mean().item() < 0.01 and diff.max().item() < 0.1  # torch vs PIL bicubic: rounding only
    plain = BatchTransform(224, data_cfg["mean"], data_cfg["std"])(
        torch.from_numpy(array.copy()).permute(2, 0, 1)[None]
    )[0]
    assert (plain - theirs).abs().mean().item() > 5 * diff.mean().item()  # without the crop it would not match
