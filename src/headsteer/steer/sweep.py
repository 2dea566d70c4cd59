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

from headsteer.activations import Activations
from headsteer.classwise import class_mean
from headsteer.model import AdaViT, block_mlp, deterministic_mask
from headsteer.runtime import progress
from headsteer.sae.topk import TopKSAE
from headsteer.steer.stats import IndexSets
from headsteer.steer.steering import steer_codes


class FinalBlockTail:
    """Cached last block: per-head CLS attention outputs (N, H, 1, D) and the CLS residual (N, d)."""

    def __init__(self, model: AdaViT, token_batches: Iterable[torch.Tensor]):
        self.model = model
        self.layer = model.depth - 1
        blk = model.vit.blocks[self.layer]
        outs, cls = [], []
        with torch.inference_mode():
            for x in token_batches:  # (B, N, d) entering the last block
                outs.append(blk.attn.head_outputs(blk.norm1(x), query_rows=slice(0, 1)))  # (B, H, 1, D)
                cls.append(x[:, :1])
        self.head_out = torch.cat(outs)  # (N, H, 1, D)
        self.cls = torch.cat(cls)  # (N, 1, d)

    @staticmethod
    def supported(model: AdaViT, layer: int) -> bool:
        vit = model.vit
        return layer == model.depth - 1 and vit.global_pool == "token" and vit.attn_pool is None

    @torch.inference_mode()
    def logits(self, mask: torch.Tensor, idx: slice) -> torch.Tensor:
        """Class logits (b, C) of samples `idx` when layer l keeps heads `mask` (b, H)."""
        blk = self.model.vit.blocks[self.layer]
        y = self.cls[idx] + blk.drop_path1(blk.ls1(blk.attn.project(self.head_out[idx], mask)))  # (b, 1, d)
        return self.model.head_logits(block_mlp(blk, y))


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

    @classmethod
    def empty(cls, modes, label_sources, strategies, alphas, num_classes: int, num_heads: int) -> "SweepResult":
        shape = (len(modes), len(label_sources), len(strategies), len(alphas))
        zeros = [torch.zeros(shape) for _ in range(3)] + [torch.zeros(*shape, num_classes) for _ in range(2)]
        return cls(
            list(modes),
            list(label_sources),
            list(strategies),
            list(alphas),
            *zeros,
            torch.zeros(*shape, num_classes, num_heads),
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.__dict__.items() if torch.is_tensor(v)}


def class_head_stats(pred: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, C: int):
    """Per-class accuracy (C,), usage (C,) and per-head keep rate (C, H) from mask (N, H)."""
    head = class_mean(mask, labels, C)
    return class_mean(pred == labels, labels, C), head.mean(1), head


@torch.inference_mode()
def steered_point(
    model: AdaViT, sae: TopKSAE, tail, pre: torch.Tensor, S: torch.Tensor, alpha: float, mode: str, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions (N,) and steered-layer masks (N, H) at one (S, alpha, mode) point.

    pre: (N, n) SAE pre-activations of the steered layer's CLS; S: (N, n) bool latents to amplify.
    """
    layer, N = tail.layer, pre.shape[0]
    preds, masks = [], []
    for lo in range(0, N, batch_size):
        sl = slice(lo, min(N, lo + batch_size))
        x_tilde = sae.decode(steer_codes(pre[sl], S[sl], alpha, mode, sae.k))
        if isinstance(tail, FinalBlockTail):
            m = deterministic_mask(model.decisions[str(layer)](x_tilde))  # eval mask of layer l
            logits = tail.logits(m, sl)
        else:
            logits, all_masks = tail.run(x_tilde, sl)
            m = all_masks[:, layer]
        masks.append(m)
        preds.append(logits.argmax(1))
    return torch.cat(preds).cpu(), torch.cat(masks).cpu()


@dataclass(frozen=True)
class SweepGrid:
    """The axes of a sweep."""

    modes: list[str]
    """Readings of Eq. 5."""
    label_sources: list[str]
    """'true' and/or 'predicted': the class a class-conditioned strategy uses."""
    strategies: list[str]
    """Index-set strategies."""
    alphas: list[float]
    """Steering strengths."""

    @property
    def size(self) -> int:
        return len(self.modes) * len(self.label_sources) * len(self.strategies) * len(self.alphas)


@torch.inference_mode()
def run_sweep(
    model: AdaViT, sae: TopKSAE, tail, test: Activations, sets: IndexSets, grid: SweepGrid, batch_size: int = 4096
) -> SweepResult:
    """Every point of `grid` over the test rows (CLS entering layer l, labels, unsteered predictions
    and masks), through the cached `tail`."""
    layer, C, pruned = tail.layer, int(sets.per_class.shape[0]), model.pruned_layers
    labels = test.labels
    other_kept = test.masks[:, [i for i in pruned if i != layer]].float().sum(dim=(1, 2))  # (N,)
    denom = len(pruned) * model.num_heads
    x = test.cls.to(sae.W_dec.device)
    pre = torch.cat([sae.pre_acts(xb) for xb in x.split(batch_size)])  # (N, n), independent of alpha
    res = SweepResult.empty(grid.modes, grid.label_sources, grid.strategies, grid.alphas, C, model.num_heads)
    cache: dict[tuple, tuple] = {}
    bar = progress(total=grid.size, desc="steering sweep")
    for mi, mode in enumerate(grid.modes):
        for li, source in enumerate(grid.label_sources):
            classes = labels if source == "true" else test.predictions
            for si, strategy in enumerate(grid.strategies):
                S = sets.masks(strategy, classes, pre.shape[1])  # (N, n) bool
                for ai, alpha in enumerate(grid.alphas):
                    bar.update(1)
                    key = (mode, strategy, alpha) if strategy in ("global", "random") else None
                    point = cache.get(key)  # class-free strategies do not depend on the label source
                    if point is None:
                        point = steered_point(model, sae, tail, pre, S, alpha, mode, batch_size)
                        if key is not None:
                            cache[key] = point
                    pred, mask = point
                    ix = (mi, li, si, ai)
                    res.accuracy[ix] = (pred == labels).float().mean()
                    res.usage_layer[ix] = mask.mean()
                    res.usage_overall[ix] = ((other_kept + mask.sum(1)) / denom).mean()
                    stats = class_head_stats(pred, labels, mask, C)
                    res.per_class_accuracy[ix], res.per_class_usage[ix], res.per_class_head[ix] = stats
    bar.close()
    return res
