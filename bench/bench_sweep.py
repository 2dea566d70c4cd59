"""Steering sweep: seconds per point at every layer through the cached tail (cold and warm outcome cache)
against a full forward per point, for the demo geometry (3 blocks), the 6-block one it replaced and a
12-layer ViT-S (random weights).

Usage: python bench/bench_sweep.py [--device cuda] [--quick]
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness import GEOMETRIES, SAE_GEOMETRIES, build, parse, parser, save, table, time_fn
from headsteer.model import deterministic_mask
from headsteer.sae.topk import TopKSAE
from headsteer.steer.steering import steer
from headsteer.steer.tails import OutcomeCache, make_tail

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ["model", "layer", "tail", "images", "full_ms", "cached_ms", "speedup", "warm_ms", "warm_speedup"]


def sweep_point(model, sae: TopKSAE, layer: int, images: torch.Tensor, S: torch.Tensor):
    """-> (tail, point with a cold outcome cache, point with a warm one, point as a full forward), all
    steering with alpha 1. images: (N, C, img, img); S: (N, d_sae) bool, the amplified latents of each image.

    Cold: every (image, head pattern) runs through the tail, as at a sweep's first points. Warm: the
    patterns were met before, so the point costs the SAE, the decision network and a lookup."""
    tokens = model(images, capture=(layer,)).captured[layer]  # (N, T, d)
    x = tokens[:, 0]  # (N, d) CLS
    x_tilde = steer(sae, x, S, 1.0, "pre_topk")  # (N, d)
    tail = make_tail(model, layer, [tokens])
    warm_cache = OutcomeCache(tail)

    def masks():
        return deterministic_mask(model.decisions[str(layer)](steer(sae, x, S, 1.0, "pre_topk")))  # (N, H)

    def cold():
        return OutcomeCache(tail)(masks())

    def warm():
        return warm_cache(masks())

    def full():
        with model.override_decision_input(layer, lambda cls: x_tilde):
            return model(images)

    return tail, cold, warm, full


def layer_rows(geo: str, dev: str, iters: int, n_images: int) -> list[dict]:
    """Seconds per sweep point at every layer of geometry `geo`, against one full forward per point."""
    model, in_chans, img, _ = build(geo, dev, decision_init_bias=0.0)
    images = torch.randn(n_images, in_chans, img, img, device=dev)
    d_in, d_sae, k = SAE_GEOMETRIES[geo]
    sae = TopKSAE(d_in, d_sae, k).to(dev).eval()
    S = torch.zeros(n_images, d_sae, dtype=torch.bool, device=dev)
    S[:, :k] = True
    rows, t_full = [], None
    with torch.inference_mode():
        for layer in reversed(range(model.depth)):
            tail, cold, warm, full = sweep_point(model, sae, layer, images, S)
            t_full = t_full or time_fn(full, dev, 1, iters)["median_s"]  # the same for every layer
            t_cold = time_fn(cold, dev, 1, iters)["median_s"]
            t_warm = time_fn(warm, dev, 2, iters * 3)["median_s"]
            rows.append(
                {
                    "model": geo,
                    "layer": layer,
                    "tail": type(tail).__name__,
                    "images": n_images,
                    "full_ms": round(1000 * t_full, 1),
                    "cached_ms": round(1000 * t_cold, 2),
                    "speedup": round(t_full / t_cold, 1),
                    "warm_ms": round(1000 * t_warm, 2),
                    "warm_speedup": round(t_full / t_warm, 1),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse(parser(__doc__, RESULTS), argv)
    geos = ["tiny"] if args.quick else ["demo3", "demo", "vit_s16_224"]
    rows = []
    for geo in geos:
        rows += layer_rows(geo, args.device, args.iters, 16 if args.quick else 128)
    table(rows, COLUMNS)
    what = {
        g: f"{GEOMETRIES[g]['arch']} ({GEOMETRIES[g].get('depth', 12)} layers), SAE {SAE_GEOMETRIES[g]}" for g in geos
    }
    save("sweep", args, {"rows": rows, "models": what})


if __name__ == "__main__":
    main()
