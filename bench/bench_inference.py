"""Inference img/s: timm's unmodified ViT vs our model with head usage forced to 1.0 / 0.7 / 0.5 / 0.33,
masked-dense path vs skipping path, batch 1 and 64, demo model and ViT-S/16 at 224 px (random weights).

Reports realised time reduction / theoretical MAC reduction against timm's dense model. The
"decision nets" row runs the decision networks for real (random init keeps every head): the full
cost of gating at inference, decision MACs included.
    python bench/bench_inference.py [--device cuda] [--quick]
"""
from __future__ import annotations

import timm
import torch

from common import GEOMETRIES, autocast, build, parser, save, table, time_interleaved
from headsteer.model.macs import count_macs

USAGES = (1.0, 0.7, 0.5, 0.33)


def forced_masks(B: int, L: int, H: int, usage: float, seed: int = 0) -> torch.Tensor:
    """Each (image, layer) keeps round(usage * H) heads chosen at random, remainders spread so the
    mean over the batch equals `usage` as closely as whole heads allow."""
    g = torch.Generator().manual_seed(seed)
    total = usage * H
    base = int(total)
    extra = torch.rand(B, L, generator=g) < (total - base)
    counts = base + extra.long()  # (B, L)
    ranks = torch.rand(B, L, H, generator=g).argsort(-1).argsort(-1)
    return (ranks < counts[..., None]).float()


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--models", nargs="+", default=list(GEOMETRIES), choices=list(GEOMETRIES))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    args = p.parse_args()
    dev = args.device
    rows = []
    for geo in args.models:
        model, in_chans, img, nc = build(geo, dev)
        g = {k: v for k, v in GEOMETRIES[geo].items() if k not in ("arch", "in_chans", "num_classes")}
        ref = timm.create_model(GEOMETRIES[geo]["arch"], num_classes=nc, in_chans=in_chans, **g).to(dev).eval()
        for B in args.batches:
            # enough rounds for a stable median (medians of 30 rounds at 2 ms a call still moved by 10 %):
            # the demo model takes ~2 ms at batch 1 and ~30 ms at batch 64, ViT-S ~60 ms and ~4 s
            rounds = {("demo", 1): 60 * args.iters, ("demo", 64): 20 * args.iters, ("vit_s16_224", 1): 2 * args.iters}
            iters = 3 if args.quick else rounds.get((geo, B), args.iters - 1)
            x = torch.randn(B, in_chans, img, img, device=dev)
            masks = {u: forced_masks(B, model.depth, model.num_heads, u).to(dev) for u in USAGES}

            def ours(u, skip):
                def fn():
                    model.skip_pruned_heads = skip
                    return model(x, fixed_masks=masks[u])
                return fn

            def decided():
                model.skip_pruned_heads = False
                return model(x)  # the decision networks choose (random init: bias 3 keeps every head)

            with torch.inference_mode():
                masks["decided"] = decided().masks
            fns = {("timm dense", 1.0): lambda: ref(x), ("decision nets", "decided"): decided}
            for u in USAGES:
                fns[("masked dense", u)] = ours(u, False)
                fns[("skip", u)] = ours(u, True)
            with torch.inference_mode(), autocast(dev):
                t = time_interleaved(fns, dev, 1 if geo == "vit_s16_224" and B == 64 else args.warmup, iters)
            model.skip_pruned_heads = False
            t_ref = t[("timm dense", 1.0)]
            for (variant, u), secs in t.items():
                mac_ratio = 1.0 if variant == "timm dense" else count_macs(model, masks[u].cpu()).ratio
                theory, realised = 1 - mac_ratio, 1 - secs / t_ref
                rows.append(dict(model=geo, batch=B, variant=variant,
                                 usage=1.0 if variant == "timm dense" else round(masks[u].mean().item(), 3),
                                 img_s=round(B / secs, 1), time_ratio=round(secs / t_ref, 3), mac_ratio=round(mac_ratio, 3),
                                 realised_over_theory=round(realised / theory, 2) if theory > 0.01 else ""))
            table([r for r in rows if r["model"] == geo and r["batch"] == B],
                  ["model", "batch", "variant", "usage", "img_s", "time_ratio", "mac_ratio", "realised_over_theory"])
    subset = args.models != list(GEOMETRIES) or args.batches != [1, 64]
    name = "inference" + (f"_{'_'.join(args.models)}_b{'_'.join(map(str, args.batches))}_x{args.iters}" if subset else "")
    save(name, dev, {"rows": rows, "note": "time_ratio and mac_ratio are relative to timm's dense model; "
                                                  "realised_over_theory = (1 - time_ratio) / (1 - mac_ratio); variants timed round-robin"}, args.quick)


if __name__ == "__main__":
    main()
