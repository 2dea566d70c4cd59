"""Steering sweep: cached-tail point vs a full forward per point, on a 12-layer ViT-S (random weights).
    python bench/bench_sweep.py [--device cuda] [--quick]
"""
from __future__ import annotations

import torch

from common import build, parser, save, table, time_fn
from headsteer.sae.topk import TopKSAE
from headsteer.steer.steering import steer
from headsteer.steer.sweep import FinalBlockTail, GeneralTail


def main() -> None:
    args = parser(__doc__).parse_args()
    dev, rows = args.device, []
    model, in_chans, img, nc = build("vit_s16_224", dev, decision_init_bias=0.0)
    N = 32 if args.quick else 128
    images = torch.randn(N, in_chans, img, img, device=dev)
    sae = TopKSAE(model.embed_dim, 8 * model.embed_dim, 64).to(dev).eval()
    S = torch.zeros(N, sae.d_sae, dtype=torch.bool, device=dev)
    S[:, :64] = True
    iters = 3 if args.quick else args.iters
    with torch.inference_mode():
        for layer in (model.depth - 1, model.depth - 4):
            tokens = model(images, capture=(layer,)).captured[layer]
            x = tokens[:, 0]
            x_tilde = steer(sae, x, S, 1.0, "pre_topk")
            if FinalBlockTail.supported(model, layer):
                tail = FinalBlockTail(model, [tokens])

                def cached():
                    m = (model.decisions[str(layer)](steer(sae, x, S, 1.0, "pre_topk")) > 0).float()
                    return tail.logits(m, slice(0, N))
            else:
                tail = GeneralTail(model, layer, [tokens])

                def cached():
                    return tail.run(steer(sae, x, S, 1.0, "pre_topk"), slice(0, N))

            def full():
                with model.override_decision_input(layer, lambda cls: x_tilde):
                    return model(images)

            t_full = time_fn(full, dev, 1, iters)["median_s"]
            t_cached = time_fn(cached, dev, 2, iters * 3)["median_s"]
            rows.append(dict(layer=layer, tail=type(tail).__name__, images=N, full_ms=round(1000 * t_full, 1),
                             cached_ms=round(1000 * t_cached, 2), speedup=round(t_full / t_cached, 1)))
    table(rows, ["layer", "tail", "images", "full_ms", "cached_ms", "speedup"])
    save("sweep", dev, {"rows": rows, "model": "vit_small_patch16_224 (12 layers), 224 px, SAE 384->3072 k=64"}, args.quick)


if __name__ == "__main__":
    main()
