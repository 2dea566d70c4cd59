"""The data behind the report's interactive explorer, embedded in report.html as one JSON document.

- `steering`: every sweep point of results.json (overall accuracy and usage, their paired-bootstrap CIs
  for the headline mode) plus the per-class accuracy, usage and per-head keep rates of
  steer/sweep.safetensors, and the threshold baseline, so the page can show any (mode, strategy,
  label source, class, alpha) without a server.
- `latents`: every latent that fires on TRAIN, column by column: firing frequency (TRAIN), mean
  activation when active (TEST), per-class frequency, lift (class frequency / overall frequency, with
  its class), head effect (steer stage), predicted logit push on each head (the gate readout) and its top
  activating TEST images.
- `sprite`: those images once, as one PNG grid; a thumbnail is a position in it.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

TOP_IMAGES = 8
"""Top activating test images shown per latent."""
SPRITE_COLUMNS = 64
"""Thumbnails per row of the sprite."""


def _r(t: torch.Tensor, decimals: int = 4) -> list:
    """Rounded nested lists (aggregates only: the numbers results.json holds are passed through untouched)."""
    return np.round(t.double().numpy(), decimals).tolist()


def steering(results: dict, sweep: dict[str, torch.Tensor], axes: dict, class_counts: torch.Tensor) -> dict:
    """The steering explorer's data: axes, results.json's curves, and the sweep's per-class tables."""
    st = results["steering"]
    head = sweep["per_class_head"]  # (M, Ls, S, A, C, H)
    w = (class_counts / class_counts.sum()).to(head.dtype)
    return {
        "modes": axes["modes"],
        "sources": axes["label_sources"],
        "strategies": axes["strategies"],
        "alphas": axes["alphas"],
        "classes": axes["classes"],
        "mode": st["mode"],
        "curves": st["curves_by_mode"],  # mode -> source -> strategy -> accuracy / head_usage / head_usage_overall
        "ci": st["curves"],  # the headline mode, with accuracy_delta_ci / head_usage_delta_ci
        "class_ci": st["per_class_ci"],
        "class_accuracy": _r(sweep["per_class_accuracy"]),
        "class_usage": _r(sweep["per_class_usage"]),
        "class_heads": _r(head, 3),
        "heads": _r(torch.einsum("...ch,c->...h", head, w), 3),  # all classes, weighted by class size
        "threshold": st["threshold"],
        "unsteered": st["unsteered"],
        "layer": st["layer"],
    }


def latents(lat: dict[str, torch.Tensor], z: torch.Tensor, classes: list[str]) -> tuple[dict, torch.Tensor]:
    """(the latent browser's columns, the test rows whose thumbnails they use); z: (N, n) test codes."""
    ids = lat["head_effect_latents"]
    zi = z[:, ids]  # (N, L)
    active = zi > 0
    mean_act = (zi * active).sum(0) / active.sum(0).clamp(min=1)
    freq, per_class = lat["freq_overall"][ids], lat["freq_per_class"][:, ids].T  # (L,), (L, C)
    lift = per_class / freq.clamp(min=1e-12)[:, None]
    vals, rows = zi.topk(min(TOP_IMAGES, z.shape[0]), dim=0)  # (K, L)
    used = torch.unique(rows[vals > 0])
    slot = torch.full((z.shape[0],), -1, dtype=torch.long)
    slot[used] = torch.arange(used.numel())
    top = torch.where(vals > 0, slot[rows], -1).T  # (L, K) sprite slots, -1 = none
    cols = {
        "id": ids.tolist(),
        "freq": _r(freq, 5),
        "mean": _r(mean_act),
        "fires_on_test": _r(active.float().mean(0), 5),
        "per_class": _r(per_class),
        "lift": _r(lift.max(1).values, 3),
        "lift_class": lift.argmax(1).tolist(),
        "effect": _r(lat["head_effect"]),
        "top": top.tolist(),
        "top_values": _r(vals.T, 3),
    }
    if "predicted_push" in lat:  # the gate readout: each latent's predicted logit push on each head
        cols["push"] = _r(lat["predicted_push"][ids])
    return {"classes": classes, "columns": cols}, used


def sprite(images: torch.Tensor) -> dict:
    """One PNG grid of uint8 images (K, C, h, w), base64, with its geometry."""
    k, c, h, w = images.shape
    rows = max(1, -(-k // SPRITE_COLUMNS))
    grid = torch.zeros(rows * h, SPRITE_COLUMNS * w, c, dtype=torch.uint8)
    for i in range(k):
        r, q = divmod(i, SPRITE_COLUMNS)
        grid[r * h : (r + 1) * h, q * w : (q + 1) * w] = images[i].permute(1, 2, 0)
    array = grid.numpy()
    img = Image.fromarray(array[..., 0] if c == 1 else array)  # 2-D: grayscale (L), 3 channels: RGB
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    data = base64.b64encode(buf.getvalue()).decode()
    return {"png": data, "columns": SPRITE_COLUMNS, "width": w, "height": h, "count": k}
