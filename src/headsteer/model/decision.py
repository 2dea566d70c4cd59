"""Decision networks (CLS token -> head logits) and Gumbel-Sigmoid straight-through masks."""

from __future__ import annotations

import torch
import torch.nn as nn


class DecisionNet(nn.Module):
    """Maps the CLS token of a block's residual input, (B, d), to head logits a, (B, H)."""

    def __init__(self, dim: int, num_heads: int, hidden: int = 0, norm: bool = False, init_bias: float = 3.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        if hidden > 0:
            self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, num_heads))
        else:
            self.net = nn.Linear(dim, num_heads)  # AdaViT's head-decision layer
        last = self.net[-1] if isinstance(self.net, nn.Sequential) else self.net
        nn.init.normal_(last.weight, std=0.01)
        nn.init.constant_(last.bias, init_bias)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(cls))


def sample_logistic(shape: torch.Size, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """g1 - g2 for g1, g2 ~ Gumbel(0, 1) i.i.d., i.e. Logistic(0, 1) noise."""
    u = torch.rand(shape, device=device, dtype=torch.float32).clamp_(1e-6, 1 - 1e-6)
    return (torch.log(u) - torch.log1p(-u)).to(dtype)


def gumbel_sigmoid_mask(logits: torch.Tensor, tau: float, noise_scale: float = 1.0) -> torch.Tensor:
    """Hard 0/1 mask with straight-through gradient of sigmoid((a + g1 - g2) / tau).

    Forward value: 1[a + noise > 0], so with noise_scale = 1 head h is kept with probability
    sigmoid(a_h) whatever tau is; tau only scales the gradient.
    """
    noisy = logits
    if noise_scale > 0:
        noisy = logits + noise_scale * sample_logistic(logits.shape, logits.device, logits.dtype)
    soft = torch.sigmoid(noisy / tau)
    hard = (noisy > 0).to(logits.dtype)
    return hard + (soft - soft.detach())  # value exactly 0/1, gradient of `soft`


def deterministic_mask(logits: torch.Tensor, tau: float | None = None) -> torch.Tensor:
    """Eval mask 1[sigmoid(a) > 0.5]; with `tau`, carries the straight-through gradient of sigmoid(a/tau)."""
    hard = (logits > 0).to(logits.dtype)
    if tau is None:
        return hard
    soft = torch.sigmoid(logits / tau)
    return hard + (soft - soft.detach())
