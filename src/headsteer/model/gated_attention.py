"""timm's Attention with a per-sample head mask applied before `proj` (paper Eq. 1).

Subclassing keeps timm's parameter names (`qkv`, `proj`, `q_norm`, ...), so pretrained timm weights
load strictly into a model built with `attn_layer=GatedAttention`.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from timm.layers import Attention


class GatedAttention(Attention):
    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False,
                head_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, N, C); head_mask: (B, H), 1 keeps head h for sample b, 0 drops its output."""
        if self.gate is not None:
            raise NotImplementedError("timm's gated attention variant is not supported")
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, H, N, D) each
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                               dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)  # (B, H, N, N)
            if attn_mask is not None:
                attn = attn + attn_mask
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v  # (B, H, N, D)
        if head_mask is not None:
            x = x * head_mask.to(x.dtype)[:, :, None, None]  # Eq. 1: h_i = M_i * Attn_i
        x = x.transpose(1, 2).reshape(B, N, self.attn_dim)
        x = self.norm(x)
        return self.proj_drop(self.proj(x))
