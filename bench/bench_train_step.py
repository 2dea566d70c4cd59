"""Training step time: timm's dense ViT vs our gated model with decision networks (gating overhead),
with two partial variants that show where the overhead sits.
    python bench/bench_train_step.py [--device cuda] [--quick]
"""
from __future__ import annotations

import timm
import torch
import torch.nn.functional as F

from common import GEOMETRIES, autocast, build, parser, save, table, time_interleaved

BATCH = {"demo": 128, "vit_s16_224": 16}


def main() -> None:
    args = parser(__doc__).parse_args()
    dev, rows = args.device, []
    for geo in GEOMETRIES:
        model, in_chans, img, nc = build(geo, dev)
        g = {k: v for k, v in GEOMETRIES[geo].items() if k not in ("arch", "in_chans", "num_classes")}
        torch.manual_seed(0)
        ref = timm.create_model(GEOMETRIES[geo]["arch"], num_classes=nc, in_chans=in_chans, **g).to(dev)
        B = BATCH[geo]
        x = torch.randn(B, in_chans, img, img, device=dev)
        y = torch.randint(0, nc, (B,), device=dev)
        iters = 3 if args.quick else (12 * args.iters if geo == "demo" else args.iters)  # demo step ~0.2 s
        ones = torch.ones(B, model.depth, model.num_heads, device=dev, requires_grad=True)
        # where the overhead sits: our wrapper alone (gating off), the mask and its gradient alone
        # (fixed all-ones masks that require grad, no decision nets), then everything
        variants = {"timm dense": (ref, None), "ours, gating off": (model, "off"),
                    "ours, masks only": (model, "fixed"), "gated + decision nets": (model, "full")}
        steps = {}
        for name, (net, mode) in variants.items():
            net.train()
            opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

            def step(net=net, opt=opt, mode=mode):
                with autocast(dev):
                    if mode is None:
                        loss = F.cross_entropy(net(x), y)
                    else:
                        net.gating = mode != "off"
                        out = net(x, fixed_masks=ones if mode == "fixed" else None)
                        loss = F.cross_entropy(out.logits, y)
                        if mode == "fixed":
                            loss = loss + out.masks.mean()
                        elif mode == "full":
                            loss = loss + 2.0 * (out.decision_masks.mean() - 0.7).abs()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            steps[name] = step
        results = time_interleaved(steps, dev, args.warmup, iters)
        base = results["timm dense"]
        for name, t in results.items():
            rows.append(dict(model=geo, batch=B, variant=name, step_ms=round(1000 * t, 1), img_s=round(B / t, 1),
                             overhead_pct=round(100 * (t / base - 1), 1)))
    table(rows, ["model", "batch", "variant", "step_ms", "img_s", "overhead_pct"])
    save("train_step", dev, {"rows": rows}, args.quick)


if __name__ == "__main__":
    main()
