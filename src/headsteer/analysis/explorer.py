"""The data behind the report's interactive explorer, embedded in report.html as one JSON document.

- `steering`: every sweep point of results.json (overall accuracy and usage, their paired-bootstrap CIs
  for the headline mode) and the threshold baseline, plus `class_tables`: the per-class accuracy, usage
  and per-head keep rates of steer/sweep.safetensors and the per-class CIs of steer/per_class.safetensors,
  as base64 float32 arrays, so the page can show any (mode, strategy, label source, class, alpha)
  without a server. Those tables grow with the number of classes: above INLINE_BYTES they go to
  SIDECAR, a script beside report.html that the page loads (`place_tables`).
- `latents`: every latent that fires on TRAIN, column by column: firing frequency (TRAIN), mean
  activation when active (TEST), its frequency in its most frequent classes (every class up to
  CLASSES_SHOWN), lift (class frequency / overall frequency, with its class), head effect (steer
  stage), predicted logit push on each head (the gate readout) and its top activating TEST images.
- `sprite`: those images once, as one PNG grid; a thumbnail is a position in it.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from headsteer.artifacts.io import write_text

TOP_IMAGES = 8
"""Top activating test images shown per latent."""
SPRITE_COLUMNS = 64
"""Thumbnails per row of the sprite."""
CLASSES_SHOWN = 20
"""Classes in a latent's frequency bars: all of them up to this many, else its most frequent ones."""
INLINE_BYTES = 8 * 2**20
"""Per-class tables up to this size (base64) are embedded in report.html; larger ones go to SIDECAR."""
SIDECAR = "explorer_classes.js"
"""The script beside report.html that holds large per-class tables (window.HS_CLASS_TABLES)."""


def _r(t: torch.Tensor, decimals: int = 4) -> list:
    """Rounded nested lists (aggregates only: the numbers results.json holds are passed through untouched)."""
    return np.round(t.double().numpy(), decimals).tolist()


def _b64(t: torch.Tensor) -> str:
    """A tensor as base64 of its little-endian float32 values, in C order (a JS Float32Array reads it)."""
    return base64.b64encode(t.detach().float().contiguous().numpy().astype("<f4").tobytes()).decode()


def class_tables(sweep: dict[str, torch.Tensor], ci: torch.Tensor) -> dict:
    """The explorer's per-class tables: accuracy and usage (M, Ls, St, A, C), per-head keep rates
    (M, Ls, St, A, C, H) and the headline mode's CIs (Ls, St, 2, A, C, 2), exact float32 values."""
    head = sweep["per_class_head"]
    return {
        "shape": list(head.shape),
        "ci_shape": list(ci.shape),
        "accuracy": _b64(sweep["per_class_accuracy"]),
        "usage": _b64(sweep["per_class_usage"]),
        "heads": _b64(head),
        "ci": _b64(ci),
    }


def place_tables(doc: dict, folder: Path) -> bool:
    """Move the per-class tables of `doc` to folder/SIDECAR when they exceed INLINE_BYTES (True then);
    smaller ones stay embedded."""
    tables = doc["steering"]["class_tables"]
    if sum(len(v) for v in tables.values() if isinstance(v, str)) <= INLINE_BYTES:
        return False
    write_text(folder / SIDECAR, f"window.HS_CLASS_TABLES = {json.dumps(tables)};\n")  # base64: no "<"
    doc["steering"]["class_tables"] = None
    return True


def steering(
    results: dict, sweep: dict[str, torch.Tensor], axes: dict, class_counts: torch.Tensor, ci: torch.Tensor
) -> dict:
    """The steering explorer's data: axes, results.json's curves, the per-class tables (`class_tables`,
    with `ci` from steer/per_class.safetensors) and each class's test images."""
    st = results["steering"]
    head = sweep["per_class_head"]  # (M, Ls, St, A, C, H)
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
        "class_tables": class_tables(sweep, ci),
        "class_counts": class_counts.tolist(),
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
    C = per_class.shape[1]
    shown = per_class.topk(CLASSES_SHOWN, dim=1).indices if C > CLASSES_SHOWN else torch.arange(C).expand(len(ids), C)
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
        "class_ids": shown.tolist(),  # (L, <= CLASSES_SHOWN): every class in order, or the most frequent
        "class_freq": _r(per_class.gather(1, shown)),
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
