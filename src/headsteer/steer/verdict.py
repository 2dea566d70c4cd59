"""Is a steering strategy worth more than a baseline? Accuracy at equal head usage, with a bootstrap CI
and the power to tell.

A strategy's points (usage, accuracy) over alpha and a baseline's points over its own knob (a threshold
shift, a mean-shift strength) are each read as a curve accuracy(usage): points sorted by usage, points
at the same usage averaged, linear interpolation between them. The comparison is the mean of
accuracy_strategy(u) - accuracy_baseline(u) over evenly spaced u in the usage range both curves reach.
The CI recomputes it on every bootstrap resample of the test images at the same levels u (those of
the point estimate; a resampled curve that stops short of a level is read flat beyond its last point).

A call says what the numbers can carry:
- "range too narrow": the two reach less than `MIN_RANGE` of usage in common; no comparison.
- "borderline": a CI bound lies within its Monte Carlo error of 0 (another bootstrap seed could flip
  the call); the MC error of a percentile bound comes from the order statistics around it.
- "beats" / "loses": the CI lies above / below 0.
- "inconclusive": the CI contains 0 but the baseline's accuracy moves too little over the shared range
  (its span, or its loss from the unsteered accuracy, is below the floor or the CI half-width): there
  was little accuracy at stake, so agreement says little.
- "matches": the CI contains 0 and something was at stake.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from headsteer.steer.names import CALL_NAMES, Call
from headsteer.steer.uncertainty import Bootstrap

LEVELS = 21
"""Usage levels at which the two curves are compared."""
MIN_RANGE = 0.02
"""Shared usage ranges narrower than this are 'range too narrow'."""
CALLS = CALL_NAMES
VERBS = {
    Call.BEATS: Call.BEATS.value,
    Call.LOSES: "loses to",
    Call.MATCHES: Call.MATCHES.value,
    Call.INCONCLUSIVE: "is inconclusive against",
    Call.BORDERLINE: "is borderline against",
    Call.RANGE_TOO_NARROW: "shares too narrow a usage range with",
}
"""Each call as the verb of '<strategy> <verb> the <baseline> baseline'."""


@dataclass
class Comparison:
    """One strategy against one baseline at equal head usage (a verdict's record in results.json)."""

    call: Call
    """The call (module docstring); written as its name."""
    delta: Optional[float]
    """Mean accuracy difference (strategy - baseline) at equal usage, a fraction; None without a shared range."""
    ci: Optional[list[float]]
    """Bootstrap percentile interval of delta (fractions)."""
    ci_mc_error: Optional[list[float]]
    """Monte Carlo error of each CI bound (half-width of its 95 % order-statistic interval, fractions)."""
    usage_range: Optional[list[float]]
    """The shared usage range [lo, hi] the mean is taken over."""
    strategy_range: list[float]
    """[lowest, highest] usage the strategy reaches."""
    baseline_range: list[float]
    """[lowest, highest] usage the baseline reaches."""
    span_pts: Optional[float] = None
    """Power: the baseline's accuracy span (max - min) over the shared range, in points."""
    loss_pts: Optional[float] = None
    """Power: the most the baseline's accuracy falls below its unsteered value over the shared range, in points."""
    ci_half_width_pts: Optional[float] = None
    """Half the CI's width, in points."""
    stake_pts: Optional[float] = None
    """What was at stake: the larger of span_pts and loss_pts."""
    floor_pts: Optional[float] = None
    """The stake below which a CI containing 0 is 'inconclusive', in points."""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def curve_at(usage: np.ndarray, accuracy: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Accuracy of the curve through points (usage (P,), accuracy (P,)) at `levels` (ties averaged)."""
    u, inverse = np.unique(np.round(usage, 9), return_inverse=True)
    acc = np.bincount(inverse, weights=accuracy) / np.bincount(inverse)
    return np.interp(levels, u, acc)


def mean_gap(u_s, a_s, u_b, a_b, levels: np.ndarray) -> float:
    return float(np.mean(curve_at(u_s, a_s, levels) - curve_at(u_b, a_b, levels)))


def mc_errors(gaps: np.ndarray, level: float) -> list[float]:
    """Monte Carlo error of the two percentile bounds of `gaps` (B,): half the spread of the order
    statistics within 1.96 binomial standard deviations of each bound's rank."""
    g, B = np.sort(gaps), gaps.shape[0]
    out = []
    for q in ((1 - level) / 2, (1 + level) / 2):
        d = 1.96 * math.sqrt(B * q * (1 - q))
        lo, hi = max(0, math.floor(q * (B - 1) - d)), min(B - 1, math.ceil(q * (B - 1) + d))
        out.append(float(g[hi] - g[lo]) / 2)
    return out


def decide(ci: list[float], mc: list[float], stake_pts: float, floor_pts: float) -> str:
    """The call of a comparison from its CI, the CI bounds' MC errors and what was at stake (module docstring)."""
    lo, hi = ci
    if any(abs(b) <= e for b, e in zip(ci, mc, strict=True)):
        return Call.BORDERLINE
    if lo > 0:
        return Call.BEATS
    if hi < 0:
        return Call.LOSES
    if stake_pts < max(floor_pts, 100 * (hi - lo) / 2):
        return Call.INCONCLUSIVE
    return Call.MATCHES


def compare(
    boot: Bootstrap,
    strategy: tuple[torch.Tensor, torch.Tensor],
    baseline: tuple[torch.Tensor, torch.Tensor],
    baseline_ref: float,
    floor_pts: float,
    within: Optional[tuple[float, float]] = None,
) -> Comparison:
    """strategy, baseline: (correct (N, P), usage (N, P)) per test image and point, P points each;
    baseline_ref: the baseline's unsteered accuracy; within: restrict the shared range to [lo, hi]."""
    (c_s, u_s), (c_b, u_b) = strategy, baseline
    means = [x.float().mean(0).numpy() for x in (u_s, c_s, u_b, c_b)]
    lo, hi = max(means[0].min(), means[2].min()), min(means[0].max(), means[2].max())
    if within is not None:
        lo, hi = max(lo, within[0]), min(hi, within[1])
    ranges = {
        "strategy_range": [float(means[0].min()), float(means[0].max())],
        "baseline_range": [float(means[2].min()), float(means[2].max())],
    }
    if hi - lo < MIN_RANGE:
        return Comparison(call=Call.RANGE_TOO_NARROW, delta=None, ci=None, ci_mc_error=None, usage_range=None, **ranges)
    levels = np.linspace(lo, hi, LEVELS)
    delta = mean_gap(*means, levels)
    resampled = [boot.means(x).numpy() for x in (u_s, c_s, u_b, c_b)]  # (B, P) each
    gaps = np.array([mean_gap(*(r[b] for r in resampled), levels) for b in range(resampled[0].shape[0])])
    ci = [float(q) for q in np.quantile(gaps, [(1 - boot.level) / 2, (1 + boot.level) / 2])]
    mc = mc_errors(gaps, boot.level)
    base_acc = curve_at(means[2], means[3], levels)
    span, loss = 100 * float(base_acc.max() - base_acc.min()), 100 * max(0.0, baseline_ref - float(base_acc.min()))
    return Comparison(
        decide(ci, mc, max(span, loss), floor_pts), delta, ci, mc, [float(lo), float(hi)], **ranges,
        span_pts=span, loss_pts=loss, ci_half_width_pts=100 * (ci[1] - ci[0]) / 2, stake_pts=max(span, loss),
        floor_pts=floor_pts,
    )  # fmt: skip


def low_usage_limit(usage: np.ndarray, accuracy: np.ndarray, ref_usage: float, ref_acc: float, loss_pts: float):
    """The highest usage below `ref_usage` at which the curve (usage (P,), accuracy (P,)) has lost at least
    `loss_pts` points from `ref_acc`; None when it never does."""
    grid = np.linspace(0.0, ref_usage, 1001)
    lost = curve_at(usage, accuracy, grid) <= ref_acc - loss_pts / 100 + 1e-12
    lost &= grid >= usage.min()
    return float(grid[lost].max()) if lost.any() else None


def sentence(strategy: str, baseline: str, c: Comparison) -> str:
    """The verdict in one sentence, accuracy differences in points, with what was at stake."""
    if c.call == Call.RANGE_TOO_NARROW:
        s, b = c.strategy_range, c.baseline_range
        return (
            f"{strategy} vs the {baseline} baseline: usage range too narrow (< {MIN_RANGE}) to compare "
            f"({strategy} reaches {s[0]:.2f}–{s[1]:.2f}, the baseline {b[0]:.2f}–{b[1]:.2f})."
        )
    lo, hi = c.ci
    numbers = (
        f"{100 * c.delta:+.2f} pts at equal usage (95 % CI {100 * lo:+.2f} to {100 * hi:+.2f}; usage "
        f"{c.usage_range[0]:.2f}–{c.usage_range[1]:.2f}, where the baseline moves {c.stake_pts:.2f} pts)"
    )
    verb = VERBS[c.call]
    tail = {
        Call.INCONCLUSIVE: ": little accuracy at stake in the shared range",
        Call.BORDERLINE: ": a CI bound lies within its Monte Carlo error of 0",
    }.get(c.call, "")
    return f"{strategy} {verb} the {baseline} baseline{tail}: {numbers}."
