"""Paired bootstrap over test images: confidence intervals of accuracy and usage changes.

Every sweep point is evaluated on the same test images, so a change against a reference point (α = 0)
is a per-image difference; resampling images (with replacement) and recomputing the mean difference
gives its sampling distribution. The resamples are drawn once as a weight matrix W (B, N) of counts,
so that B resampled means of P columns are one matmul, W @ X / N.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Bootstrap:
    """Seeded resampling weights shared by every statistic of a run (so CIs are paired across points)."""

    weights: torch.Tensor
    """(B, N) float32: how often image n appears in resample b (each row sums to N)."""
    level: float = 0.95
    """Central probability of the percentile intervals."""

    @classmethod
    def draw(cls, n: int, resamples: int, seed: int, level: float = 0.95) -> "Bootstrap":
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, n, (resamples, n), generator=g)
        w = torch.zeros(resamples, n).scatter_add_(1, idx, torch.ones(resamples, n))
        return cls(w, level)

    def restricted(self, rows: torch.Tensor) -> "Bootstrap":
        """The same resamples over `rows` (indices or a bool mask) only: weights (B, len(rows))."""
        return Bootstrap(self.weights[:, rows], self.level)

    def means(self, values: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """(B, P) resampled means of the columns of values (N, P), over `rows` (bool (N,)) only if given."""
        w = self.weights if rows is None else self.weights[:, rows]
        v = values.float() if rows is None else values[rows].float()
        return (w @ v) / w.sum(1, keepdim=True).clamp(min=1)

    def interval(self, resampled: torch.Tensor) -> torch.Tensor:
        """(2, ...) percentile interval over the first axis of resampled (B, ...)."""
        q = torch.tensor([(1 - self.level) / 2, (1 + self.level) / 2])
        return torch.quantile(resampled.float(), q, dim=0)

    def delta_ci(self, values: torch.Tensor, ref: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """(2, P) CI of mean(values[:, p] - ref) for values (N, P) and a reference column ref (N,)."""
        return self.interval(self.means(values - ref[:, None], rows))
