"""How far steering can move the steered layer's head usage: keep going past the alpha grid until it stops.

The grid (default alpha in [-1.5, 1.5]) may end long before a strategy has done all it can. Past each
end, alpha grows geometrically (1.5 -> 3 -> 6 -> ... with factor 2) until one step moves the steered
layer's usage by less than `reach_tol` (saturated) or |alpha| passes `reach_cap` (not saturated). The
multiplicative modes saturate on the negative side at once: their factor max(0, 1 + alpha) is 0 for
every alpha <= -1. Every point walked is scored on every test image, so the verdicts can cover the
whole usage range a strategy reaches, with the same paired CIs as the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from headsteer.steer.uncertainty import Bootstrap


@dataclass
class ReachSettings:
    """The `steer.reach*` settings."""

    factor: float = 2.0
    """|alpha| grows by this factor per step."""
    tol: float = 0.005
    """A step that moves usage by less than this ends the walk (saturated)."""
    cap: float = 1000.0
    """Largest |alpha| tried."""

    @classmethod
    def of(cls, sc) -> "ReachSettings":
        """From a `SteerConfig`."""
        return cls(sc.reach_factor, sc.reach_tol, sc.reach_cap)


@dataclass
class Reach:
    """Points walked past the grid (both sides), in walking order, with their per-image scores."""

    alphas: list[float] = field(default_factory=list)
    """Alpha of each point walked."""
    scores: list = field(default_factory=list)
    """`sweep.PointScores` of each point."""
    saturated: dict[str, bool] = field(default_factory=dict)
    """{"positive" | "negative": whether that side's usage stopped moving before the cap}."""


def walk(score: Callable[[float], object], start: float, start_usage: float, s: ReachSettings, out: Reach) -> None:
    """Walk from the grid end `start` (usage `start_usage`) outwards, appending points to `out`."""
    side = "positive" if start > 0 else "negative"
    alpha, usage = start, start_usage
    while abs(alpha * s.factor) <= s.cap:
        alpha *= s.factor
        point = score(alpha)
        out.alphas.append(alpha)
        out.scores.append(point)
        new_usage = point.usage.mean().item()
        moved, usage = abs(new_usage - usage), new_usage
        if moved < s.tol:
            out.saturated[side] = True
            return
    out.saturated[side] = False


def reach(score: Callable[[float], object], alphas: list[float], usage: list[float], s: ReachSettings) -> Reach:
    """Points past both ends of the grid `alphas` (ascending, with mean usage `usage` at each); a side
    whose end is 0 (no grid on that side) is not walked."""
    out = Reach()
    if alphas[-1] > 0:
        walk(score, alphas[-1], usage[-1], s, out)
    if alphas[0] < 0:
        walk(score, alphas[0], usage[0], s, out)
    return out


def _point(alpha: float, correct: torch.Tensor, usage: torch.Tensor, ref: torch.Tensor, boot: Bootstrap) -> dict:
    """One end of the reach: alpha, mean usage and accuracy, the accuracy's CI and its change's CI."""
    acc_ci = boot.interval(boot.means(correct[:, None]))[:, 0]
    delta_ci = boot.delta_ci(correct[:, None], ref)[:, 0]
    return {
        "alpha": alpha,
        "usage": usage.float().mean().item(),
        "accuracy": correct.float().mean().item(),
        "accuracy_ci": acc_ci.tolist(),
        "accuracy_delta_ci": delta_ci.tolist(),
    }


def summarize(
    alphas: list[float],
    correct: torch.Tensor,
    usage: torch.Tensor,
    overall: list[float],
    saturated: dict[str, bool],
    boot: Bootstrap,
    ref: torch.Tensor | None = None,
) -> dict:
    """The reach of one strategy over all its points (grid and walk): where usage is lowest and highest,
    with the accuracy there and its CIs (the change is against alpha = 0, paired over images), and every
    point's mean usage (steered layer and overall) and accuracy, by alpha.

    alphas (P,), per-image correct and usage (N, P), mean usage over all pruned layers `overall` (P,);
    ref (N,): the per-image correctness changes are measured against (default: the alpha = 0 point, which
    must then be among the alphas)."""
    means = usage.float().mean(0)  # (P,)
    ref = correct[:, alphas.index(0.0)] if ref is None else ref
    lo, hi = int(means.argmin()), int(means.argmax())
    order = sorted(range(len(alphas)), key=lambda p: alphas[p])
    return {
        "min_usage": _point(alphas[lo], correct[:, lo], usage[:, lo], ref, boot),
        "max_usage": _point(alphas[hi], correct[:, hi], usage[:, hi], ref, boot),
        "saturated": saturated,
        "alphas": [alphas[p] for p in order],
        "head_usage": [means[p].item() for p in order],
        "head_usage_overall": [overall[p] for p in order],
        "accuracy": [correct[:, p].float().mean().item() for p in order],
    }
