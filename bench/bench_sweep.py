"""Steering sweep: a point through the cached tail (cold and warm outcome cache) vs a full forward, on a
12-layer ViT-S (random weights).

Usage: python bench/bench_sweep.py [--device cuda] [--quick]
"""

from __future__ import annotations

from pathlib import Path

import torch

from headsteer.benchmark import GEOMETRIES, SAE_GEOMETRIES, build, parse, parser, save, table, time_fn
from headsteer.model import deterministic_mask
from headsteer.sae.topk import TopKSAE
from headsteer.steer.steering import steer
from headsteer.steer.tails import OutcomeCache, make_tail

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ["layer", "tail", "images", "full_ms", "cached_ms", "speedup", "warm_ms", "warm_speedup"]


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


def main(argv: list[str] | None = None) -> None:
    args = parse(parser(__doc__, RESULTS), argv)
    dev, rows = args.device, []
    geo = "tiny" if args.quick else "vit_s16_224"
    model, in_chans, img, _ = build(geo, dev, decision_init_bias=0.0)
    N = 16 if args.quick else 128
    images = torch.randn(N, in_chans, img, img, device=dev)
    d_in, d_sae, k = SAE_GEOMETRIES[geo]
    sae = TopKSAE(d_in, d_sae, k).to(dev).eval()
    S = torch.zeros(N, d_sae, dtype=torch.bool, device=dev)
    S[:, :k] = True
    with torch.inference_mode():
        for layer in (model.depth - 1, max(model.depth - 4, 0)):  # the final block's tail, then a deeper one
            tail, cold, warm, full = sweep_point(model, sae, layer, images, S)
            t_full = time_fn(full, dev, 1, args.iters)["median_s"]
            t_cached = time_fn(cold, dev, 2, args.iters * 3)["median_s"]
            t_warm = time_fn(warm, dev, 2, args.iters * 3)["median_s"]
            rows.append(
                {
                    "layer": layer,
                    "tail": type(tail).__name__,
                    "images": N,
                    "full_ms": round(1000 * t_full, 1),
                    "cached_ms": round(1000 * t_cached, 2),
                    "speedup": round(t_full / t_cached, 1),
                    "warm_ms": round(1000 * t_warm, 2),
                    "warm_speedup": round(t_full / t_warm, 1),
                }
            )
    table(rows, COLUMNS)
    what = f"{GEOMETRIES[geo]['arch']} ({model.depth} layers), {img} px, SAE {d_in}->{d_sae} k={k}"
    save("sweep", args, {"rows": rows, "model": what})


if __name__ == "__main__":
    main()
