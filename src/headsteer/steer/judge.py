"""Every strategy's verdict, in every mode and for every label source, over the whole usage range it reaches.

For each (mode, label source, strategy) cell of a sweep: its reach (lowest and highest steered-layer
usage over the grid and the walk past it, the accuracy there with CIs), its comparison with the
threshold baseline over the whole shared range, with the mean-shift baseline for class-conditioned
sets, and, where the strategy reaches usage at which the threshold has lost `low_usage_loss_pts` from
the unsteered accuracy, a second threshold comparison restricted to that low-usage part.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from headsteer.steer.baselines import Curve
from headsteer.steer.reach import summarize
from headsteer.steer.sweep import SweepResult
from headsteer.steer.uncertainty import Bootstrap
from headsteer.steer.verdict import compare, low_usage_limit


@dataclass
class Judging:
    """The baselines and settings every cell is judged against."""

    boot: Bootstrap
    threshold: Curve
    """Threshold baseline (its shift 0 is the unsteered model)."""
    mean_shift: dict[str, Curve]
    """Mean-shift baseline per label source (its alpha 0 is the unsteered model); may be empty."""
    floor_pts: float
    """steer.stake_floor_pts."""
    low_loss_pts: float
    """steer.low_usage_loss_pts."""

    def reference(self, curve: Curve) -> tuple[float, float]:
        """(usage, accuracy) of a baseline's knob-0 point, the unsteered model."""
        i = curve.values.index(0.0)
        return curve.sample_usage[i].float().mean().item(), curve.sample_correct[i].float().mean().item()

    @cached_property
    def low_usage_limit(self) -> float | None:
        """Highest usage at which the threshold baseline has lost `low_loss_pts` points; None if it never does
        (the same for every cell: computed once)."""
        t = self.threshold
        u0, a0 = self.reference(t)
        usage, acc = t.sample_usage.float().mean(1).numpy(), t.sample_correct.float().mean(1).numpy()
        return low_usage_limit(usage, acc, u0, a0, self.low_loss_pts)


def _pts(curve: Curve) -> tuple[torch.Tensor, torch.Tensor]:
    return curve.sample_correct.T, curve.sample_usage.T  # (N, K) each


def judge_cell(res: SweepResult, ix: tuple[int, int, int], j: Judging, class_conditioned: bool) -> dict:
    """{reach, vs_threshold, vs_mean_shift, low_usage} of one (mode, source, strategy) cell."""
    pts = res.points(ix)
    correct, usage = pts.correct, pts.usage
    source = res.grid.label_sources[ix[1]]
    thr_ref = j.reference(j.threshold)[1]
    record = {
        "reach": summarize(pts.alphas, correct, usage, pts.usage_overall, pts.saturated, j.boot),
        "vs_threshold": compare(j.boot, (correct, usage), _pts(j.threshold), thr_ref, j.floor_pts).as_dict(),
        "vs_mean_shift": None,
        "low_usage": None,
    }
    ms = j.mean_shift.get(source)
    if class_conditioned and ms is not None:
        ms_ref = j.reference(ms)[1]
        record["vs_mean_shift"] = compare(j.boot, (correct, usage), _pts(ms), ms_ref, j.floor_pts).as_dict()
    limit = j.low_usage_limit
    if limit is not None and record["reach"]["min_usage"]["usage"] < limit:
        low = compare(j.boot, (correct, usage), _pts(j.threshold), thr_ref, j.floor_pts, within=(0.0, limit))
        record["low_usage"] = {"usage_limit": limit, "loss_pts": j.low_loss_pts, "vs_threshold": low.as_dict()}
    return record


def judge_all(res: SweepResult, j: Judging, class_conditioned) -> dict:
    """{mode: {label source: {strategy: judge_cell record}}} over the sweep's grid; class-free strategies
    (class_conditioned(strategy) False) are judged once and shared by both label sources."""
    g, out, shared = res.grid, {}, {}
    for mi, mode in enumerate(g.modes):
        out[mode] = {}
        for li, source in enumerate(g.label_sources):
            out[mode][source] = {}
            for si, strategy in enumerate(g.strategies):
                cc = class_conditioned(strategy)
                key = None if cc else (mi, si)
                if key is None or key not in shared:
                    record = judge_cell(res, (mi, li, si), j, cc)
                    if key is not None:
                        shared[key] = record
                out[mode][source][strategy] = record if key is None else shared[key]
    return out
