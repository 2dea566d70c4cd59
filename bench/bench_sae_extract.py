"""SAE training samples/s (d=384 -> 3072, k=64, and the demo's 192 -> 1536, k=32) and extraction img/s.
    python bench/bench_sae_extract.py [--device cuda] [--quick]
"""
from __future__ import annotations

import torch

from common import build, parser, save, table, time_fn
from headsteer.config import SAEConfig
from headsteer.sae.topk import TopKSAE
from headsteer.sae.train import SAETrainer


def main() -> None:
    args = parser(__doc__).parse_args()
    dev, rows = args.device, []
    iters = 3 if args.quick else args.iters
    for d, n, k, B in ((192, 1536, 32, 1024), (384, 3072, 64, 4096)):
        torch.manual_seed(0)
        sae = TopKSAE(d, n, k).to(dev)
        acts = torch.randn(B * 4, d)
        trainer = SAETrainer(sae, SAEConfig(batch_size=B, k=k), total_steps=10_000)
        t = time_fn(lambda: trainer.train_epoch(acts, 0, 0), dev, 1, iters)["median_s"]
        rows.append(dict(what=f"SAE train {d}->{n} k={k}", batch=B, per_s=round(acts.shape[0] / t), unit="samples/s"))
    for geo, B in (("demo", 1000), ("vit_s16_224", 64)):
        model, in_chans, img, _ = build(geo, dev)
        x = torch.randn(B, in_chans, img, img, device=dev)
        with torch.inference_mode():
            t = time_fn(lambda: model(x, capture=(model.depth - 1,)), dev, 1, iters)["median_s"]
        rows.append(dict(what=f"extract CLS ({geo})", batch=B, per_s=round(B / t, 1), unit="img/s"))
    table(rows, ["what", "batch", "per_s", "unit"])
    save("sae_extract", dev, {"rows": rows}, args.quick)


if __name__ == "__main__":
    main()
