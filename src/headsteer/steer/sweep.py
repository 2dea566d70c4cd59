"""The steering sweep: for every (mode, label source, strategy, alpha), feed the steered embedding to
the decision network of the steered layer and measure accuracy and head usage.

Steering changes only the head mask of layer l, so everything before it is computed once. Two tails:
- `FinalBlockTail` (l is the last block, CLS-token pooling): the per-head attention outputs of the
  CLS query do not depend on the mask (it multiplies them afterwards), so they are cached; a point
  then costs proj + MLP + head on the CLS row only.
- `GeneralTail` (any other layer): caches the tokens entering block l and re-runs blocks l..L-1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F

from headsteer.engine import progress
from headsteer.model import AdaViT
from headsteer.sae.topk import TopKSAE
from headsteer.steer.stats import IndexSets
from headsteer.steer.steering import steer_codes


class FinalBlockTail:
    """Cached last block: per-head CLS attention outputs (N, H, D) and the CLS residual (N, d)."""

    def __init__(self, model: AdaViT, token_batches: Iterable[torch.Tensor]):
        self.model = model
        self.layer = model.depth - 1
        blk = model.vit.blocks[self.layer]
        attn = blk.attn
        outs, cls = [], []
        with torch.inference_mode():
            for x in token_batches:  # (B, N, d) entering the last block
                B, N, _ = x.shape
                qkv = attn.qkv(blk.norm1(x)).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
                q, k, v = qkv.unbind(0)  # (B, H, N, D)
                q, k = attn.q_norm(q), attn.k_norm(k)
                o = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # (B, H, 1, D): the CLS query only
                outs.append(o[:, :, 0])
                cls.append(x[:, 0])
        self.head_out = torch.cat(outs)  # (N, H, D)
        self.cls = torch.cat(cls)  # (N, d)

    @staticmethod
    def supported(model: AdaViT, layer: int) -> bool:
        vit = model.vit
        return layer == model.depth - 1 and vit.global_pool == "token" and vit.attn_pool is None

    @torch.inference_mode()
    def logits(self, mask: torch.Tensor, idx: slice) -> torch.Tensor:
        """Class logits (b, C) of samples `idx` when layer l keeps heads `mask` (b, H)."""
        vit, blk = self.model.vit, self.model.vit.blocks[self.layer]
        attn = blk.attn
        o = self.head_out[idx] * mask[..., None].to(self.head_out.dtype)  # Eq. 1
        a = attn.proj(attn.norm(o.flatten(1)))
        y = self.cls[idx] + blk.ls1(a)
        y = y + blk.ls2(blk.mlp(blk.norm2(y)))
        return vit.head(vit.head_drop(vit.fc_norm(vit.norm(y))))


class GeneralTail:
    """Cached tokens entering layer l; a point re-runs blocks l..L-1 with the steered decision input."""

    def __init__(self, model: AdaViT, layer: int, token_batches: Iterable[torch.Tensor]):
        self.model, self.layer = model, layer
        self.tokens = torch.cat(list(token_batches))  # (N, T, d)

    @torch.inference_mode()
    def run(self, x_tilde: torch.Tensor, idx: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (b, C), masks (b, L, H)) with the decision input of layer l replaced by x_tilde (b, d)."""
        with self.model.override_decision_input(self.layer, lambda cls: x_tilde.to(cls.dtype)):
            out = self.model.forward_from(self.tokens[idx], self.layer)
        return out.logits, out.masks


@dataclass
class SweepResult:
    """Every array is indexed [mode, label_source, strategy, alpha, ...]."""
    modes: list[str]
    label_sources: list[str]
    strategies: list[str]
    alphas: list[float]
    accuracy: torch.Tensor
    """(M, Ls, S, A)."""
    usage_layer: torch.Tensor
    """(M, Ls, S, A) head usage of the steered layer."""
    usage_overall: torch.Tensor
    """(M, Ls, S, A) head usage over all pruned layers."""
    per_class_accuracy: torch.Tensor
    """(M, Ls, S, A, C)."""
    per_class_usage: torch.Tensor
    """(M, Ls, S, A, C) steered-layer usage per true class."""
    per_class_head: torch.Tensor
    """(M, Ls, S, A, C, H) keep rate of each head of the steered layer per true class."""

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.__dict__.items() if torch.is_tensor(v)}


def class_head_stats(pred: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, C: int):
    """Per-class accuracy (C,), usage (C,) and per-head keep rate (C, H) from mask (N, H)."""
    counts = torch.bincount(labels, minlength=C).clamp(min=1).float()
    acc = torch.zeros(C).index_add_(0, labels, (pred == labels).float()) / counts
    head = torch.zeros(C, mask.shape[1]).index_add_(0, labels, mask.float()) / counts[:, None]
    return acc, head.mean(1), head


@torch.inference_mode()
def run_sweep(model: AdaViT, sae: TopKSAE, tail, x: torch.Tensor, labels: torch.Tensor, base_pred: torch.Tensor,
              base_masks: torch.Tensor, sets: IndexSets, modes: list[str], label_sources: list[str],
              strategies: list[str], alphas: list[float], batch_size: int = 4096) -> SweepResult:
    """x: (N, d) CLS tokens entering layer l; base_pred (N,) and base_masks (N, L, H) of the unsteered model."""
    layer = tail.layer
    N, C, H = x.shape[0], int(sets.per_class.shape[0]), model.num_heads
    pruned = model.pruned_layers
    others = [i for i in pruned if i != layer]
    other_kept = base_masks[:, others].float().sum(dim=(1, 2))  # (N,)
    denom = len(pruned) * H
    pre = torch.cat([sae.pre_acts(xb) for xb in x.split(batch_size)])  # (N, n), independent of alpha
    shape = (len(modes), len(label_sources), len(strategies), len(alphas))
    res = SweepResult(modes, label_sources, strategies, list(alphas),
                      torch.zeros(shape), torch.zeros(shape), torch.zeros(shape),
                      torch.zeros(*shape, C), torch.zeros(*shape, C), torch.zeros(*shape, C, H))
    cache: dict[tuple, tuple] = {}
    total = len(modes) * len(label_sources) * len(strategies) * len(alphas)
    bar = progress(range(total), desc="steering sweep")
    for mi, mode in enumerate(modes):
        for li, source in enumerate(label_sources):
            classes = labels if source == "true" else base_pred
            for si, strategy in enumerate(strategies):
                S = sets.masks(strategy, classes, pre.shape[1])  # (N, n) bool
                for ai, alpha in enumerate(alphas):
                    bar.update(1)
                    key = (mode, strategy, alpha) if strategy in ("global", "random") else None
                    if key in cache:  # class-free strategies do not depend on the label source
                        out = cache[key]
                    else:
                        preds, masks = [], []
                        for lo in range(0, N, batch_size):
                            sl = slice(lo, min(N, lo + batch_size))
                            z = steer_codes(pre[sl], S[sl], alpha, mode, sae.k)
                            x_tilde = sae.decode(z)
                            if isinstance(tail, FinalBlockTail):
                                m = (model.decisions[str(layer)](x_tilde) > 0).float()  # eval mask of layer l
                                logits = tail.logits(m, sl)
                                masks.append(m)
                            else:
                                logits, all_masks = tail.run(x_tilde, sl)
                                masks.append(all_masks[:, layer])
                            preds.append(logits.argmax(1))
                        out = (torch.cat(preds).cpu(), torch.cat(masks).cpu())
                        if key is not None:
                            cache[key] = out
                    pred, mask = out
                    acc, usage, head = class_head_stats(pred, labels, mask, C)
                    ix = (mi, li, si, ai)
                    res.accuracy[ix] = (pred == labels).float().mean()
                    res.usage_layer[ix] = mask.mean()
                    res.usage_overall[ix] = ((other_kept + mask.sum(1)) / denom).mean()
                    res.per_class_accuracy[ix], res.per_class_usage[ix], res.per_class_head[ix] = acc, usage, head
    bar.close()
    return res
