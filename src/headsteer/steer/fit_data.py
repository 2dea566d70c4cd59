"""The training images every fitted policy learns from (rivals, learned latent strengths), never a test row.

A seeded subset of the TRAIN split is split once more into a fit part and a held-out part (which chooses a
sparsity level and nothing else). Accuracy under any head mask of the steered layer is read through an
`OutcomeCache` over these images; with H <= MAX_EXACT_HEADS heads the cache is filled for every one of the
2^H patterns, so a fit can maximise the exact expected accuracy (`gate_fit`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headsteer.core.errors import HeadsteerError
from headsteer.steer.baselines import threshold_shifts
from headsteer.steer.names import LabelSource
from headsteer.steer.tails import OutcomeCache

MAX_EXACT_HEADS = 8
"""Up to this many heads the fits use every head pattern's outcome (2^H per image); above, Gumbel-Sigmoid."""


def pattern_bits(num_heads: int) -> torch.Tensor:
    """(2^H, H) float 0/1: row p keeps head h when bit h of p is set (OutcomeCache's pattern ids)."""
    p = torch.arange(2**num_heads)
    return ((p[:, None] >> torch.arange(num_heads)) & 1).float()


@dataclass
class FitSplit:
    """Training rows of the steered layer with their outcomes under any head pattern."""

    rows: torch.Tensor
    """(N,) indices into the extracted TRAIN split."""
    cls: torch.Tensor
    """(N, d) CLS token entering the steered layer: the decision network's input."""
    labels: torch.Tensor
    """(N,) true classes."""
    predictions: torch.Tensor
    """(N,) the unsteered model's predicted classes."""
    holdout: torch.Tensor
    """(N,) bool: the held-out part (chooses a sparsity level; never fitted on)."""
    outcomes: OutcomeCache
    """Predictions of these N images under any head pattern of the steered layer."""
    table: torch.Tensor | None
    """(N, 2^H) float 1 where pattern p gets image n right; None when H > MAX_EXACT_HEADS."""

    @classmethod
    def build(cls, train, rows: torch.Tensor, outcomes: OutcomeCache, holdout: float, seed: int) -> "FitSplit":
        """train: the extracted TRAIN `Activations`; rows: the subset's indices; outcomes: a cache over those
        rows in the same order; holdout: fraction of them held out (seeded)."""
        n, n_held = rows.numel(), round(holdout * rows.numel())
        if not 0 < n_held < n:
            raise HeadsteerError(
                f"steer.fit_holdout={holdout} of {n} fit images holds out {n_held}; the fits need at least one "
                "held-out image and one to fit on: raise steer.fit_images or move steer.fit_holdout toward 0.5"
            )
        g = torch.Generator().manual_seed(seed)
        held = torch.zeros(n, dtype=torch.bool)
        held[torch.randperm(n, generator=g)[:n_held]] = True
        labels = train.labels[rows]
        table = None
        if outcomes.num_heads <= MAX_EXACT_HEADS:
            everyone = torch.arange(n)
            table = torch.stack([outcomes.predict(p, everyone) == labels for p in range(2**outcomes.num_heads)], 1)
            table = table.float()  # (N, 2^H)
        return cls(rows, train.cls[rows], labels, train.predictions[rows], held, outcomes, table)

    def __len__(self) -> int:
        return self.rows.numel()

    @property
    def num_heads(self) -> int:
        return self.outcomes.num_heads

    def correct(self, masks: torch.Tensor) -> torch.Tensor:
        """(N,) float 1 where the image is right when the steered layer keeps `masks` (N, H)."""
        if self.table is not None:
            ids = self.outcomes.pattern_ids(masks)
            return self.table[torch.arange(len(self)), ids]
        return (self.outcomes(masks).pred == self.labels).float()

    def correct_rows(self, masks: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """(r,) float 1 where image rows[i] is right when the steered layer keeps masks[i] (r, H)."""
        ids = self.outcomes.pattern_ids(masks)
        if self.table is not None:
            return self.table[rows, ids]
        out = torch.empty(rows.numel())
        for p in ids.unique().tolist():
            sel = ids == p
            out[sel] = (self.outcomes.predict(p, rows[sel]) == self.labels[rows[sel]]).float()
        return out

    @torch.no_grad()
    def threshold_points(self, decide, rows: torch.Tensor, levels: int = 41) -> tuple[list[float], list[float]]:
        """(usage, accuracy) of the single threshold (`baselines.threshold_shifts`) on the rows `rows`."""
        logits = decide(self.cls[rows].to(next(decide.parameters()).device)).cpu()  # (r, H)
        usage, acc = [], []
        for b in threshold_shifts(logits, levels):
            masks = (logits + b > 0).float()
            usage.append(masks.mean().item())
            acc.append(self.correct_rows(masks, rows).mean().item())
        return usage, acc

    def classes(self, source: str) -> torch.Tensor:
        """(N,) the class a class-conditioned policy uses: 'true' labels or the unsteered 'predicted' class."""
        return self.labels if source == LabelSource.TRUE else self.predictions
