"""SAE training samples/s (d=384 -> 3072, k=64, and the demo's 192 -> 1536, k=32) and extraction img/s.

Usage: python bench/bench_sae_extract.py [--device cuda] [--quick]
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness import FULL_GEOMETRIES, SAE_GEOMETRIES, build, parse, parser, save, table, time_fn
from headsteer.config import SAEConfig
from headsteer.sae.topk import TopKSAE
from headsteer.sae.train import SAETrainer

RESULTS = Path(__file__).resolve().parent / "results"
SAE_BATCH = {"tiny": 64, "demo": 1024, "vit_s16_224": 4096}
EXTRACT_BATCH = {"tiny": 32, "demo": 1000, "vit_s16_224": 64}
COLUMNS = ["what", "batch", "per_s", "unit"]


def sae_row(geo: str, args) -> dict:
    """Samples/s of one SAE training epoch over 4 batches of random activations."""
    d, n, k = SAE_GEOMETRIES[geo]
    B = SAE_BATCH[geo]
    torch.manual_seed(0)
    sae = TopKSAE(d, n, k).to(args.device)
    acts = torch.randn(B * 4, d)  # (4B, d), on the CPU like the extracted activations
    trainer = SAETrainer(sae, SAEConfig(batch_size=B, k=k), total_steps=10_000)
    t = time_fn(lambda: trainer.train_epoch(acts, 0, 0), args.device, 1, args.iters)["median_s"]
    return {"what": f"SAE train {d}->{n} k={k}", "batch": B, "per_s": round(acts.shape[0] / t), "unit": "samples/s"}


def extract_row(geo: str, args) -> dict:
    """Images/s of a forward pass that captures the final block's residual input."""
    model, in_chans, img, _ = build(geo, args.device)
    B = EXTRACT_BATCH[geo]
    x = torch.randn(B, in_chans, img, img, device=args.device)  # (B, C, img, img)
    with torch.inference_mode():
        t = time_fn(lambda: model(x, capture=(model.depth - 1,)), args.device, 1, args.iters)["median_s"]
    return {"what": f"extract CLS ({geo})", "batch": B, "per_s": round(B / t, 1), "unit": "img/s"}


def main(argv: list[str] | None = None) -> None:
    args = parse(parser(__doc__, RESULTS), argv)
    geos = ("tiny",) if args.quick else FULL_GEOMETRIES
    rows = [sae_row(geo, args) for geo in geos] + [extract_row(geo, args) for geo in geos]
    table(rows, COLUMNS)
    save("sae_extract", args, {"rows": rows})


if __name__ == "__main__":
    main()
