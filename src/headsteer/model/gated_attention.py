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

        Samples are grouped by their head pattern (the set of heads they keep). Per group: gather the
        group's samples once, project them with the kept heads' rows of `qkv`, attend over those
        heads, project with the matching columns of `proj`, and write the rows back. Chosen by
        measurement over per-head gathering (README "Performance", bench/bench_skip_methods.py): each sample is copied once
        per layer instead of once per kept head, and the matmuls stay wide. Equal to the masked dense
        path up to float summation order. x: (B, N, C); head_mask: (B, H) of 0/1.
        """
        B, N, C = x.shape
        H, D = self.num_heads, self.head_dim
        W_qkv = self.qkv.weight.view(3, H, D, C)  # rows of q, k, v per head
        b_qkv = None if self.qkv.bias is None else self.qkv.bias.view(3, H, D)
        W_proj = self.proj.weight.view(-1, H, D)  # (C_out, H, D): columns per head
        patterns, group_of = torch.unique(head_mask > 0, dim=0, return_inverse=True)  # (G, H), (B,)
        members = group_of.argsort(stable=True).split(torch.bincount(group_of, minlength=len(patterns)).tolist())
        pieces = []  # (sample indices, output rows or None when the group keeps no head)
        for pattern, idx in zip(patterns, members):
            heads = pattern.nonzero().squeeze(1)  # (k,)
            k = heads.numel()
            if k == 0:
                pieces.append((idx, None))
                continue
            xs = x if len(idx) == B else x.index_select(0, idx)  # (b, N, C)
            if k == H:
                W, b, Wp = self.qkv.weight, self.qkv.bias, self.proj.weight
            else:
                W = W_qkv[:, heads].reshape(3 * k * D, C)
                b = None if b_qkv is None else b_qkv[:, heads].reshape(3 * k * D)
                Wp = W_proj[:, heads].reshape(-1, k * D)
            qkv = F.linear(xs, W, b).view(-1, N, 3, k, D).permute(2, 0, 3, 1, 4)
            q, kk, v = qkv.unbind(0)  # (b, k, N, D) each
            q, kk = self.q_norm(q), self.k_norm(kk)
            o = F.scaled_dot_product_attention(q, kk, v).transpose(1, 2).reshape(-1, N, k * D)
            pieces.append((idx, F.linear(o, Wp, self.proj.bias)))  # (b, N, C_out)
        if len(pieces) == 1 and pieces[0][1] is not None:
            return self.proj_drop(pieces[0][1])
        computed = next((o for _, o in pieces if o is not None), None)  # its dtype (autocast) sets out's
        out = x.new_zeros(B, N, self.proj.out_features, dtype=x.dtype if computed is None else computed.dtype)
        for idx, o in pieces:
            if o is None:
                if self.proj.bias is not None:
                    out[idx] = self.proj.bias.to(out.dtype)
            else:
                out.index_copy_(0, idx, o)
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
        x = x.transpose(1, 2)  # (B, N, H, D), a strided view
        if head_mask is not None:
            # Eq. 1: h_i = M_i * Attn_i. Multiplying in this layout writes the contiguous (B, N, H, D)
            # tensor that timm's reshape would have copied anyway, so the mask costs no extra pass.
            x = x * head_mask.to(x.dtype)[:, None, :, None]
        x = x.reshape(B, N, self.attn_dim)
        x = self.norm(x)
        return self.proj_drop(self.proj(x))
