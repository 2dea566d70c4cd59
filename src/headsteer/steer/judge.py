"""Every strategy's verdict, in every mode and for every label source, over the whole usage range it reaches.

For each (mode, label source, strategy) cell of a sweep: its reach (lowest and highest steered-layer
usage over the grid and the walk past it, the accuracy there with CIs), its comparison with the
threshold baseline over the whole shared range, with the mean-shift baseline for class-conditioned
sets, and, where the strategy reaches usage at which the threshold has lost `low_usage_loss_pts` from
the unsteered accuracy, a second threshold comparison restricted to that low-usage part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from headsteer.steer.baselines import Curve
from headsteer.steer.practitioner import applies
from headsteer.steer.reach import summarize
from headsteer.steer.rival_judge import against, share_of_gain
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
    rivals: dict[str, Curve] = field(default_factory=dict)
    """Fitted rivals on test (`practitioner.rival_curves`); every strategy is also judged against these."""
    gate: dict | None = None
    """The retrained gate's frontier record (`rival_judge.frontier`), for the share of its gain; None without it."""

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
    """{reach, vs_threshold, vs_mean_shift, low_usage, vs_rivals, share_of_gain} of one (mode, source, strategy)
    cell."""
    pts = res.points(ix)
    reach = summarize(pts.alphas, pts.correct, pts.usage, pts.usage_overall, pts.saturated, j.boot)
    return judge_points(pts.correct, pts.usage, reach, res.grid.label_sources[ix[1]], class_conditioned, j)


def judge_curve(curve: Curve, j: Judging, source: str, class_conditioned: bool, ref: torch.Tensor) -> dict:
    """judge_cell's record for a fitted strategy's curve (knob: target usage); ref (N,): per-image correctness
    of the unsteered reconstruction, which its reach's changes are measured against."""
    correct, usage = curve.sample_correct.T, curve.sample_usage.T
    overall = curve.sample_usage_overall.float().mean(1).tolist()
    reach = summarize(curve.values, correct, usage, overall, {}, j.boot, ref=ref)
    return judge_points(correct, usage, reach, source, class_conditioned, j)


def judge_points(
    correct: torch.Tensor, usage: torch.Tensor, reach: dict, source: str, class_conditioned: bool, j: Judging
) -> dict:
    """The record of a strategy's points, correct and usage (N, P), given its reach."""
    thr_ref = j.reference(j.threshold)[1]
    record = {
        "reach": reach,
        "vs_threshold": compare(j.boot, (correct, usage), _pts(j.threshold), thr_ref, j.floor_pts).as_dict(),
        "vs_mean_shift": None,
        "low_usage": None,
    }
    ms = j.mean_shift.get(source)
    if class_conditioned and ms is not None:
        ms_ref = j.reference(ms)[1]
        record["vs_mean_shift"] = compare(j.boot, (correct, usage), _pts(ms), ms_ref, j.floor_pts).as_dict()
    limit = j.low_usage_limit
    if limit is not None and reach["min_usage"]["usage"] < limit:
        low = compare(j.boot, (correct, usage), _pts(j.threshold), thr_ref, j.floor_pts, within=(0.0, limit))
        record["low_usage"] = {"usage_limit": limit, "loss_pts": j.low_loss_pts, "vs_threshold": low.as_dict()}
    rivals = {n: c for n, c in j.rivals.items() if applies(n, source, class_conditioned)}
    if rivals:
        record["vs_rivals"] = against(j.boot, (correct, usage), rivals, thr_ref, j.floor_pts)
    if j.gate is not None:
        gate = j.rivals["retrained_gate"]
        record["share_of_gain"] = share_of_gain(j.boot, (correct, usage), j.gate, gate, j.threshold)
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


def settings_record(sc) -> dict:
    """The settings behind every call (results.json `judging`)."""
    reach = {"factor": sc.reach_factor, "tol": sc.reach_tol, "cap": sc.reach_cap} if sc.reach else None
    return {
        "bootstrap": sc.bootstrap,
        "stake_floor_pts": sc.stake_floor_pts,
        "low_usage_loss_pts": sc.low_usage_loss_pts,
        "reach": reach,
    }
