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

    def head_outputs(
        self,
        x: torch.Tensor,
        heads: Optional[torch.Tensor] = None,
        query_rows: Optional[slice] = None,
        attn_mask: Optional[torch.Tensor] = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """Per-head attention outputs Attn(Q, K, V)_h, the one attention code path of the model.

        x: (B, N, C) normed tokens; heads: (k,) indices of the heads to compute (None = all H);
        query_rows: the query tokens to compute (None = all N; e.g. slice(0, 1) for the CLS row only,
        keys and values still come from every token). Returns (B, k, Nq, D).
        """
        B, N, C = x.shape
        D = self.head_dim
        k = self.num_heads if heads is None else heads.numel()
        W, b = self.qkv.weight, self.qkv.bias  # (3 H D, C), rows ordered (q|k|v, head, D)
        if heads is not None:
            W = W.view(3, self.num_heads, D, C)[:, heads].reshape(3 * k * D, C)
            b = None if b is None else b.view(3, self.num_heads, D)[:, heads].reshape(-1)
        if query_rows is None:
            q, kk, v = F.linear(x, W, b).reshape(B, N, 3, k, D).permute(2, 0, 3, 1, 4).unbind(0)  # (B, k, N, D)
        else:  # queries of the asked rows only; keys and values of every token
            xq = x[:, query_rows]  # (B, Nq, C)
            q = F.linear(xq, W[: k * D], None if b is None else b[: k * D]).reshape(B, -1, k, D).transpose(1, 2)
            kv = F.linear(x, W[k * D :], None if b is None else b[k * D :])  # (B, N, 2 k D)
            kk, v = kv.reshape(B, N, 2, k, D).permute(2, 0, 3, 1, 4).unbind(0)  # (B, k, N, D) each
        q, kk = self.q_norm(q), self.k_norm(kk)
        if self.fused_attn:
            dropout = self.attn_drop.p if self.training else 0.0
            return F.scaled_dot_product_attention(q, kk, v, attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout)
        if is_causal:
            raise NotImplementedError("is_causal needs fused attention")
        attn = (q * self.scale) @ kk.transpose(-2, -1)  # (B, k, Nq, N)
        if attn_mask is not None:
            attn = attn + attn_mask
        return self.attn_drop(attn.softmax(dim=-1)) @ v  # (B, k, Nq, D)

    def project(self, o: torch.Tensor, head_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Eq. 1 and the output projection: o (B, H, Nq, D) per-head outputs -> (B, Nq, C).

        head_mask: (B, H), 1 keeps head h for sample b, 0 drops its output before `proj`.
        """
        B, H, Nq, D = o.shape
        o = o.transpose(1, 2)  # (B, Nq, H, D), a strided view
        if head_mask is not None:
            # h_i = M_i * Attn_i. Multiplying in this layout writes the contiguous (B, Nq, H, D) tensor
            # that the reshape would have copied anyway, so the mask costs no extra pass.
            o = o * head_mask.to(o.dtype)[:, None, :, None]
        return self.proj_drop(self.proj(self.norm(o.reshape(B, Nq, H * D))))

    @torch.compiler.disable  # data-dependent grouping (unique patterns, per-group loops): runs eager
    def forward_skip(self, x: torch.Tensor, head_mask: torch.Tensor) -> torch.Tensor:
        """Inference path that does no qkv, attention or proj work for dropped (sample, head) pairs.

        Samples are grouped by their head pattern (the set of heads they keep). Per group: gather the
        group's samples once, compute the kept heads (`head_outputs` with those heads' rows of `qkv`),
        project with the matching columns of `proj`, and write the rows back. Chosen by measurement
        over per-head gathering (docs/performance.md, bench/bench_skip_methods.py): each sample is
        copied once per layer instead of once per kept head, and the matmuls stay wide. Equal to the
        masked dense path up to float summation order. x: (B, N, C); head_mask: (B, H) of 0/1.
        """
        B, N, _ = x.shape
        H, D = self.num_heads, self.head_dim
        W_proj = self.proj.weight.view(-1, H, D)  # (C_out, H, D): columns per head
        patterns, group_of = torch.unique(head_mask > 0, dim=0, return_inverse=True)  # (G, H), (B,)
        members = group_of.argsort(stable=True).split(torch.bincount(group_of, minlength=len(patterns)).tolist())
        pieces = []  # (sample indices, output rows or None when the group keeps no head)
        for pattern, idx in zip(patterns, members, strict=True):
            heads = pattern.nonzero().squeeze(1)  # (k,)
            k = heads.numel()
            if k == 0:
                pieces.append((idx, None))
                continue
            xs = x if len(idx) == B else x.index_select(0, idx)  # (b, N, C)
            o = self.head_outputs(xs, None if k == H else heads).transpose(1, 2).reshape(-1, N, k * D)
            Wp = self.proj.weight if k == H else W_proj[:, heads].reshape(-1, k * D)
            pieces.append((idx, F.linear(o, Wp, self.proj.bias)))  # (b, N, C_out)
        return self.proj_drop(self._scatter_groups(pieces, x))

    def _scatter_groups(self, pieces: list, x: torch.Tensor) -> torch.Tensor:
        """Put each group's output rows back in sample order; groups with no head get proj's bias."""
        if len(pieces) == 1 and pieces[0][1] is not None:
            return pieces[0][1]
        B, N, _ = x.shape
        computed = next((o for _, o in pieces if o is not None), None)  # its dtype (autocast) sets out's
        out = x.new_zeros(B, N, self.proj.out_features, dtype=x.dtype if computed is None else computed.dtype)
        for idx, o in pieces:
            if o is None:
                if self.proj.bias is not None:
                    out[idx] = self.proj.bias.to(out.dtype)
            else:
                out.index_copy_(0, idx, o)
        return out

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: Optional[torch.Tensor] = None,
        is_causal: bool = False,
        head_mask: Optional[torch.Tensor] = None,
        skip: bool = False,
    ) -> torch.Tensor:
        """x: (B, N, C); head_mask: (B, H), 1 keeps head h for sample b, 0 drops its output.

        skip=True (inference, no attn_mask) takes `forward_skip`, which does no work for dropped heads.
        """
        if self.gate is not None:
            raise NotImplementedError("timm's gated attention variant is not supported")
        if skip and head_mask is not None and attn_mask is None and not is_causal and self.can_skip():
            return self.forward_skip(x, head_mask)
        return self.project(self.head_outputs(x, attn_mask=attn_mask, is_causal=is_causal), head_mask)
