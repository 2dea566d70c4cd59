"""Per-class averages, the one implementation every analysis uses."""

from __future__ import annotations

import torch


def class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C,) float samples per class, at least 1 (an absent class averages to 0, not NaN)."""
    return torch.bincount(labels, minlength=num_classes).clamp(min=1).float()


def class_mean(values: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean of `values` (N, ...) over the samples of each class, labels (N,) -> (C, ...)."""
    v = values.float()
    sums = torch.zeros(num_classes, *v.shape[1:], dtype=v.dtype, device=v.device).index_add_(0, labels, v)
    return sums / class_counts(labels, num_classes).to(v.device).view(-1, *[1] * (v.ndim - 1))
