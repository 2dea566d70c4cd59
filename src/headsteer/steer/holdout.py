"""Choosing on the held-out training rows: each fitted policy is scored there by its gain over the single
threshold at its own usage (so points that land at different usages compare fairly), and a point stands for
its target usage only when it lands within USAGE_TOL of it. Used to stop a fit at its best step and to pick
the number of learned latents; the test images are never read here."""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch

from headsteer.steer.fit_data import FitSplit
from headsteer.steer.verdict import curve_at

USAGE_TOL = 0.05
"""A fitted point stands for its target only if its held-out usage is within this of the target."""


class HoldoutCheck:
    """The held-out rows of a fit split and the single threshold's curve there."""

    def __init__(self, split: FitSplit, decide: torch.nn.Module):
        self.split, self.decide = split, decide
        self.rows = split.holdout.nonzero().squeeze(1)

    @cached_property
    def threshold(self) -> tuple[np.ndarray, np.ndarray]:
        """(usage, accuracy) of the single threshold on the held-out rows."""
        u, a = self.split.threshold_points(self.decide, self.rows)
        return np.array(u), np.array(a)

    def scores(self, masks: torch.Tensor) -> list[tuple[float, float, float]]:
        """(accuracy, usage, gain over the threshold at that usage) of each policy's held-out masks (B, h, H)."""
        out = []
        for m in masks.cpu():
            acc, usage = self.split.correct_rows(m, self.rows).mean().item(), m.mean().item()
            out.append((acc, usage, acc - float(curve_at(*self.threshold, np.array([usage]))[0])))
        return out


class BestSteps:
    """Per policy, the parameters at its best held-out check so far (near its target, largest gain); restored
    into the stacked parameters (leading dim = policy) at the end."""

    def __init__(self, params: list[torch.Tensor], targets: list[float]):
        self.params, self.targets = params, targets
        self.best: list[tuple[float, int, list[torch.Tensor]] | None] = [None] * len(targets)

    def check(self, step: int, scores: list[tuple[float, float, float]]) -> None:
        for b, ((_, usage, gain), target) in enumerate(zip(scores, self.targets, strict=True)):
            if abs(usage - target) <= USAGE_TOL and (self.best[b] is None or gain > self.best[b][0]):
                self.best[b] = (gain, step, [p[b].detach().clone() for p in self.params])

    def restore(self, last_step: int) -> list[int]:
        """Put each policy's best parameters back; the step each one was taken at (the last where none qualified)."""
        steps = []
        with torch.no_grad():
            for b, kept in enumerate(self.best):
                if kept is None:
                    steps.append(last_step)
                    continue
                for p, v in zip(self.params, kept[2], strict=True):
                    p[b] = v
                steps.append(kept[1])
        return steps
