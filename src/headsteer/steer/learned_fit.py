"""Fitting learned latent strengths (`learned`) at one target usage, with a sparsity path.

The unrestricted fit (an L1 term on the strengths) ranks the latents by |alpha|; then, for each m of the
path (1, 2, 4, ... latents, per class for a per-class policy), the fit is redone with only the m largest
free, starting from them. The held-out part of the training rows chooses m: among the points that land
near the target usage, the fewest latents whose held-out gain over the single threshold at equal usage is
within one standard error of the best (the one-standard-error rule); the test images are never read here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import cached_property

import torch

from headsteer.model import deterministic_mask
from headsteer.steer.fit_data import FitSplit
from headsteer.steer.gate_fit import FitSettings, fit, frozen
from headsteer.steer.holdout import USAGE_TOL, HoldoutCheck
from headsteer.steer.learned import CodeMatrix, Codes, FreePairs, Strengths, top_allowed

ALL = 0
"""The path's m for the unrestricted fit (every latent free)."""


@dataclass
class PathPoint:
    """One fit of the sparsity path."""

    m: int
    """Latents free per row of strengths (ALL = 0: every latent)."""
    alpha: torch.Tensor
    """(R, d_sae) fitted strengths (R = 1 global, else one row per class)."""
    holdout_accuracy: float
    """Accuracy on the held-out training rows (deterministic gate)."""
    holdout_usage: float
    """Head usage of the steered layer there."""
    holdout_gain: float
    """holdout_accuracy minus the single threshold's accuracy at the same usage on the held-out rows."""
    fit: dict = field(default_factory=dict)
    """The fit's record (target, steps, accuracy and usage on the fit rows)."""

    @property
    def latents(self) -> int:
        """Non-zero strengths."""
        return int((self.alpha != 0).sum())


@dataclass
class LearnedProblem:
    """What a learned-strength fit needs: the SAE, the frozen decision network, the fit rows' codes."""

    sae: object
    decide: torch.nn.Module
    split: FitSplit
    codes: Codes
    """Codes of the split's rows (same order)."""
    classes: torch.Tensor | None
    """(N,) class of each fit row for a per-class policy; None for a global one."""
    rows: int
    """R: 1, or the number of classes."""
    G: torch.Tensor | None
    """learned.gate_directions for a linear decision network, else None."""
    push: torch.Tensor
    """(d_sae,) each latent's logit push at alpha = 1 (`learned.pushes`), the strengths' scale."""

    def logits_fn(self, st: Strengths):
        """rows -> (B, r, H) logits under `st`. For a linear gate, built once per row set: a CodeMatrix when every
        strength is free (the unrestricted fit), FreePairs when few are (the path's refits)."""
        dev, built, every = self.codes.values.device, [], bool(st.allowed.all())

        def logits(r: torch.Tensor) -> torch.Tensor:
            r = r.to(dev)
            if self.G is None:
                return st.logits(self.codes, r, self.classes, self.G, self.decide, self.sae)
            view = next((v for rows, v in built if torch.equal(rows, r)), None)
            if view is None:
                view = (
                    CodeMatrix(self.codes, r, self.classes, self.G, self.sae.d_sae)
                    if every
                    else FreePairs(st.allowed, self.codes, r, self.classes, self.G)
                )
                built.append((r, view))
            return view.logits(st.alpha())

        return logits

    @cached_property
    def check(self) -> HoldoutCheck:
        return HoldoutCheck(self.split, self.decide)

    def run(self, targets: list[float], s: FitSettings, l1: float, allowed=None, init=None) -> list[PathPoint]:
        """One fit per target, all together; `allowed`, `init`: (B, R, d_sae) with B = len(targets)."""
        st = Strengths((len(targets), self.rows, self.sae.d_sae), self.push, allowed, init).to(self.codes.values.device)
        penalty = (lambda: l1 * st.l1()) if l1 > 0 else None
        with frozen(self.decide):
            recs = fit(self.logits_fn(st), [st.beta], self.split, targets, s, penalty, self.check)
            with torch.no_grad():
                held = self.check.scores(deterministic_mask(self.logits_fn(st)(self.check.rows)))
        alpha = st.alpha().detach().cpu()
        free = [ALL] * len(targets) if allowed is None else allowed.sum(-1).amax(-1).tolist()
        return [
            PathPoint(int(m), alpha[b], acc, usage, gain, rec.as_dict())
            for b, (m, (acc, usage, gain), rec) in enumerate(zip(free, held, recs, strict=True))
        ]


def sparsity_paths(
    p: LearnedProblem, targets: list[float], s: FitSettings, l1: float, path: list[int], refit_steps: int | None = None
):
    """[target][point]: the unrestricted fit, then one refit per m of `path` (ascending) with the m largest
    logit pushes free, starting from them, for `refit_steps` steps (default s.steps); every target and m
    fitted together."""
    full = p.run(targets, s, l1)
    T = len(targets)
    if not path:
        return [[q] for q in full]
    alpha = torch.stack([q.alpha for q in full])  # (T, R, d_sae)
    push = alpha * p.push.cpu()  # (T, R, d_sae): the ranking is by logit push, not by raw strength
    allowed = torch.cat([top_allowed(push, m) for m in path])  # (M * T, R, d_sae), m-major
    init = alpha.repeat(len(path), 1, 1) * allowed
    dev = p.codes.values.device
    short = s if refit_steps is None else dataclasses.replace(s, steps=refit_steps)
    refit = p.run(targets * len(path), short, 0.0, allowed.to(dev), init.to(dev))
    return [[full[t]] + [refit[mi * T + t] for mi in range(len(path))] for t in range(T)]


def choose(points: list[PathPoint], holdout_rows: int, target: float) -> PathPoint:
    """Among the points whose held-out usage is within USAGE_TOL of `target` (a few latents may not move usage
    that far; if none is, the one nearest the target), the fewest latents whose held-out gain over the single
    threshold at its own usage is within one standard error of the best (ALL counts as every latent)."""
    near = [p for p in points if abs(p.holdout_usage - target) <= USAGE_TOL]
    if not near:
        return min(points, key=lambda p: abs(p.holdout_usage - target))
    best = max(near, key=lambda p: p.holdout_gain)
    acc = best.holdout_accuracy
    se = math.sqrt(max(acc * (1 - acc), 1e-12) / max(1, holdout_rows))
    ok = [p for p in near if p.holdout_gain >= best.holdout_gain - se]
    return min(ok, key=lambda p: (p.m == ALL, p.m))
