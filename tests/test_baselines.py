"""Baselines, bootstrap CIs, verdicts at equal usage, sensitivity and held-out top classes, each against a
naive or independent computation."""

import numpy as np
import pytest
import torch

from headsteer.artifacts.activations import Activations
from headsteer.steer.baselines import MeanShift, mean_shift_curve, threshold_curve, threshold_shifts
from headsteer.steer.heldout import halves, top_classes_heldout
from headsteer.steer.sensitivity import layer_sensitivity
from headsteer.steer.stats import index_sets, latent_frequencies
from headsteer.steer.sweep import Scorer, SweepGrid, run_sweep
from headsteer.steer.tails import GeneralTail, OutcomeCache, make_tail
from headsteer.steer.uncertainty import Bootstrap
from headsteer.steer.verdict import compare, curve_at
from test_steering import _model_and_data, _sae


def _setup(layer):
    model, images, labels = _model_and_data()
    with torch.no_grad():
        base = model(images, capture=(layer,))
    tokens = base.captured[layer]
    test = Activations(tokens[:, 0], labels, base.logits.argmax(1), base.masks.to(torch.uint8))
    scorer = Scorer(OutcomeCache(make_tail(model, layer, [tokens])), test, layer, model.pruned_layers)
    return model, images, labels, test, scorer


def test_threshold_shifts_span_usage_evenly():
    logits = torch.randn(500, 6)
    shifts = threshold_shifts(logits, levels=11)
    usage = [((logits + b) > 0).float().mean().item() for b in shifts]
    assert 0.0 in shifts and usage[0] == 0.0 and usage[-1] == 1.0
    for level in np.linspace(0, 1, 11):
        assert min(abs(u - level) for u in usage) < 1e-3


@pytest.mark.parametrize("layer", [2, 1])
def test_threshold_curve_equals_full_forward_with_shifted_bias(layer):
    """Independent computation: add b to the decision network's bias and run the whole model."""
    model, images, labels, test, scorer = _setup(layer)
    decide = model.decisions[str(layer)]
    with torch.no_grad():
        curve = threshold_curve(scorer, decide(test.cls), levels=5)
        for k, b in enumerate(curve.values):
            decide.net.bias += b
            full = model(images)
            decide.net.bias -= b
            assert curve.sample_correct[k].mean().item() == pytest.approx(
                (full.logits.argmax(1) == labels).float().mean().item()
            )
            assert curve.sample_usage[k].mean().item() == pytest.approx(full.masks[:, layer].mean().item())
            assert curve.sample_usage_overall[k].mean().item() == pytest.approx(full.masks.mean().item())


def test_mean_shift_curve_equals_override_with_hand_computed_class_means():
    model, images, labels, test, scorer = _setup(2)
    x = test.cls
    shift = MeanShift.fit(x, labels, 10)
    curve = mean_shift_curve(scorer, model.decisions["2"], x, labels, shift, [0.0, 1.0, 3.0])
    xs, ys = x.numpy(), labels.numpy()
    mu = xs.mean(0)
    mu_c = np.stack([xs[ys == c].mean(0) if (ys == c).any() else np.zeros_like(mu) for c in range(10)])
    for k, a in enumerate([0.0, 1.0, 3.0]):
        x_tilde = torch.from_numpy(xs + a * (mu_c[ys] - mu)).float()
        with torch.no_grad(), model.override_decision_input(2, lambda cls, xt=x_tilde: xt):
            full = model(images)
        assert curve.sample_correct[k].mean().item() == pytest.approx((full.logits.argmax(1) == labels).float().mean())
        assert curve.sample_usage[k].mean().item() == pytest.approx(full.masks[:, 2].mean().item())


def test_bootstrap_ci_matches_the_binomial_width_and_is_zero_for_identical_columns():
    g = torch.Generator().manual_seed(1)
    n, p = 4000, 0.3
    x = (torch.rand(n, generator=g) < p).float()
    boot = Bootstrap.draw(n, 1000, seed=0)
    assert torch.equal(boot.weights.sum(1), torch.full((1000,), float(n)))
    lo, hi = boot.interval(boot.means(x[:, None]))[:, 0].tolist()
    expected = 2 * 1.96 * (x.mean().item() * (1 - x.mean().item()) / n) ** 0.5
    assert hi - lo == pytest.approx(expected, rel=0.15) and lo < x.mean().item() < hi
    assert boot.delta_ci(x[:, None], x).abs().max().item() == 0.0


def test_compare_at_equal_usage():
    n = 2000
    g = torch.Generator().manual_seed(0)
    usage = torch.linspace(0.2, 0.9, 8)
    base_correct = (torch.rand(n, 8, generator=g) < 0.6).float()
    better = torch.maximum(base_correct, (torch.rand(n, 8, generator=g) < 0.2).float())  # ~ +8 pts everywhere
    u = usage.expand(n, -1)
    c = compare(Bootstrap.draw(n, 300, seed=0), (better, u), (base_correct, u), 0.6, 0.5)
    gaps = (better - base_correct).mean(0).double().numpy()  # per point; the curves share their usage values
    true_gap = np.interp(np.linspace(0.2, 0.9, 21), usage.double().numpy(), gaps).mean()
    assert c.call == "beats" and c.delta == pytest.approx(true_gap, abs=1e-6) and c.ci[0] > 0
    apart = compare(Bootstrap.draw(n, 50, seed=0), (better, u * 0.1), (base_correct, u * 0.1 + 0.5), 0.6, 0.5)
    assert apart.call == "range too narrow" and apart.delta is None
    assert apart.strategy_range == pytest.approx([0.02, 0.09]) and apart.baseline_range == pytest.approx([0.52, 0.59])
    # curve reading: ties in usage are averaged, then interpolated
    assert curve_at(np.array([0.2, 0.2, 0.6]), np.array([0.5, 0.7, 1.0]), np.array([0.4])).tolist() == [0.8]


@pytest.mark.parametrize("layer", [2, 1])
def test_sensitivity_equals_forward_with_forced_masks(layer):
    model, images, labels, test, scorer = _setup(layer)
    sens = layer_sensitivity(scorer.cache, labels, test.predictions)

    def acc(mask):
        with torch.no_grad():
            out = model.forward_from(model.embed(images), 0, force={layer: mask.expand(40, -1)})
        return (out.logits.argmax(1) == labels).float().mean().item()

    assert sens.all_kept == pytest.approx(acc(torch.ones(6)))
    assert sens.all_dropped == pytest.approx(acc(torch.zeros(6)))
    for h in range(6):
        m = torch.ones(6)
        m[h] = 0
        assert sens.head_dropped[h] == pytest.approx(acc(m))
    assert sens.range_pts == pytest.approx(100 * (sens.all_kept - sens.all_dropped))
    assert isinstance(scorer.cache.tail, GeneralTail) == (layer == 1)


def test_heldout_top_classes_are_chosen_on_the_other_half():
    model, images, labels, test, scorer = _setup(2)
    sae = _sae(48)
    sets = index_sets(latent_frequencies(sae.encode(test.cls) > 0, labels, 10), size=8, seed=0)
    grid = SweepGrid(["pre_topk"], ["true"], ["per_class"], [0.0, 1.0])
    res = run_sweep(model, sae, scorer, test, sets, grid, batch_size=16)
    select, report = halves(40, seed=0)
    assert select.sum() == 20 and not (select & report).any() and (select | report).all()
    # plant the outcome: on the selection half, class 3 gains most; on the report half it gains nothing
    res.sample_correct[0, 0, 0, 0] = 0.0
    res.sample_correct[0, 0, 0, 1] = ((labels == 3) & select).float()
    out = top_classes_heldout(
        res, test, [f"c{i}" for i in range(10)], Bootstrap.draw(40, 100, 0), 1.0, 2, 0, "pre_topk"
    )
    top = out["classes"][0]
    assert top["class"] == "c3" and top["accuracy_after"] - top["accuracy_before"] == 0.0
    assert out["all_classes"][3]["gain_selection_half"] == 1.0 and out["all_classes"][3]["gain_report_half"] == 0.0
    assert top["images"] == int(((labels == 3) & report).sum())


def test_restricted_bootstrap_equals_a_loop_over_resamples():
    g = torch.Generator().manual_seed(2)
    values, ref = torch.rand(300, 4, generator=g), torch.rand(300, generator=g)
    rows = torch.rand(300, generator=g) < 0.3
    boot = Bootstrap.draw(300, 200, seed=5)
    got = boot.means(values - ref[:, None], rows)  # (B, P)
    for b in range(0, 200, 37):  # naive: each resample's weighted mean over the chosen rows
        w = boot.weights[b][rows].double()
        naive = [(w * (values[rows, p] - ref[rows]).double()).sum().item() / w.sum().item() for p in range(4)]
        assert got[b].tolist() == pytest.approx(naive, abs=1e-6)


def test_random_draw_zero_is_the_seeded_set_and_draws_differ():
    from headsteer.steer.stats import draw_random_sets

    sets = draw_random_sets(100, 10, draws=4, seed=7)
    assert torch.equal(sets[0], torch.randperm(100, generator=torch.Generator().manual_seed(7))[:10])
    assert torch.equal(draw_random_sets(100, 10, draws=1, seed=7)[0], sets[0])
    assert len({tuple(s.tolist()) for s in sets}) == 4


@pytest.mark.parametrize("subset", [False, True])
def test_oracle_bounds_equal_every_pattern_run_in_full(subset):
    """On every image, and on a subset of them (steer.oracle_images), against full forwards of each pattern."""
    model, images, labels, test, scorer = _setup(2)
    rows = torch.tensor([0, 3, 4, 9, 17, 22, 30, 39]) if subset else None
    sens = layer_sensitivity(scorer.cache, labels, test.predictions, True, rows)
    if subset:
        images, labels = images[rows], labels[rows]
    right = []
    for p in range(64):
        mask = torch.tensor([(p >> h) & 1 for h in range(6)], dtype=torch.float32).expand(len(labels), -1)
        with torch.no_grad():
            out = model.forward_from(model.embed(images), 0, force={2: mask})
        right.append(out.logits.argmax(1) == labels)
    right = torch.stack(right)
    o = sens.oracle
    assert o["patterns"] == 64 and o["images"] == len(labels)
    assert sens.all_kept == pytest.approx((scorer.cache.predict(63, torch.arange(40)) == test.labels).float().mean())
    assert o["any_pattern_right"] == pytest.approx(right.any(0).float().mean().item())
    assert o["every_pattern_right"] == pytest.approx(right.all(0).float().mean().item())
    assert o["max_accuracy"] == pytest.approx(right.float().mean(1).max().item())


def test_no_random_band_without_random_sets():
    from headsteer.steer.summary import random_band

    model, images, labels, test, scorer = _setup(2)
    sae = _sae(48)
    sets = index_sets(latent_frequencies(sae.encode(test.cls) > 0, labels, 10), size=8, seed=0, random_draws=3)
    res = run_sweep(model, sae, scorer, test, sets, SweepGrid(["pre_topk"], ["true"], ["global"], [0.0, 1.0]), 16, 3)
    assert random_band(res, "pre_topk") is None


def test_per_class_cis_equal_a_naive_interval_per_class_and_alpha():
    """steer/per_class.safetensors' CIs: one interval per distinct column (many classes of few images share
    most), against the resampled class means written out by hand for every (source, strategy, metric,
    class, alpha)."""
    from headsteer.steer.summary import per_class_cis

    model, images, labels, test, scorer = _setup(2)
    sae = _sae(48)
    sets = index_sets(latent_frequencies(sae.encode(test.cls) > 0, labels, 10), size=8, seed=0)
    grid = SweepGrid(["pre_topk"], ["true", "predicted"], ["per_class", "global"], [-1.0, 0.0, 0.5, 1.0])
    res = run_sweep(model, sae, scorer, test, sets, grid, batch_size=16)
    res.sample_correct[0, 1, 0, 3] = res.sample_correct[0, 1, 0, 1]  # a column equal to alpha 0's: CI [0, 0]
    labels = labels.clone()
    labels[labels == 7] = 6  # class 7 without test images: zeros
    boot = Bootstrap.draw(40, 60, seed=3)
    got = per_class_cis(res, "pre_topk", boot, labels, 10)  # (Ls, S, 2, A, C, 2)
    assert got.shape == (2, 2, 2, 4, 10, 2)
    q = torch.tensor([0.025, 0.975], dtype=torch.float64)
    for li, si, k in np.ndindex(2, 2, 2):
        values = (res.sample_correct if k == 0 else res.sample_usage)[0, li, si].double()  # (A, N)
        for c in range(10):
            rows = (labels == c).nonzero().squeeze(1).tolist()
            for a in range(4):
                if not rows:
                    assert got[li, si, k, a, c].tolist() == [0.0, 0.0]
                    continue
                d = [values[a, n] - values[1, n] for n in rows]
                w = [[boot.weights[b, n].item() for n in rows] for b in range(60)]
                means = torch.tensor(
                    [sum(wi * di for wi, di in zip(wb, d, strict=True)) / max(1.0, sum(wb)) for wb in w]
                )
                want = torch.quantile(means, q)
                assert torch.allclose(got[li, si, k, a, c].double(), want, atol=1e-6), (li, si, k, a, c)
    assert got[1, 0, 0, 3].abs().sum() == 0 and got[..., 7, :].abs().sum() == 0
    assert got.abs().sum() > 0  # some class's change is uncertain: not zeros compared with zeros


def test_distinct_columns_group_exactly_the_equal_ones():
    from headsteer.steer.summary import _distinct_columns

    g = torch.Generator().manual_seed(4)
    kinds = torch.rand(50, 7, generator=g)
    pick = torch.randint(0, 7, (40,), generator=g)
    x = kinds[:, pick]  # (B, P) with repeats
    x[:, 6] = x[:, 5]
    x[0, 6] = torch.nextafter(x[0, 5], torch.tensor(2.0))  # one bit away from column 5: another kind
    first, where = _distinct_columns(x)
    assert torch.equal(x[:, first][:, where], x)  # every column is its kind's first column
    assert len(first) == len({tuple(col.tolist()) for col in x.T}) and where[5] != where[6]  # no two kinds equal
