"""How much a layer's heads matter: accuracy with all of them kept, all dropped, each dropped alone.

Before steering a layer, this says how much room there is: when dropping every head of the layer moves
accuracy by under a point, a steering effect on accuracy there is hard to tell from noise. It is not a
bound (accuracy is not monotone in the heads kept); for H <= 8 the steered layer also gets counts over
all 2^H head patterns: the share of images that some pattern gets right and the share that every pattern
gets right. They peek at the label, so they bound nothing a policy can reach (often most images are
right with no head at all); the rivals fitted on training images (`rivals`) are the realisable reference.
The other layers keep deciding for themselves (on the changed stream), as they do under steering.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headsteer.steer.tails import OutcomeCache

FLOOR_PTS = 1.0
"""Kept-vs-dropped ranges under this many accuracy points are flagged as too small to show effects."""


@dataclass
class LayerSensitivity:
    layer: int
    """Block index."""
    images: int
    """Test images it was measured on."""
    unsteered: float
    """Accuracy with the model's own decisions."""
    all_kept: float
    """Accuracy with every head of the layer kept."""
    all_dropped: float
    """Accuracy with every head of the layer dropped."""
    head_dropped: list[float]
    """Accuracy with head h alone dropped (the others kept), per head."""
    oracle: dict | None = None
    """Over all 2^H fixed patterns: min / max accuracy, and the shares of images that some pattern /
    every pattern gets right (the bounds of any per-image choice); None when not measured."""

    @property
    def range_pts(self) -> float:
        """all_kept - all_dropped, in accuracy points (negative when dropping every head helps)."""
        return 100 * (self.all_kept - self.all_dropped)

    @property
    def small(self) -> bool:
        """Kept vs dropped differ by under FLOOR_PTS: accuracy effects of steering are hard to see here."""
        return abs(self.range_pts) < FLOOR_PTS

    def as_dict(self) -> dict:
        return {**self.__dict__, "range_pts": self.range_pts}


def oracle_bounds(cache: OutcomeCache, labels: torch.Tensor, rows: torch.Tensor | None = None) -> dict:
    """Accuracy under each of the 2^H fixed head patterns, and the per-image oracle bounds, over the images
    `rows` (index tensor; None = all) of the cache; labels (N,) of all its images."""
    rows = torch.arange(cache.n) if rows is None else rows
    H = cache.num_heads
    right = torch.stack([cache.predict(p, rows) == labels[rows] for p in range(2**H)])  # (2^H, n)
    acc = right.float().mean(1)
    return {
        "patterns": 2**H,
        "images": int(rows.numel()),
        "min_accuracy": acc.min().item(),
        "max_accuracy": acc.max().item(),
        "any_pattern_right": right.any(0).float().mean().item(),
        "every_pattern_right": right.all(0).float().mean().item(),
    }


def layer_sensitivity(
    cache: OutcomeCache,
    labels: torch.Tensor,
    unsteered_pred: torch.Tensor,
    oracle: bool = False,
    oracle_rows: torch.Tensor | None = None,
) -> LayerSensitivity:
    """Sensitivity of the layer behind `cache` on the images it covers (labels, unsteered_pred: (N,));
    with `oracle`, also the bounds over all 2^H patterns (H <= 8), on the images `oracle_rows` (None = all)."""
    n, H = cache.n, cache.num_heads

    def accuracy(pattern: torch.Tensor) -> float:
        return (cache(pattern.expand(n, -1)).pred == labels).float().mean().item()

    ones = torch.ones(H)
    dropped = [accuracy(ones.index_fill(0, torch.tensor([h]), 0.0)) for h in range(H)]
    unsteered = (unsteered_pred == labels).float().mean().item()
    bounds = oracle_bounds(cache, labels, oracle_rows) if oracle and H <= 8 else None
    return LayerSensitivity(cache.tail.layer, n, unsteered, accuracy(ones), accuracy(torch.zeros(H)), dropped, bounds)
