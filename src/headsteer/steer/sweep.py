"""The steering sweep: for every (mode, label source, strategy, alpha), feed the steered embedding to
the decision network of the steered layer and score every test image: correct or not, heads kept.

Everything before the steered layer's mask is computed once, and the network after it is looked up
per (image, head pattern) (`tails.OutcomeCache`). Per-image scores are kept so that every change can
carry a paired bootstrap CI (`uncertainty`) and be compared with the baselines at equal usage (`verdict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from headsteer.artifacts.activations import Activations
from headsteer.core.classwise import class_mean
from headsteer.core.runtime import progress
from headsteer.model import AdaViT, deterministic_mask
from headsteer.sae.topk import TopKSAE
from headsteer.steer.names import LabelSource, Strategy
from headsteer.steer.reach import Reach, ReachSettings, reach
from headsteer.steer.stats import IndexSets
from headsteer.steer.steering import Candidates, SetSteering
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
    """Every array is indexed [mode, label_source, strategy, alpha, ...], axes (M, Ls, St, A, ...)."""

    grid: SweepGrid
    accuracy: torch.Tensor
    """(M, Ls, St, A)."""
    usage_layer: torch.Tensor
    """(M, Ls, St, A) head usage of the steered layer."""
    usage_overall: torch.Tensor
    """(M, Ls, St, A) head usage over all pruned layers."""
    per_class_accuracy: torch.Tensor
    """(M, Ls, St, A, C)."""
    per_class_usage: torch.Tensor
    """(M, Ls, St, A, C) steered-layer usage per true class."""
    per_class_head: torch.Tensor
    """(M, Ls, St, A, C, H) keep rate of each head of the steered layer per true class."""
    sample_correct: torch.Tensor
    """(M, Ls, St, A, N) per-image correctness (the mean over draws for random sets)."""
    sample_usage: torch.Tensor
    """(M, Ls, St, A, N) per-image steered-layer usage."""
    sample_heads: torch.Tensor
    """(M, Ls, St, A, N, H) float16 per-image steered-layer masks (mean over draws for random sets)."""
    draw_accuracy: torch.Tensor
    """(M, A, R) accuracy of each random draw (the `random` strategy's points average them)."""
    draw_usage: torch.Tensor
    """(M, A, R) steered-layer usage of each random draw."""
    reaches: dict[tuple[int, int, int], Reach] = field(default_factory=dict)
    """(mode, label source, strategy) index -> the points walked past the grid (empty without reach)."""

    @classmethod
    def empty(cls, grid: SweepGrid, images: int, num_classes: int, num_heads: int, draws: int) -> "SweepResult":
        """Zeros of every shape: `images` test rows N, C classes, H heads, R random draws."""
        shape, ma = grid.shape, (len(grid.modes), len(grid.alphas), draws)  # (M, Ls, St, A), (M, A, R)
        return cls(
            grid=grid,
            accuracy=torch.zeros(shape),
            usage_layer=torch.zeros(shape),
            usage_overall=torch.zeros(shape),
            per_class_accuracy=torch.zeros(*shape, num_classes),
            per_class_usage=torch.zeros(*shape, num_classes),
            per_class_head=torch.zeros(*shape, num_classes, num_heads),
            sample_correct=torch.zeros(*shape, images),
            sample_usage=torch.zeros(*shape, images),
            sample_heads=torch.zeros(*shape, images, num_heads, dtype=torch.float16),
            draw_accuracy=torch.zeros(ma),
            draw_usage=torch.zeros(ma),
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

    def points(self, ix: tuple[int, int, int]) -> "CellPoints":
        """Every point of one (mode, source, strategy) cell, grid then reach."""
        r = self.reaches.get(ix, Reach())
        return CellPoints(
            list(self.grid.alphas) + r.alphas,
            torch.cat([self.sample_correct[ix].T, *(s.correct[:, None] for s in r.scores)], 1),
            torch.cat([self.sample_usage[ix].T, *(s.usage[:, None] for s in r.scores)], 1),
            self.usage_overall[ix].tolist() + [s.usage_overall.mean().item() for s in r.scores],
            r.saturated,
        )


@dataclass
class CellPoints:
    """One sweep cell's points, grid then reach."""

    alphas: list[float]
    """(P,) strengths."""
    correct: torch.Tensor
    """(N, P) per-image correctness."""
    usage: torch.Tensor
    """(N, P) per-image steered-layer usage."""
    usage_overall: list[float]
    """(P,) mean usage over all pruned layers."""
    saturated: dict[str, bool]
    """Reach: {"positive" | "negative": saturated before the cap} (empty without reach)."""


def set_plans(cand: Candidates, set_idx: torch.Tensor, mode: str, k: int, batch_size: int) -> list[SetSteering]:
    """`SetSteering` of the latents set_idx (N, |S|), one per batch of rows; cand: the SAE pre-activations of the
    layer's CLS and their top candidates."""
    set_idx, N = set_idx.to(cand.pre.device), set_idx.shape[0]
    return [
        SetSteering(cand.rows(slice(lo, lo + batch_size)), set_idx[lo : lo + batch_size], mode, k)
        for lo in range(0, N, batch_size)
    ]


@torch.inference_mode()
def steered_masks(model: AdaViT, sae: TopKSAE, layer: int, plans: list[SetSteering], alpha: float) -> torch.Tensor:
    """(N, H) eval masks of layer l when its decision network reads the embedding steered by `plans` at alpha."""
    decide = model.decisions[str(layer)]
    return torch.cat([deterministic_mask(decide(sae.decode_sparse(*p.code(alpha)))) for p in plans])


def strategy_sets(sets: IndexSets, strategy: str, classes: torch.Tensor, draws: int) -> list[torch.Tensor]:
    """The (N, |S|) latent indices of a strategy: one per random draw for `random`, else one."""
    if strategy != Strategy.RANDOM:
        return [sets.indices(strategy, classes)]
    return [sets.indices_of(sets.random_draws[r], classes) for r in range(draws)]


@dataclass
class CellRun:
    """What one (mode, strategy, class assignment) cell needs to score a strength alpha."""

    model: AdaViT
    sae: TopKSAE
    scorer: Scorer
    cand: Candidates
    """Pre-activations of the test CLS and their top candidates (independent of alpha and of S)."""
    index_sets: list[torch.Tensor]
    """(N, |S|) latent indices, one per random draw (one for other strategies)."""
    mode: str
    batch_size: int

    @cached_property
    def plans(self) -> list[list[SetSteering]]:
        """Per draw, its `set_plans` (built at the cell's first point, reused at every alpha)."""
        return [set_plans(self.cand, s, self.mode, self.sae.k, self.batch_size) for s in self.index_sets]

    def draws(self, alpha: float) -> list[PointScores]:
        return [self.scorer(steered_masks(self.model, self.sae, self.scorer.layer, p, alpha)) for p in self.plans]

    def __call__(self, alpha: float) -> PointScores:
        return PointScores.mean(self.draws(alpha))


def run_sweep(
    model: AdaViT,
    sae: TopKSAE,
    scorer: Scorer,
    test: Activations,
    sets: IndexSets,
    grid: SweepGrid,
    batch_size: int = 4096,
    random_draws: int = 1,
    reach_settings: ReachSettings | None = None,
) -> SweepResult:
    """Every point of `grid` on the test rows (CLS entering layer l, labels, unsteered predictions); with
    `reach_settings`, every cell also walks past both ends of the grid until its usage saturates."""
    draws = min(random_draws, len(sets.random_draws)) if Strategy.RANDOM in grid.strategies else 0
    res = SweepResult.empty(grid, len(test), int(sets.per_class.shape[0]), model.num_heads, draws)  # plain tensors
    with torch.inference_mode():
        _fill(res, model, sae, scorer, test, sets, batch_size, draws, reach_settings)
    return res


def _fill(
    res: SweepResult,
    model: AdaViT,
    sae: TopKSAE,
    scorer: Scorer,
    test: Activations,
    sets: IndexSets,
    batch_size: int,
    draws: int,
    reach_settings: ReachSettings | None,
) -> None:
    """Every cell of `res.grid` into `res` (a class-free strategy's points serve every label source)."""
    grid = res.grid
    pre = torch.cat([sae.pre_acts(xb) for xb in test.cls.to(sae.W_dec.device).split(batch_size)])  # (N, d_sae)
    cand = Candidates.of(pre, sae.k, sets.max_size())  # independent of alpha and of S
    shared: dict[tuple, tuple] = {}  # class-free strategies do not depend on the label source
    bar = progress(total=res.accuracy.numel(), desc="steering sweep")
    for mi, mode in enumerate(grid.modes):
        for li, source in enumerate(grid.label_sources):
            classes = test.labels if source == LabelSource.TRUE else test.predictions
            for si, strategy in enumerate(grid.strategies):
                key = (mode, source, strategy) if sets.class_conditioned(strategy) else (mode, strategy)
                if key not in shared:
                    cell = CellRun(
                        model, sae, scorer, cand, strategy_sets(sets, strategy, classes, draws), mode, batch_size
                    )
                    points = [
                        _grid_point(res, cell, mi, ai, alpha, strategy, bar) for ai, alpha in enumerate(grid.alphas)
                    ]
                    usage = [p.usage.mean().item() for p in points]
                    walked = reach(cell, grid.alphas, usage, reach_settings) if reach_settings else Reach()
                    shared[key] = (points, walked)
                points, res.reaches[(mi, li, si)] = shared[key]
                for ai, point in enumerate(points):
                    res.record((mi, li, si, ai), point, test.labels)
                if len(key) == 2 and li > 0:
                    bar.update(len(points))
    bar.close()


def _grid_point(res: SweepResult, cell: CellRun, mi: int, ai: int, alpha: float, strategy: str, bar) -> PointScores:
    """One grid point of a cell; the random strategy also records each draw's accuracy and usage."""
    scores = cell.draws(alpha)
    if strategy == Strategy.RANDOM:
        res.draw_accuracy[mi, ai] = torch.stack([s.correct.mean() for s in scores])
        res.draw_usage[mi, ai] = torch.stack([s.usage.mean() for s in scores])
    bar.update(1)
    return PointScores.mean(scores)
