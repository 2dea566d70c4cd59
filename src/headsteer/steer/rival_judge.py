"""Steering judged against every rival (`rivals`), and what it recovers of the retrained gate's gain.

A rival's fitted policies, scored on every test image, form a curve like a baseline's (`baselines.Curve`, knob
'target'), so every comparison is `verdict.compare` at equal usage, paired over the same bootstrap resamples
of the test images (a rival's fit is fixed; its test outcomes are resampled with the same rows).

The cost of control: at a usage u that a strategy reaches and where the retrained gate beats the threshold
(its gain's CI above 0), the share of that gain the strategy recovers,
R(u) = (acc_strategy(u) - acc_threshold(u)) / (acc_gate(u) - acc_threshold(u)), with its percentile CI.
"""

from __future__ import annotations

import numpy as np
import torch

from headsteer.steer.baselines import Curve
from headsteer.steer.uncertainty import Bootstrap
from headsteer.steer.verdict import compare, curve_at

Points = tuple[torch.Tensor, torch.Tensor]
"""(correct (N, P), usage (N, P)) per test image and point."""


def points(curve: Curve) -> Points:
    return curve.sample_correct.T, curve.sample_usage.T


def _level_curves(boot: Bootstrap, pts: Points, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy at `levels` of the curve through `pts`: (L,) on the test images and (B, L) per resample."""
    correct, usage = pts
    mean = curve_at(usage.float().mean(0).numpy(), correct.float().mean(0).numpy(), levels)
    u, c = boot.means(usage).numpy(), boot.means(correct).numpy()
    return mean, np.stack([curve_at(u[b], c[b], levels) for b in range(u.shape[0])])


def gains(boot: Bootstrap, pts: Points, threshold: Curve, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy gain over the threshold at `levels`: (L,) and (B, L) per resample."""
    m, r = _level_curves(boot, pts, levels)
    tm, tr = _level_curves(boot, points(threshold), levels)
    return m - tm, r - tr


def frontier(curve: Curve, threshold: Curve, boot: Bootstrap) -> dict:
    """A rival's points on test: its knob (target usage), usage, accuracy with CI, and the gain over the
    threshold at each point's usage with its paired CI."""
    pts = points(curve)
    usage = pts[1].float().mean(0).numpy()
    acc_ci = boot.interval(boot.means(pts[0]))  # (2, P)
    gain, resampled = gains(boot, pts, threshold, usage)
    gain_ci = np.quantile(resampled, [(1 - boot.level) / 2, (1 + boot.level) / 2], axis=0)
    return {
        "targets": list(curve.values),
        "head_usage": usage.tolist(),
        "head_usage_overall": curve.sample_usage_overall.float().mean(1).tolist(),
        "accuracy": pts[0].float().mean(0).tolist(),
        "accuracy_ci": acc_ci.T.tolist(),
        "gain_vs_threshold": gain.tolist(),
        "gain_vs_threshold_ci": gain_ci.T.tolist(),
    }


def against(boot: Bootstrap, pts: Points, rivals: dict[str, Curve], ref_acc: float, floor: float) -> dict:
    """{rival: verdict.Comparison as a dict} of a strategy's points against each rival curve at equal usage."""
    return {name: compare(boot, pts, points(c), ref_acc, floor).as_dict() for name, c in rivals.items()}


def share_of_gain(boot: Bootstrap, pts: Points, gate: dict, gate_curve: Curve, threshold: Curve) -> list[dict]:
    """R(u) at each retrained-gate point whose gain over the threshold has a CI above 0 and whose usage the
    strategy reaches; `gate`: the gate's `frontier` record."""
    usage = pts[1].float().mean(0).numpy()
    lo, hi = float(usage.min()), float(usage.max())
    keep = [
        i
        for i, (u, ci) in enumerate(zip(gate["head_usage"], gate["gain_vs_threshold_ci"], strict=True))
        if ci[0] > 0 and lo - 1e-6 <= u <= hi + 1e-6  # float32 means
    ]
    if not keep:
        return []
    levels = np.array([gate["head_usage"][i] for i in keep])
    s_gain, s_res = gains(boot, pts, threshold, levels)
    g_gain, g_res = gains(boot, points(gate_curve), threshold, levels)
    ratio = s_res / np.where(g_res == 0, np.nan, g_res)
    q = np.nanquantile(ratio, [(1 - boot.level) / 2, (1 + boot.level) / 2], axis=0)
    return [
        {
            "usage": float(levels[j]),
            "gate_gain": float(g_gain[j]),
            "strategy_gain": float(s_gain[j]),
            "share": float(s_gain[j] / g_gain[j]),
            "share_ci": [float(q[0, j]), float(q[1, j])],
        }
        for j in range(len(keep))
    ]
