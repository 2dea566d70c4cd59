"""The steering sweep: for every (mode, label source, strategy, alpha), feed the steered embedding to
the decision network of the steered layer and score every test image: correct or not, heads kept.

Everything before the steered layer's mask is computed once, and the network after it is looked up
per (image, head pattern) (`tails.OutcomeCache`). Per-image scores are kept so that every change can
carry a paired bootstrap CI (`uncertainty`) and be compared with the baselines at equal usage (`verdict`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headsteer.activations import Activations
from headsteer.classwise import class_mean
from headsteer.model import AdaViT, deterministic_mask
from headsteer.runtime import progress
from headsteer.sae.topk import TopKSAE
from headsteer.steer.stats import IndexSets
from headsteer.steer.steering import Candidates, steer_sparse
from headsteer.steer.tails import OutcomeCache


@dataclass
class PointScores:
    """Per-image results of one point (random-set points average their draws, so values are floats)."""

    correct: torch.Tensor
    """(N,) 1 when the prediction is right."""
    usage: torch.Tensor
    """(N,) fraction of the steered layer's heads kept."""
    usage_overall: torch.Tensor
    """(N,) fraction of heads kept over all pruned layers."""
    head_keep: torch.Tensor
    """(N, H) steered-layer mask."""

    @staticmethod
    def mean(scores: list["PointScores"]) -> "PointScores":
        if len(scores) == 1:
            return scores[0]
        return PointScores(*(torch.stack([getattr(s, f) for s in scores]).mean(0) for f in PointScores.__annotations__))


class Scorer:
    """Steered-layer masks (N, H) -> per-image scores, through the outcome cache of the layer."""

    def __init__(self, cache: OutcomeCache, test: Activations, layer: int, pruned_layers: list[int]):
        self.cache, self.labels, self.layer = cache, test.labels, layer
        self.kept_before = test.masks[:, [i for i in pruned_layers if i < layer]].float().sum(dim=(1, 2))  # (N,)
        self.total_heads = len(pruned_layers) * cache.num_heads

    def __call__(self, masks: torch.Tensor) -> PointScores:
        m = masks.float().cpu()
        out = self.cache(m)
        kept = m.sum(1)
        overall = (self.kept_before + kept + out.kept_after.float()) / self.total_heads
        return PointScores((out.pred == self.labels).float(), kept / m.shape[1], overall, m)


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
    def shape(self) -> tuple[int, int, int, int]:
        return len(self.modes), len(self.label_sources), len(self.strategies), len(self.alphas)


@dataclass
class SweepResult:
    """Every array is indexed [mode, label_source, strategy, alpha, ...]."""

    grid: SweepGrid
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
    sample_correct: torch.Tensor
    """(M, Ls, S, A, N) per-image correctness (the mean over draws for random sets)."""
    sample_usage: torch.Tensor
    """(M, Ls, S, A, N) per-image steered-layer usage."""
    sample_heads: torch.Tensor
    """(M, Ls, S, A, N, H) float16 per-image steered-layer masks (mean over draws for random sets)."""
    draw_accuracy: torch.Tensor
    """(M, A, R) accuracy of each random draw (the `random` strategy's points average them)."""
    draw_usage: torch.Tensor
    """(M, A, R) steered-layer usage of each random draw."""

    @classmethod
    def empty(cls, grid: SweepGrid, n: int, num_classes: int, num_heads: int, draws: int) -> "SweepResult":
        shape, ma = grid.shape, (len(grid.modes), len(grid.alphas), draws)
        return cls(
            grid,
            torch.zeros(shape),
            torch.zeros(shape),
            torch.zeros(shape),
            torch.zeros(*shape, num_classes),
            torch.zeros(*shape, num_classes),
            torch.zeros(*shape, num_classes, num_heads),
            torch.zeros(*shape, n),
            torch.zeros(*shape, n),
            torch.zeros(*shape, n, num_heads, dtype=torch.float16),
            torch.zeros(ma),
            torch.zeros(ma),
        )

    def record(self, ix: tuple, s: PointScores, labels: torch.Tensor) -> None:
        C = self.per_class_accuracy.shape[-1]
        self.accuracy[ix], self.usage_layer[ix], self.usage_overall[ix] = (
            s.correct.mean(),
            s.usage.mean(),
            s.usage_overall.mean(),
        )
        self.per_class_accuracy[ix] = class_mean(s.correct, labels, C)
        self.per_class_head[ix] = class_mean(s.head_keep, labels, C)
        self.per_class_usage[ix] = self.per_class_head[ix].mean(-1)
        self.sample_correct[ix], self.sample_usage[ix] = s.correct, s.usage
        self.sample_heads[ix] = s.head_keep.half()

    def tensors(self) -> dict[str, torch.Tensor]:
        """The aggregated arrays (per-image ones stay in memory)."""
        return {k: v for k, v in self.__dict__.items() if torch.is_tensor(v) and not k.startswith("sample_")}


@torch.inference_mode()
def steered_masks(
    model: AdaViT, sae: TopKSAE, layer: int, cand: Candidates, S: torch.Tensor, alpha: float, mode: str, batch_size: int
) -> torch.Tensor:
    """(N, H) eval masks of layer l when its decision network reads the steered embedding.

    cand: the SAE pre-activations of the layer's CLS and their top candidates; S: (N, |S|) latent indices."""
    decide, N = model.decisions[str(layer)], S.shape[0]
    out = []
    for lo in range(0, N, batch_size):
        sl = slice(lo, min(N, lo + batch_size))
        x_tilde = sae.decode_sparse(*steer_sparse(cand.rows(sl), S[sl], alpha, mode, sae.k))
        out.append(deterministic_mask(decide(x_tilde)))
    return torch.cat(out)


def strategy_sets(sets: IndexSets, strategy: str, classes: torch.Tensor, draws: int) -> list[torch.Tensor]:
    """The (N, |S|) latent indices of a strategy: one per random draw for `random`, else one."""
    if strategy != "random":
        return [sets.indices(strategy, classes)]
    return [sets.indices_of(sets.random_draws[r], classes) for r in range(draws)]


def run_sweep(
    model: AdaViT,
    sae: TopKSAE,
    scorer: Scorer,
    test: Activations,
    sets: IndexSets,
    grid: SweepGrid,
    batch_size: int = 4096,
    random_draws: int = 1,
) -> SweepResult:
    """Every point of `grid` on the test rows (CLS entering layer l, labels, unsteered predictions)."""
    draws = min(random_draws, len(sets.random_draws)) if "random" in grid.strategies else 0
    res = SweepResult.empty(grid, len(test), int(sets.per_class.shape[0]), model.num_heads, draws)  # plain tensors
    with torch.inference_mode():
        _fill(res, model, sae, scorer, test, sets, batch_size, draws)
    return res


def _fill(
    res: SweepResult, model, sae, scorer: Scorer, test: Activations, sets: IndexSets, batch_size: int, draws: int
) -> None:
    grid = res.grid
    pre = torch.cat([sae.pre_acts(xb) for xb in test.cls.to(sae.W_dec.device).split(batch_size)])  # (N, n)
    cand = Candidates.of(pre, sae.k, int(sets.global_.numel()))  # independent of alpha and of S
    cache: dict[tuple, PointScores] = {}  # class-free strategies do not depend on the label source
    bar = progress(total=res.accuracy.numel(), desc="steering sweep")
    for mi, mode in enumerate(grid.modes):
        for li, source in enumerate(grid.label_sources):
            classes = test.labels if source == "true" else test.predictions
            for si, strategy in enumerate(grid.strategies):
                masks = strategy_sets(sets, strategy, classes, draws)
                for ai, alpha in enumerate(grid.alphas):
                    key = (mode, strategy, alpha) if strategy in ("global", "random") else None
                    point = cache.get(key) if key else None
                    if point is None:
                        scores = [
                            scorer(steered_masks(model, sae, scorer.layer, cand, S, alpha, mode, batch_size))
                            for S in masks
                        ]
                        if strategy == "random":
                            res.draw_accuracy[mi, ai] = torch.stack([s.correct.mean() for s in scores])
                            res.draw_usage[mi, ai] = torch.stack([s.usage.mean() for s in scores])
                        point = PointScores.mean(scores)
                        if key:
                            cache[key] = point
                    res.record((mi, li, si, ai), point, test.labels)
                    bar.update(1)
    bar.close()
