"""How much a layer's heads matter: accuracy with all of them kept, all dropped, each dropped alone.

Before steering a layer, this bounds what steering it can do to accuracy: if dropping every head of the
layer costs under a point, no choice of heads there can move accuracy by more. The other layers keep
deciding for themselves (on the changed stream), as they do under steering.
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

    @property
    def range_pts(self) -> float:
        """all_kept - all_dropped, in accuracy points."""
        return 100 * (self.all_kept - self.all_dropped)

    def as_dict(self) -> dict:
        return {**self.__dict__, "range_pts": self.range_pts}


def layer_sensitivity(cache: OutcomeCache, labels: torch.Tensor, unsteered_pred: torch.Tensor) -> LayerSensitivity:
    """Sensitivity of the layer behind `cache` on the images it covers (labels, unsteered_pred: (N,))."""
    n, H = cache.n, cache.num_heads

    def accuracy(pattern: torch.Tensor) -> float:
        return (cache(pattern.expand(n, -1)).pred == labels).float().mean().item()

    ones = torch.ones(H)
    dropped = [accuracy(ones.index_fill(0, torch.tensor([h]), 0.0)) for h in range(H)]
    unsteered = (unsteered_pred == labels).float().mean().item()
    return LayerSensitivity(cache.tail.layer, n, unsteered, accuracy(ones), accuracy(torch.zeros(H)), dropped)
