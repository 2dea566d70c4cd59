"""Theoretical multiply-accumulates per image, from the head masks.

Counted: patch embedding, per kept head its qkv slice (T·d·3D), attention (QKᵀ and AV: 2·T²·D) and proj
slice (T·D·d), the MLP (2·T·d·hidden), decision networks and the classifier. Norms, softmax, GELU and
additions are left out (well under 1 % for ViTs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headsteer.model.adavit import AdaViT


@dataclass
class MacCount:
    per_sample: torch.Tensor
    """(N,) MACs of each image under its masks."""
    dense: int
    """MACs of the same network with every head kept and no decision networks (timm's model)."""

    @property
    def mean(self) -> float:
        return self.per_sample.float().mean().item()

    @property
    def ratio(self) -> float:
        """Average MACs relative to dense."""
        return self.mean / self.dense


def macs_per_head(model: AdaViT) -> int:
    """MACs of one kept head in one layer: its qkv slice, QK^T and AV, its proj slice."""
    vit = model.vit
    T = vit.patch_embed.num_patches + vit.num_prefix_tokens
    d, D = model.embed_dim, vit.blocks[0].attn.head_dim
    return T * d * 3 * D + 2 * T * T * D + T * D * d


def count_macs(model: AdaViT, masks: torch.Tensor) -> MacCount:
    """masks: (N, L, H) head masks (1 = kept) of N images."""
    vit = model.vit
    pe = vit.patch_embed
    T = pe.num_patches + vit.num_prefix_tokens
    d, H = model.embed_dim, model.num_heads
    conv = pe.proj
    patch = pe.num_patches * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels
    per_head = macs_per_head(model)
    mlp = sum(2 * T * d * blk.mlp.fc1.out_features for blk in vit.blocks)
    decision = sum(
        sum(p.numel() for n, p in net.named_parameters() if n.endswith("weight") and p.ndim == 2)
        for net in model.decisions.values()
    )
    head = d * vit.head.out_features if hasattr(vit.head, "out_features") else 0
    fixed = patch + mlp + head
    kept = masks.float().sum(dim=(1, 2))  # (N,)
    dense = fixed + per_head * H * len(vit.blocks)
    return MacCount(per_sample=(fixed + decision + per_head * kept).round().long(), dense=int(dense))
