"""A verdict with power: the reach past the alpha grid, what is at stake, borderline CI bounds, verdicts for
every mode, the low-usage verdict and the generated answer, each against a hand-computed expectation."""

import math

import numpy as np
import pytest
import torch

from headsteer.analysis.answer import headline
from headsteer.steer.baselines import Curve
from headsteer.steer.judge import Judging, judge_all
from headsteer.steer.reach import ReachSettings, reach
from headsteer.steer.stats import IndexSets, index_sets, latent_frequencies
from headsteer.steer.sweep import PointScores, SweepGrid, run_sweep
from headsteer.steer.uncertainty import Bootstrap
from headsteer.steer.verdict import compare, decide, low_usage_limit, mc_errors
from test_baselines import _setup
from test_steering import _sae

N = 400


def _point(usage: float, acc: float = 0.5, n: int = N) -> PointScores:
    """Scores whose mean usage and accuracy are exactly `usage` and `acc` (n images, 6 heads)."""
    correct = (torch.arange(n) < round(acc * n)).float()
    u = torch.full((n,), usage)
    return PointScores(correct, u, u, torch.full((n, 6), usage))


def test_reach_walks_geometrically_until_usage_saturates():
    """Toy: usage falls linearly with alpha and stops at alpha = 24 (0.2 there); the walk from the grid end 1.5
    goes 3, 6, 12, 24, then 48 moves usage by 0 < tol: saturated, and the walk stops there."""
    seen = []

    def score(alpha):
        seen.append(alpha)
        return _point(max(0.2, 0.9 - 0.7 * min(alpha, 24) / 24) if alpha > 0 else 0.9)

    s = ReachSettings(factor=2.0, tol=0.005, cap=1000.0)
    r = reach(score, [-1.5, 0.0, 1.5], [0.9, 0.9, score(1.5).usage.mean().item()], s)
    seen.remove(1.5)
    assert r.alphas == [3.0, 6.0, 12.0, 24.0, 48.0, -3.0] == seen
    assert r.saturated == {"positive": True, "negative": True}  # the negative side never moved: one step
    assert [p.usage.mean().item() for p in r.scores[3:5]] == pytest.approx([0.2, 0.2])


def test_reach_stops_at_the_cap_when_usage_keeps_moving():
    s = ReachSettings(factor=2.0, tol=0.005, cap=100.0)
    r = reach(lambda a: _point(1 / a), [0.0, 1.5], [1.0, 1 / 1.5], s)  # 1/48 - 1/96 = 0.0104 > tol
    assert r.alphas == [3.0, 6.0, 12.0, 24.0, 48.0, 96.0] and r.saturated == {"positive": False}


def _curve(usage: list[float], acc: list[float], knob0: int) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Per-image (correct (N, P), usage (N, P)) of points with these mean usages and accuracies."""
    pts = [_point(u, a) for u, a in zip(usage, acc, strict=True)]
    values = [float(i - knob0) for i in range(len(pts))]
    return torch.stack([p.correct for p in pts], 1), torch.stack([p.usage for p in pts], 1), values


def test_flat_baseline_gives_inconclusive_and_a_moving_one_matches():
    """Same curve for strategy and baseline (delta 0, CI around 0): where the baseline's accuracy moves
    0.25 pts over the range the call is 'inconclusive'; where it moves 5 pts, 'matches'."""
    g = torch.Generator().manual_seed(1)
    usage = [0.3, 0.5, 0.7, 0.9]
    boot = Bootstrap.draw(N, 500, seed=0)
    for accs, expected in (([0.8, 0.8, 0.8025, 0.8025], "inconclusive"), ([0.75, 0.78, 0.8, 0.8], "matches")):
        c_b, u_b, _ = _curve(usage, accs, 3)
        noise = (torch.rand(N, 4, generator=g) < 0.5).float()  # a strategy whose points differ per image
        c_s = torch.where(noise.bool(), c_b, c_b[torch.randperm(N, generator=g)])
        c = compare(boot, (c_s, u_b), (c_b, u_b), baseline_ref=0.8025, floor_pts=0.5)
        assert c.ci[0] < 0 < c.ci[1], c
        span = 100 * (max(accs) - min(accs))
        assert c.span_pts == pytest.approx(span, abs=1e-4) and c.stake_pts >= c.span_pts
        assert c.call == expected


def test_decide_calls_a_bound_within_its_monte_carlo_error_borderline():
    assert decide([0.0004, 0.01], [0.0005, 0.0005], stake_pts=5.0, floor_pts=0.5) == "borderline"
    assert decide([0.0006, 0.01], [0.0005, 0.0005], stake_pts=5.0, floor_pts=0.5) == "beats"
    assert decide([-0.01, -0.0003], [0.0005, 0.0005], stake_pts=5.0, floor_pts=0.5) == "borderline"
    assert decide([-0.01, -0.0006], [0.0005, 0.0005], stake_pts=5.0, floor_pts=0.5) == "loses"
    assert decide([-0.002, 0.002], [0.0005, 0.0005], stake_pts=5.0, floor_pts=0.5) == "matches"
    assert decide([-0.002, 0.002], [0.0005, 0.0005], stake_pts=0.3, floor_pts=0.5) == "inconclusive"


def test_mc_error_of_a_percentile_bound_matches_the_asymptotic_formula():
    """For B normal draws the q-quantile's standard error is sqrt(q(1-q)/B) / phi(z_q); mc_errors gives the
    half-width of its 95 % interval, 1.96 times that."""
    B, q = 4000, 0.025
    gaps = torch.randn(B, generator=torch.Generator().manual_seed(0)).numpy()
    z = 1.959964
    se = math.sqrt(q * (1 - q) / B) / (math.exp(-z * z / 2) / math.sqrt(2 * math.pi))
    lo, hi = mc_errors(gaps, 0.95)
    assert lo == pytest.approx(1.96 * se, rel=0.3) and hi == pytest.approx(1.96 * se, rel=0.3)


def test_a_bound_near_zero_is_borderline_in_compare():
    """A strategy whose gain's lower CI bound lands within its MC error of 0 is 'borderline', not 'beats'."""
    usage = [0.3, 0.6, 0.9]
    c_b, u, _ = _curve(usage, [0.7, 0.75, 0.8], 2)
    boot = Bootstrap.draw(N, 1000, seed=3)
    for extra in range(1, 40):  # raise the strategy image by image until the CI's lower bound reaches 0
        c_s = c_b.clone()
        c_s[N - 1 - torch.arange(extra) * 3 % N, :] = 1.0
        c = compare(boot, (c_s, u), (c_b, u), baseline_ref=0.8, floor_pts=0.5)
        if abs(c.ci[0]) <= c.ci_mc_error[0]:
            assert c.call == "borderline"
            return
    pytest.fail("no bound came near 0")


def test_low_usage_limit_finds_where_the_threshold_has_lost_a_point():
    usage = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    acc = np.array([0.70, 0.78, 0.80, 0.805, 0.81, 0.81])  # unsteered (0.8, 0.81): 1 pt lost at usage 0.2+0.2*0.5
    limit = low_usage_limit(usage, acc, ref_usage=0.8, ref_acc=0.81, loss_pts=1.0)
    assert limit == pytest.approx(0.4, abs=1e-3)  # 0.80 at 0.4 is exactly 1 pt below 0.81
    assert low_usage_limit(usage, acc, 0.8, 0.81, loss_pts=20.0) is None


def test_verdicts_exist_for_every_mode_source_and_strategy_with_reach_and_power():
    model, _, labels, test, scorer = _setup(2)
    sae = _sae(48)
    sets = index_sets(latent_frequencies(sae.encode(test.cls) > 0, labels, 10), size=8, seed=0, random_draws=2)
    modes, strategies = ["pre_topk", "post_topk", "additive"], ["per_class", "global", "random", "per_class_specific"]
    grid = SweepGrid(modes, ["true", "predicted"], strategies, [-0.5, 0.0, 0.5])
    res = run_sweep(model, sae, scorer, test, sets, grid, 16, 2, ReachSettings(cap=6.0))
    n = len(test)
    thr = Curve("shift", [-1.0, 0.0, 1.0], *(torch.stack([torch.full((n,), v) for v in (0, 0.5, 1)]),) * 3)
    thr.sample_correct = (torch.rand(3, n) < 0.5).float()
    j = Judging(Bootstrap.draw(n, 50, 0), thr, {"true": thr, "predicted": thr}, 0.5, 1.0)
    v = judge_all(res, j, IndexSets.class_conditioned)
    assert list(v) == modes and all(list(v[m]) == ["true", "predicted"] for m in modes)
    for m in modes:
        for src in ("true", "predicted"):
            for k in strategies:
                rec = v[m][src][k]
                assert rec["vs_threshold"]["call"] in ("beats", "loses", "matches", "inconclusive", "borderline",
                                                       "range too narrow")  # fmt: skip
                assert (rec["vs_mean_shift"] is not None) == (k in ("per_class", "per_class_specific"))
                assert rec["reach"]["alphas"][0] <= -0.5 and rec["reach"]["alphas"][-1] >= 0.5
                assert rec["reach"]["min_usage"]["usage"] == pytest.approx(min(rec["reach"]["head_usage"]))
            assert v[m]["predicted"]["global"] is v[m]["true"]["global"]  # class-free: judged once


def _results(calls: dict) -> dict:
    def cell(call):
        c = {"call": call, "delta": 0.01, "ci": [0.002, 0.02], "usage_range": [0.2, 0.9], "stake_pts": 2.0}
        point = {"usage": 0.2, "alpha": 24.0, "accuracy": 0.8, "accuracy_ci": [0.79, 0.81]}
        reach = {"min_usage": point, "max_usage": {**point, "usage": 0.9}, "saturated": {"positive": True}}
        return {"vs_threshold": c, "vs_mean_shift": None, "low_usage": None, "reach": reach}

    verdicts = {"pre_topk": {"true": {k: cell(c) for k, c in calls.items()}}}
    return {"steering": {"layer": 1, "mode": "pre_topk"}, "verdicts": verdicts}


def test_the_answer_says_yes_only_when_a_comparison_beats_the_threshold():
    yes = headline(_results({"per_class": "beats", "global": "matches"}))
    assert yes.startswith("Yes, at layer 1: 1 comparison(s) beat") and "per_class (pre_topk, true labels)" in yes
    no = headline(_results({"per_class": "matches", "global": "inconclusive"}))
    assert no.startswith("No, at layer 1: no SAE frequency-set strategy beats") and "1 match, 1 inconclusive" in no
    assert "+1.00 pts [95 % CI +0.20, +2.00]" in no  # the paper's method, named with its CI
