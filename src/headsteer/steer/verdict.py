"""Is a steering strategy worth more than a baseline? Accuracy at equal head usage, with a bootstrap CI.

A strategy's points (usage, accuracy) over α and a baseline's points over its own knob (a threshold
shift, a mean-shift strength) are each read as a curve accuracy(usage): points sorted by usage, points
at the same usage averaged, linear interpolation between them. The comparison is the mean of
accuracy_strategy(u) - accuracy_baseline(u) over evenly spaced u in the usage range both curves reach.
The CI recomputes it on every bootstrap resample of the test images at the same levels u (those of
the point estimate; a resampled curve that stops short of a level is read flat beyond its last point,
which can only narrow the interval slightly at the ends of the range).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from headsteer.steer.uncertainty import Bootstrap

LEVELS = 21
"""Usage levels at which the two curves are compared."""
MIN_RANGE = 0.02
"""Shared usage ranges narrower than this are reported as 'no overlap'."""


@dataclass
class Comparison:
    delta: Optional[float]
    """Mean accuracy difference (strategy - baseline) at equal usage; None without a shared range."""
    ci: Optional[list[float]]
    """Bootstrap percentile interval of delta."""
    usage_range: Optional[list[float]]
    """The shared usage range [lo, hi] the mean is taken over."""
    call: str
    """'beats' (CI above 0), 'loses' (CI below 0), 'matches' (CI contains 0) or 'no overlap'."""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def curve_at(usage: np.ndarray, accuracy: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Accuracy of the curve through points (usage (P,), accuracy (P,)) at `levels` (ties averaged)."""
    u, inverse = np.unique(np.round(usage, 9), return_inverse=True)
    acc = np.bincount(inverse, weights=accuracy) / np.bincount(inverse)
    return np.interp(levels, u, acc)


def shared_levels(u_a: np.ndarray, u_b: np.ndarray) -> Optional[np.ndarray]:
    lo, hi = max(u_a.min(), u_b.min()), min(u_a.max(), u_b.max())
    return np.linspace(lo, hi, LEVELS) if hi - lo >= MIN_RANGE else None


def mean_gap(u_s, a_s, u_b, a_b, levels: np.ndarray) -> float:
    return float(np.mean(curve_at(u_s, a_s, levels) - curve_at(u_b, a_b, levels)))


def compare(
    boot: Bootstrap, strategy: tuple[torch.Tensor, torch.Tensor], baseline: tuple[torch.Tensor, torch.Tensor]
) -> Comparison:
    """strategy, baseline: (correct (N, P), usage (N, P)) per test image and point, P points each."""
    (c_s, u_s), (c_b, u_b) = strategy, baseline
    means = [x.float().mean(0).numpy() for x in (u_s, c_s, u_b, c_b)]
    levels = shared_levels(means[0], means[2])
    if levels is None:
        return Comparison(None, None, None, "no overlap")
    delta = mean_gap(*means, levels)
    resampled = [boot.means(x).numpy() for x in (u_s, c_s, u_b, c_b)]  # (B, P) each
    gaps = np.array([mean_gap(*(r[b] for r in resampled), levels) for b in range(resampled[0].shape[0])])
    lo, hi = np.quantile(gaps, [(1 - boot.level) / 2, (1 + boot.level) / 2])
    call = "beats" if lo > 0 else "loses" if hi < 0 else "matches"
    return Comparison(delta, [float(lo), float(hi)], [float(levels[0]), float(levels[-1])], call)


def sentence(strategy: str, baseline: str, c: Comparison) -> str:
    """The verdict in one sentence, with its CI in accuracy points."""
    if c.delta is None:
        return f"{strategy} and the {baseline} baseline reach no common range of head usage; no comparison."
    verb = {"beats": "beats", "loses": "loses to", "matches": "matches"}[c.call]
    lo, hi = c.ci
    return (
        f"{strategy} {verb} the {baseline} baseline: {100 * c.delta:+.2f} pts accuracy at equal usage "
        f"(95 % CI {100 * lo:+.2f} to {100 * hi:+.2f}; usage {c.usage_range[0]:.2f}–{c.usage_range[1]:.2f})."
    )


CLASS_CONDITIONED = ("per_class", "per_class_specific")
"""Strategies that use a class, and so are compared with the class-conditioned mean-shift baseline."""


def verdicts(res, mode: str, boot: Bootstrap, threshold, mean_shift: dict) -> dict:
    """{label source: {strategy: {"vs_threshold": Comparison dict, "vs_mean_shift": dict or None}}} for
    the sweep `res` (a `sweep.SweepResult`) in `mode`; threshold and mean_shift[source] are
    `baselines.Curve`s. Every alpha of a strategy (both signs) is a point of its curve."""
    g = res.grid
    mi = g.modes.index(mode)
    base = (threshold.sample_correct.T, threshold.sample_usage.T)
    out: dict = {}
    for li, source in enumerate(g.label_sources):
        out[source] = {}
        ms = mean_shift.get(source)
        ms_pts = None if ms is None else (ms.sample_correct.T, ms.sample_usage.T)
        for si, strategy in enumerate(g.strategies):
            pts = (res.sample_correct[mi, li, si].T, res.sample_usage[mi, li, si].T)  # (N, A) each
            vs_ms = compare(boot, pts, ms_pts).as_dict() if ms_pts and strategy in CLASS_CONDITIONED else None
            out[source][strategy] = {"vs_threshold": compare(boot, pts, base).as_dict(), "vs_mean_shift": vs_ms}
    return out
