"""Training step time: timm's dense ViT vs our gated model with decision networks (gating overhead),
with two partial variants that show where the overhead sits, and (with --compile, the default on a GPU)
the gated model with `model.compile` (torch.compile of every block's attention and MLP), whose fused
kernels are what a launch-bound GPU step needs.

Usage: python bench/bench_train_step.py [--device cuda] [--quick] [--compile | --no-compile]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from harness import (
    FULL_GEOMETRIES,
    autocast,
    build,
    parse,
    parser,
    save,
    table,
    time_interleaved,
    timm_reference,
)
from headsteer.model.configured import compile_blocks

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = {"tiny": 8, "demo": 128, "demo3": 128, "vit_s16_224": 16}
COLUMNS = ["model", "batch", "variant", "step_ms", "img_s", "overhead_pct"]


def train_steps(geo: str, dev: str, compiled: bool = False) -> tuple[dict, int]:
    """Variant name -> one optimiser step on a fixed batch; and the batch size.

    Where the overhead sits: our wrapper alone (gating off), the mask and its gradient alone (fixed
    all-ones masks that require grad, no decision nets), then everything; with `compiled`, everything
    again on a copy whose blocks are compiled."""
    model, in_chans, img, nc = build(geo, dev)
    ref = timm_reference(geo, dev)
    B = BATCH[geo]
    x = torch.randn(B, in_chans, img, img, device=dev)  # (B, C, img, img)
    y = torch.randint(0, nc, (B,), device=dev)  # (B,)
    ones = torch.ones(B, model.depth, model.num_heads, device=dev, requires_grad=True)  # (B, L, H)
    variants = {
        "timm dense": (ref, None),
        "ours, gating off": (model, "off"),
        "ours, masks only": (model, "fixed"),
        "gated + decision nets": (model, "full"),
    }
    if compiled:
        model_c = build(geo, dev)[0]
        compile_blocks(model_c)
        variants["gated + decision nets, compiled"] = (model_c, "full")
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
    if compiled:
        try:  # compilation happens here, untimed; a backend that cannot compile loses only this row
            steps["gated + decision nets, compiled"]()
        except Exception as exc:  # noqa: BLE001 - any compiler failure: report it, keep the other rows
            print(f"compiled variant skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            del steps["gated + decision nets, compiled"]
    return steps, B


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, RESULTS)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on a GPU")
    args = parse(p, argv)
    compiled = args.device.startswith("cuda") if args.compile is None else args.compile
    rows = []
    for geo in ("tiny",) if args.quick else FULL_GEOMETRIES:
        steps, B = train_steps(geo, args.device, compiled)
        iters = 12 * args.iters if geo == "demo" else args.iters  # a demo step takes ~0.2 s
        results = time_interleaved(steps, args.device, args.warmup, iters)
        base = results["timm dense"]
        for name, t in results.items():
            rows.append(
                {
                    "model": geo,
                    "batch": B,
                    "variant": name,
                    "step_ms": round(1000 * t, 1),
                    "img_s": round(B / t, 1),
                    "overhead_pct": round(100 * (t / base - 1), 1),
                }
            )
    table(rows, COLUMNS)
    save("train_step", args, {"rows": rows})


if __name__ == "__main__":
    main()
