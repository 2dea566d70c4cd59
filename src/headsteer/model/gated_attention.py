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
    def can_skip(self) -> bool:
        """The skipping path needs per-head separable work: no scale-norm over all heads, no gate."""
        return isinstance(self.norm, torch.nn.Identity) and self.gate is None

    def forward_skip(self, x: torch.Tensor, head_mask: torch.Tensor) -> torch.Tensor:
        """Inference path that does no qkv, attention or proj work for dropped (sample, head) pairs.

        Per head h: gather the samples that keep it, project them with h's slice of `qkv`, attend,
        project with h's slice of `proj`, and add the result back. Equal to the masked dense path up
        to float summation order. x: (B, N, C); head_mask: (B, H) of 0/1.
        """
        B, N, C = x.shape
        H, D, A = self.num_heads, self.head_dim, self.attn_dim
        W, b = self.qkv.weight, self.qkv.bias  # (3A, C), (3A,)
        out = x.new_zeros(B, N, self.proj.out_features)
        keep = head_mask > 0
        for h in range(H):
            idx = keep[:, h].nonzero().squeeze(1)  # samples that keep head h
            if idx.numel() == 0:
                continue
            rows = torch.cat([torch.arange(s * A + h * D, s * A + (h + 1) * D, device=x.device) for s in range(3)])
            xs = x if idx.numel() == B else x.index_select(0, idx)  # (b, N, C)
            qkv = F.linear(xs, W[rows], None if b is None else b[rows])  # (b, N, 3D)
            q, k, v = qkv.view(-1, N, 3, 1, D).permute(2, 0, 3, 1, 4).unbind(0)  # (b, 1, N, D) each
            q, k = self.q_norm(q), self.k_norm(k)
            o = F.scaled_dot_product_attention(q, k, v)[:, 0]  # (b, N, D)
            o = F.linear(o, self.proj.weight[:, h * D:(h + 1) * D])  # (b, N, C_out), no bias yet
            if idx.numel() == B:
                out += o
            else:
                out.index_add_(0, idx, o)
        if self.proj.bias is not None:
            out += self.proj.bias
        return self.proj_drop(out)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False,
                head_mask: Optional[torch.Tensor] = None, skip: bool = False) -> torch.Tensor:
        """x: (B, N, C); head_mask: (B, H), 1 keeps head h for sample b, 0 drops its output.

        skip=True (inference, no attn_mask) takes `forward_skip`, which does no work for dropped heads.
        """
        if skip and head_mask is not None and attn_mask is None and not is_causal and self.can_skip():
            return self.forward_skip(x, head_mask)
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
