"""Inference img/s: timm's unmodified ViT vs our model with head usage forced to 1.0 / 0.7 / 0.5 / 0.33,
masked-dense path vs skipping path, batch 1 and 64, demo model and ViT-S/16 at 224 px (random weights).

Reports realised time reduction / theoretical MAC reduction against timm's dense model. The
"decision nets" row runs the decision networks for real (random init keeps every head): the full
cost of gating at inference, decision MACs included.

Usage: python bench/bench_inference.py [--device cuda] [--quick] [--models vit_s16_224 --batches 64]
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness import (
    FULL_GEOMETRIES,
    GEOMETRIES,
    autocast,
    build,
    forced_masks,
    parse,
    parser,
    save,
    table,
    time_interleaved,
    timm_reference,
)
from headsteer.model.macs import count_macs

RESULTS = Path(__file__).resolve().parent / "results"
USAGES = (1.0, 0.7, 0.5, 0.33)
BATCHES = [1, 64]
COLUMNS = ["model", "batch", "variant", "usage", "img_s", "time_ratio", "mac_ratio", "realised_over_theory"]


def rounds(geo: str, B: int, iters: int) -> int:
    """Interleaved rounds: enough for a stable median (medians of 30 rounds at 2 ms a call still moved
    by 10 %); the demo model takes ~2 ms at batch 1 and ~30 ms at batch 64, ViT-S ~60 ms and ~4 s."""
    per_case = {("demo", 1): 60 * iters, ("demo", 64): 20 * iters, ("vit_s16_224", 1): 2 * iters}
    return per_case.get((geo, B), max(iters - 1, 1))


def variants(model, ref, x: torch.Tensor, masks: dict) -> dict:
    """(variant, usage key) -> a zero-argument forward; adds masks["decided"] (the decision nets' own)."""

    def ours(u, skip):
        def fn():
            model.skip_pruned_heads = skip
            return model(x, fixed_masks=masks[u])

        return fn

    def decided():
        model.skip_pruned_heads = False
        return model(x)  # the decision networks choose (random init: bias 3 keeps every head)

    with torch.inference_mode():
        masks["decided"] = decided().masks  # (B, L, H)
    fns = {("timm dense", 1.0): lambda: ref(x), ("decision nets", "decided"): decided}
    for u in USAGES:
        fns[("masked dense", u)] = ours(u, False)
        fns[("skip", u)] = ours(u, True)
    return fns


def bench_case(geo: str, B: int, model, ref, image: tuple[int, int, int], args) -> list[dict]:
    """Time every variant of one (geometry, batch) round-robin -> one row per variant.

    image: (C, img, img), the shape of one input image."""
    dev = args.device
    x = torch.randn(B, *image, device=dev)  # (B, C, img, img)
    masks = {u: forced_masks(B, model.depth, model.num_heads, u).to(dev) for u in USAGES}  # (B, L, H) each
    fns = variants(model, ref, x, masks)
    warmup = 1 if geo == "vit_s16_224" and B == 64 else args.warmup
    with torch.inference_mode(), autocast(dev):
        t = time_interleaved(fns, dev, warmup, rounds(geo, B, args.iters))
    model.skip_pruned_heads = False
    t_ref = t[("timm dense", 1.0)]
    rows = []
    for (variant, u), secs in t.items():
        dense = variant == "timm dense"
        mac_ratio = 1.0 if dense else count_macs(model, masks[u].cpu()).ratio
        theory, realised = 1 - mac_ratio, 1 - secs / t_ref
        rows.append(
            {
                "model": geo,
                "batch": B,
                "variant": variant,
                "usage": 1.0 if dense else round(masks[u].mean().item(), 3),
                "img_s": round(B / secs, 1),
                "time_ratio": round(secs / t_ref, 3),
                "mac_ratio": round(mac_ratio, 3),
                "realised_over_theory": round(realised / theory, 2) if theory > 0.01 else "",
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, RESULTS)
    p.add_argument("--models", nargs="+", default=list(FULL_GEOMETRIES), choices=list(GEOMETRIES))
    p.add_argument("--batches", nargs="+", type=int, default=BATCHES)
    args = parse(p, argv, models=["tiny"], batches=[1, 8])
    rows = []
    for geo in args.models:
        model, in_chans, img, _ = build(geo, args.device)
        ref = timm_reference(geo, args.device)
        for B in args.batches:
            case = bench_case(geo, B, model, ref, (in_chans, img, img), args)
            table(case, COLUMNS)
            rows += case
    note = (
        "time_ratio and mac_ratio are relative to timm's dense model; "
        "realised_over_theory = (1 - time_ratio) / (1 - mac_ratio); variants timed round-robin"
    )
    save("inference", args, {"rows": rows, "note": note}, full={"models": list(FULL_GEOMETRIES), "batches": BATCHES})


if __name__ == "__main__":
    main()
