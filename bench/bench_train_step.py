"""Training step time: timm's dense ViT vs our gated model with decision networks (gating overhead).
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
        steps = {}
        for name, net in (("timm dense", ref), ("gated + decision nets", model)):
            net.train()
            opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

            def step(net=net, opt=opt):
                with autocast(dev):
                    out = net(x)
                    logits = out if torch.is_tensor(out) else out.logits
                    loss = F.cross_entropy(logits, y)
                    if not torch.is_tensor(out):
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
