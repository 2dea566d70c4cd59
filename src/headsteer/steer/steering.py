"""Eq. 5: amplify the SAE latents in S by a strength alpha, re-apply top-k, decode.

The paper's Eq. 5 is garbled, so three readings are offered (DESIGN.md section 4):
- `pre_topk` (default): u = W_enc^T (x - b_dec) + b_enc; u_i <- (1 + alpha) u_i for i in S; z~ = TopK(u).
- `post_topk`: z = TopK(u); z~_i = (1 + alpha) z_i for i in S (the sparse code is rescaled, no re-selection).
- `additive`: z~ = TopK(z + alpha * max_j(z_j) * 1_S), so latents outside the code can enter it.
alpha = 0 gives z~ = z in every mode, i.e. the plain SAE reconstruction.
"""

from __future__ import annotations

import torch

from headsteer.sae.topk import TopKSAE, topk_relu

MODES = ("pre_topk", "post_topk", "additive")


def steer_codes(pre_acts: torch.Tensor, S: torch.Tensor, alpha: float, mode: str, k: int) -> torch.Tensor:
    """pre_acts: (B, n) encoder pre-activations; S: (B, n) bool; returns the steered code z~ (B, n)."""
    if mode == "pre_topk":
        return topk_relu(torch.where(S, (1.0 + alpha) * pre_acts, pre_acts), k)
    z = topk_relu(pre_acts, k)
    if mode == "post_topk":
        return torch.where(S, (1.0 + alpha) * z, z)
    if mode == "additive":
        scale = z.max(dim=-1, keepdim=True).values  # (B, 1)
        return topk_relu(z + alpha * scale * S.to(z.dtype), k)
    raise ValueError(f"unknown steering mode {mode!r}; choose one of {MODES}")


def steer(sae: TopKSAE, x: torch.Tensor, S: torch.Tensor, alpha: float, mode: str) -> torch.Tensor:
    """Steered embedding x~ = W_dec^T z~ + b_dec for inputs x (B, d_in)."""
    return sae.decode(steer_codes(sae.pre_acts(x), S, alpha, mode, sae.k))
