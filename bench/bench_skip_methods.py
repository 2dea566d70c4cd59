"""How to skip pruned heads, chosen by measurement: one attention layer, per-head gathering vs the
pattern-grouped path that `GatedAttention.forward_skip` uses, against the same layer run dense.

Per-head (kept here only as the measured alternative): for each head, gather the samples that keep
it, run that head's qkv slice, attention and proj slice, and index_add the result back, so every
sample is copied once per kept head. Grouped: samples with the same set of kept heads are gathered
once and run through one wide matmul per projection.

Usage: python bench/bench_skip_methods.py [--device cuda] [--quick]
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from harness import GEOMETRIES, autocast, forced_masks, parse, parser, save, table, time_interleaved
from headsteer.model.gated_attention import GatedAttention

RESULTS = Path(__file__).resolve().parent / "results"
LAYERS = {"ViT-S (384, 6 heads)": (384, 6), "ViT-B (768, 12 heads)": (768, 12)}
"""Layer name -> (width C, heads H); batch 64 of 197 tokens (ViT at 224 px, patch 16)."""
TINY = GEOMETRIES["tiny"]
TINY_LAYER = {f"tiny ({TINY['embed_dim']}, {TINY['num_heads']} heads)": (TINY["embed_dim"], TINY["num_heads"])}


def per_head(attn: GatedAttention, x: torch.Tensor, head_mask: torch.Tensor) -> torch.Tensor:
    """x: (B, N, C), head_mask: (B, H) -> (B, N, C_out); the method `forward_skip` replaced (as it was)."""
    B, N, _C = x.shape
    H, D, A = attn.num_heads, attn.head_dim, attn.attn_dim
    W, b = attn.qkv.weight, attn.qkv.bias  # (3A, C), (3A,)
    out = x.new_zeros(B, N, attn.proj.out_features)
    keep = head_mask > 0
    for h in range(H):
        idx = keep[:, h].nonzero().squeeze(1)  # samples that keep head h
        if idx.numel() == 0:
            continue
        rows = torch.cat([torch.arange(s * A + h * D, s * A + (h + 1) * D, device=x.device) for s in range(3)])
        xs = x if idx.numel() == B else x.index_select(0, idx)  # (b, N, C)
        qkv = F.linear(xs, W[rows], b[rows])  # (b, N, 3D)
        q, k, v = qkv.view(-1, N, 3, 1, D).permute(2, 0, 3, 1, 4).unbind(0)  # (b, 1, N, D) each
        o = F.scaled_dot_product_attention(q, k, v)[:, 0]  # (b, N, D)
        o = F.linear(o, attn.proj.weight[:, h * D : (h + 1) * D]).to(out.dtype)  # (b, N, C_out)
        if idx.numel() == B:
            out += o
        else:
            out.index_add_(0, idx, o)
    return out + attn.proj.bias


def bench_mask(attn: GatedAttention, x: torch.Tensor, mask: torch.Tensor, args) -> dict:
    """Check both skipping methods against the masked dense layer, then time them -> seconds per call."""
    with torch.inference_mode():
        ref = attn(x, head_mask=mask)  # (B, N, C)
        for out in (per_head(attn, x, mask), attn.forward_skip(x, mask)):
            assert (out - ref).abs().max().item() < 1e-4
        fns = {
            "dense": lambda: attn(x),
            "per-head": lambda: per_head(attn, x, mask),
            "grouped": lambda: attn.forward_skip(x, mask),
        }
        with autocast(args.device):
            return time_interleaved(fns, args.device, min(args.warmup, 2), 4 * args.iters)


def main(argv: list[str] | None = None) -> None:
    args = parse(parser(__doc__, RESULTS), argv)
    dev, rows = args.device, []
    B, N = (8, 17) if args.quick else (64, 197)
    for name, (C, H) in (TINY_LAYER if args.quick else LAYERS).items():
        torch.manual_seed(0)
        attn = GatedAttention(C, num_heads=H, qkv_bias=True).to(dev).eval()
        x = torch.randn(B, N, C, device=dev)
        g = torch.Generator().manual_seed(1)
        for usage in (0.7, 0.5, 0.33):
            for kind, mask in (
                ("exactly k heads", forced_masks(B, 1, H, usage)[:, 0]),  # (B, H)
                ("Bernoulli", (torch.rand(B, H, generator=g) < usage).float()),
            ):
                mask = mask.to(dev)
                t = bench_mask(attn, x, mask, args)
                rows.append(
                    {
                        "layer": name,
                        "masks": kind,
                        "usage": round(mask.mean().item(), 3),
                        "patterns": len(torch.unique(mask > 0, dim=0)),
                        "dense_ms": round(1000 * t["dense"], 1),
                        "per_head": round(t["per-head"] / t["dense"], 3),
                        "grouped": round(t["grouped"] / t["dense"], 3),
                    }
                )
                table(rows[-1:], list(rows[-1]))
    print()
    table(rows, list(rows[0]))
    note = f"one attention layer, batch {B}, {N} tokens; per_head and grouped: time ratio to the layer run dense"
    save("skip_methods", args, {"rows": rows, "note": note})


if __name__ == "__main__":
    main()
