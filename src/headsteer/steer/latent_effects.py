"""What each SAE latent does to the heads: the change in each head's keep rate of the steered layer when
that latent alone is amplified (S = {i}) by alpha, against the reconstruction (alpha = 0), over a fixed
seeded subset of test images. Vectorised over the images; one pass per latent."""

from __future__ import annotations

import torch

from headsteer.core.runtime import progress
from headsteer.model import AdaViT
from headsteer.sae.topk import TopKSAE
from headsteer.steer.steering import Candidates
from headsteer.steer.sweep import set_plans, steered_masks


@torch.inference_mode()
def head_effects(
    model: AdaViT,
    sae: TopKSAE,
    layer: int,
    x: torch.Tensor,
    latents: torch.Tensor,
    alpha: float,
    mode: str,
    batch_size: int = 4096,
) -> torch.Tensor:
    """(len(latents), H) change in each head's keep rate of `layer` when latent i alone is amplified by
    alpha; x: (N, d) CLS entering the layer (on the SAE's device); latents: (L,) indices."""
    N = x.shape[0]
    pre = torch.cat([sae.pre_acts(xb) for xb in x.split(batch_size)])  # (N, d_sae)
    cand = Candidates.of(pre, sae.k, 1)
    one = torch.zeros(N, 1, dtype=torch.long, device=x.device)
    base = steered_masks(model, sae, layer, set_plans(cand, one, mode, sae.k, batch_size), 0.0).float().mean(0)  # (H,)
    out = torch.empty(latents.numel(), base.numel())
    for j, i in enumerate(progress(latents.tolist(), desc="latent head effects")):
        masks = steered_masks(model, sae, layer, set_plans(cand, one + i, mode, sae.k, batch_size), alpha)  # (N, H)
        out[j] = (masks.float().mean(0) - base).cpu()
    return out
