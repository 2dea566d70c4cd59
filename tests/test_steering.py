import itertools

import pytest
import torch

from headsteer.artifacts.activations import Activations
from headsteer.config import ModelConfig, SteerConfig
from headsteer.core.errors import HeadsteerError
from headsteer.model import build_model
from headsteer.sae.topk import TopKSAE
from headsteer.steer.alphas import alpha_grid
from headsteer.steer.reach import ReachSettings
from headsteer.steer.stats import class_overlap, index_sets, iou, latent_frequencies, overlap_frac
from headsteer.steer.steering import Candidates, SetSteering, steer, steer_codes
from headsteer.steer.sweep import Scorer, SweepGrid, run_sweep
from headsteer.steer.tails import FinalBlockTail, GeneralTail, OutcomeCache

PRE = torch.tensor([[3.0, 2.0, 1.0, -1.0, 0.5]])
S = torch.tensor([[False, False, True, True, False]])


def test_pre_topk_hand_example():
    # u_2: 1 -> 2.5 (alpha 1.5) enters the top-2 ahead of u_1 = 2
    z = steer_codes(PRE, S, 1.5, "pre_topk", k=2)
    assert z.tolist() == [[3.0, 0.0, 2.5, 0.0, 0.0]]


def test_post_topk_hand_example():
    # top-2 code is {0: 3, 1: 2}; S holds neither, so nothing changes ...
    assert steer_codes(PRE, S, 1.5, "post_topk", k=2).tolist() == [[3.0, 2.0, 0.0, 0.0, 0.0]]
    # ... while a set that holds latent 1 scales it by (1 + alpha)
    s1 = torch.tensor([[False, True, False, False, False]])
    assert steer_codes(PRE, s1, 0.5, "post_topk", k=2).tolist() == [[3.0, 3.0, 0.0, 0.0, 0.0]]


def test_additive_hand_example():
    # z = [3, 2, 0, 0, 0]; + alpha * max(z) = 0.9 * 3 = 2.7 on S = {2, 3} -> [3, 2, 2.7, 2.7, 0]; top-2 -> {0, 2 or 3}
    z = steer_codes(PRE, S, 0.9, "additive", k=2)
    assert z[0, 0].item() == 3.0 and z[0, 1].item() == 0.0
    assert sorted(z[0, 2:4].tolist()) == [0.0, pytest.approx(2.7)]


def test_negative_alpha_suppresses_set():
    s0 = torch.tensor([[True, False, False, False, False]])
    assert steer_codes(PRE, s0, -1.0, "pre_topk", k=2).tolist() == [[0.0, 2.0, 1.0, 0.0, 0.0]]
    assert steer_codes(PRE, s0, -0.5, "post_topk", k=2).tolist() == [[1.5, 2.0, 0.0, 0.0, 0.0]]
    # additive: 3 - 1.0 * 3 = 0 -> latent 0 leaves the code
    assert steer_codes(PRE, s0, -1.0, "additive", k=2).tolist() == [[0.0, 2.0, 0.0, 0.0, 0.0]]


@pytest.mark.parametrize("mode", ["pre_topk", "post_topk", "additive"])
def test_alpha_zero_is_reconstruction(mode):
    torch.manual_seed(0)
    sae = TopKSAE(12, 48, 5)
    x = torch.randn(32, 12)
    Sr = torch.rand(32, 48) < 0.3
    assert torch.equal(steer(sae, x, Sr, 0.0, mode), sae.reconstruct(x))
    torch.testing.assert_close(sae.reconstruct(x), sae(x).x_hat, atol=1e-5, rtol=0)  # the dense decode


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown steering mode 'mult'"):
        steer_codes(PRE, S, 1.0, "mult", k=2)


def test_frequencies_and_sets():
    active = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1], [1, 0, 0, 0]], dtype=torch.bool)
    labels = torch.tensor([0, 0, 1, 1])
    f = latent_frequencies(active, labels, 2)
    assert f.per_class.tolist() == [[1.0, 0.5, 0.5, 0.0], [1.0, 0.0, 0.0, 0.5]]
    assert f.overall.tolist() == [1.0, 0.25, 0.25, 0.25]
    sets = index_sets(f, size=1, seed=0, min_class_freq=0.1)
    assert sets.global_.tolist() == [0] and sets.per_class[:, 0].tolist() == [0, 0]
    # by lift, class 1's own latent 3 (lift 2) beats the generic latent 0 (lift 1)
    assert sets.per_class_specific[1].tolist() == [3]
    m = sets.masks("per_class_specific", torch.tensor([1, 0]), 4)
    assert m[0].tolist() == [False, False, False, True]
    assert iou(torch.tensor([0, 1]), torch.tensor([1, 2])) == pytest.approx(1 / 3)
    assert overlap_frac(torch.tensor([0, 1]), torch.tensor([1, 2])) == 0.5
    iou_m, frac_m = class_overlap(torch.tensor([[0, 1], [1, 2], [3, 4]]))
    assert iou_m[0, 1].item() == pytest.approx(1 / 3) and iou_m[0, 2].item() == 0 and iou_m[1, 1].item() == 1


def test_alpha_grid_and_validation():
    grid = alpha_grid(SteerConfig())
    assert len(grid) == 31 and grid[0] == -1.5 and grid[-1] == 1.5 and 0.0 in grid and 1.2 in grid
    # a step with three decimals keeps them (was [0, 0.12, 0.25, 0.38, ...])
    assert alpha_grid(SteerConfig(alpha_min=0, alpha_max=0.5, alpha_step=0.125)) == [0.0, 0.125, 0.25, 0.375, 0.5]
    # endpoints off the step are kept, not dropped
    assert alpha_grid(SteerConfig(alpha_min=-0.35, alpha_max=0.25, alpha_step=0.2)) == [-0.35, -0.2, 0.0, 0.2, 0.25]
    assert alpha_grid(SteerConfig(alpha_min=0.0, alpha_max=1.0, alpha_step=0.3)) == [0.0, 0.3, 0.6, 0.9, 1.0]
    with pytest.raises(HeadsteerError, match="alpha grid is empty"):
        SteerConfig(alpha_min=1.0, alpha_max=0.5)
    with pytest.raises(HeadsteerError, match="steer.mode='additive' is not in steer.modes"):
        SteerConfig(mode="additive", modes=["pre_topk"])


def _model_and_data(pruned_layers=None):
    torch.manual_seed(0)
    cfg = ModelConfig(
        img_size=28,
        patch_size=7,
        embed_dim=48,
        depth=3,
        num_heads=6,
        mlp_ratio=2.0,
        decision_init_bias=0.0,
        pruned_layers=pruned_layers,
    )
    model = build_model(cfg, 10, 1).eval()
    with torch.no_grad():
        for net in model.decisions.values():
            net.net.weight.normal_(std=0.3)  # decisions that actually vary with the input
    images = torch.randn(40, 1, 28, 28)
    labels = torch.randint(0, 10, (40,))
    return model, images, labels


def _sae(d):
    torch.manual_seed(3)
    return TopKSAE(d, 4 * d, 8).eval()


def _override_forward(model, images, layer, x_tilde):
    with torch.no_grad(), model.override_decision_input(layer, lambda cls: x_tilde):
        return model(images)


@pytest.mark.parametrize("layer", [2, 1])
def test_cached_tail_equals_full_forward(layer):
    model, images, labels = _model_and_data()
    sae = _sae(48)
    with torch.no_grad():
        tokens = model(images, capture=(layer,)).captured[layer]
    tail = FinalBlockTail(model, [tokens[:25], tokens[25:]]) if layer == 2 else GeneralTail(model, layer, [tokens])
    assert FinalBlockTail.supported(model, 2) and not FinalBlockTail.supported(model, 1)
    Sm = torch.zeros(40, 192, dtype=torch.bool)
    Sm[:, :20] = True
    x_tilde = steer(sae, tokens[:, 0], Sm, 1.2, "pre_topk").detach()
    full = _override_forward(model, images, layer, x_tilde)
    mask = (model.decisions[str(layer)](x_tilde) > 0).float()
    assert torch.equal(mask, full.masks[:, layer])
    logits, after = tail.run_masked(mask, slice(0, 40))
    assert (logits - full.logits).abs().max().item() < 1e-4
    # heads kept after the steered layer come from the steered stream, not the unsteered masks
    assert torch.equal(after, full.masks[:, layer + 1 :].sum(dim=(1, 2)).long())
    out = OutcomeCache(tail, batch_size=7)(mask)
    assert torch.equal(out.pred, full.logits.argmax(1)) and torch.equal(out.kept_after, after)


@pytest.mark.parametrize("layer", [2, 1])
def test_sweep_matches_naive_loop(layer):
    """Every point equals a full forward with the decision input of `layer` overridden (layer 1: the
    blocks after it re-run, and the overall usage counts their steered masks)."""
    model, images, labels = _model_and_data()
    sae = _sae(48)
    with torch.no_grad():
        base = model(images, capture=(layer,))
    tokens = base.captured[layer]
    active = sae.encode(tokens[:, 0]) > 0
    sets = index_sets(latent_frequencies(active, labels, 10), size=8, seed=0, random_draws=3)
    sets.custom["mine"] = torch.tensor([3, 17, 50, 101, 150, 151, 190, 2, 9, 11])  # larger than |S| = 8
    pred = base.logits.argmax(1)
    test = Activations(cls=tokens[:, 0], labels=labels, predictions=pred, masks=base.masks.to(torch.uint8))
    strategies = ["per_class", "global", "random", "mine"]
    grid = SweepGrid(["pre_topk", "additive"], ["true", "predicted"], strategies, [-0.5, 0.0, 1.0])
    tail = FinalBlockTail(model, [tokens]) if layer == 2 else GeneralTail(model, layer, [tokens])
    scorer = Scorer(OutcomeCache(tail, batch_size=16), test, layer, model.pruned_layers)
    res = run_sweep(model, sae, scorer, test, sets, grid, batch_size=16, random_draws=3)
    for (mi, mode), (li, source), (si, strategy), (ai, alpha) in itertools.product(
        *(enumerate(axis) for axis in (grid.modes, grid.label_sources, grid.strategies, grid.alphas))
    ):
        classes = labels if source == "true" else pred
        draws = sets.random_draws if strategy == "random" else [sets.get(strategy)]
        fulls = [
            _override_forward(
                model, images, layer, steer(sae, tokens[:, 0], sets.masks_of(s, classes, 192), alpha, mode).detach()
            )
            for s in draws
        ]
        ix = (mi, li, si, ai)
        acc = sum((f.logits.argmax(1) == labels).float().mean().item() for f in fulls) / len(fulls)
        assert res.accuracy[ix].item() == pytest.approx(acc)
        usage = sum(f.masks[:, layer].mean().item() for f in fulls) / len(fulls)
        assert res.usage_layer[ix].item() == pytest.approx(usage)
        assert res.usage_overall[ix].item() == pytest.approx(sum(f.masks.mean().item() for f in fulls) / len(fulls))
        if strategy == "random":
            per_draw = [(f.logits.argmax(1) == labels).float().mean().item() for f in fulls]
            assert res.draw_accuracy[mi, ai].tolist() == pytest.approx(per_draw)


def test_multiplicative_factor_is_clamped_at_zero():
    """alpha < -1 removes S like alpha = -1 (no sign flip): pre_topk never lets a strongly negative
    latent of S into the code, post_topk never emits a negative code."""
    pre = torch.tensor([[3.0, 2.0, -5.0, 1.0, 0.5]])
    S = torch.tensor([[True, False, True, False, False]])
    for mode in ("pre_topk", "post_topk"):
        at_minus_1 = steer_codes(pre, S, -1.0, mode, k=2)
        at_minus_1_5 = steer_codes(pre, S, -1.5, mode, k=2)
        assert torch.equal(at_minus_1, at_minus_1_5), mode
        assert (at_minus_1_5 >= 0).all() and at_minus_1_5[0, 2] == 0 and at_minus_1_5[0, 0] == 0
    assert steer_codes(pre, S, -1.5, "pre_topk", k=2).tolist() == [[0.0, 2.0, 0.0, 1.0, 0.0]]


def test_additive_ties_are_broken_by_pre_activation_then_index():
    """alpha > 1 with |S| > k: every latent of S ties or beats the rest; the choice among tied latents
    follows the encoder pre-activation (larger first), then the index, whatever the input order."""
    torch.manual_seed(0)
    pre = torch.randn(6, 30)
    S = torch.zeros(6, 30, dtype=torch.bool)
    S[:, 5:20] = True  # 15 latents in S, k = 4
    z = steer_codes(pre, S, 2.0, "additive", k=4)
    for b in range(6):
        row = pre[b].tolist()
        kept = sorted(range(30), key=lambda i: -row[i])[:4]  # the unsteered top-4 code, by hand
        code = [max(row[i], 0.0) if i in kept else 0.0 for i in range(30)]
        values = [code[i] + (2.0 * max(code) if S[b, i] else 0.0) for i in range(30)]
        ranked = sorted(range(30), key=lambda i: (-values[i], -pre[b, i].item(), i))[:4]  # naive reference
        assert sorted(z[b].nonzero().squeeze(1).tolist()) == sorted(ranked)
        assert set(ranked) <= set(range(5, 20))  # only latents of S survive


@pytest.mark.parametrize("mode", ["pre_topk", "post_topk", "additive"])
def test_sparse_steering_equals_a_dense_reference(mode):
    """The candidate-based code equals Eq. 5 written densely over all latents (naive reference), also from one
    SetSteering reused at every alpha, as a sweep does."""
    g = torch.Generator().manual_seed(1)
    pre = torch.randn(50, 300, generator=g)
    S_idx = torch.stack([torch.randperm(300, generator=g)[:12] for _ in range(50)])
    S = torch.zeros(50, 300, dtype=torch.bool).scatter_(1, S_idx, True)
    k = 8
    plan = SetSteering(Candidates.of(pre, k, 12), S_idx, mode, k)
    for alpha in (-1.5, -1.0, -0.4, 0.0, 0.7, 2.0):
        f = max(0.0, 1.0 + alpha)
        z = torch.zeros_like(pre)
        v, i = pre.topk(k)
        z.scatter_(1, i, v.relu())
        if mode == "pre_topk":
            u = torch.where(S, f * pre, pre)
            v, i = u.topk(k)
            ref = torch.zeros_like(pre).scatter_(1, i, v.relu())
        elif mode == "post_topk":
            ref = torch.where(S, f * z, z)
        else:
            u = z + alpha * z.max(1, keepdim=True).values * S
            ref = torch.zeros_like(pre)
            for b in range(50):
                order = sorted(range(300), key=lambda j: (-u[b, j].item(), -pre[b, j].item(), j))[:k]
                ref[b, order] = u[b, order].relu()
        torch.testing.assert_close(steer_codes(pre, S, alpha, mode, k), ref, atol=1e-6, rtol=0)
        vals, idx = plan.code(alpha)
        torch.testing.assert_close(torch.zeros_like(pre).scatter_(1, idx, vals), ref, atol=1e-6, rtol=0)


def test_reach_points_match_naive_loop():
    """Every point walked past the grid equals a full forward with the overridden decision input, in every
    mode, label source and strategy (class-conditioned cells differ by mode and source)."""
    model, images, labels = _model_and_data()
    sae, layer = _sae(48), 1
    with torch.no_grad():
        base = model(images, capture=(layer,))
    tokens = base.captured[layer]
    sets = index_sets(latent_frequencies(sae.encode(tokens[:, 0]) > 0, labels, 10), size=8, seed=0, random_draws=2)
    pred = base.logits.argmax(1)
    test = Activations(cls=tokens[:, 0], labels=labels, predictions=pred, masks=base.masks.to(torch.uint8))
    grid = SweepGrid(
        ["pre_topk", "post_topk", "additive"], ["true", "predicted"], ["per_class", "random"], [-1.5, 0.0, 1.5]
    )
    scorer = Scorer(OutcomeCache(GeneralTail(model, layer, [tokens]), batch_size=16), test, layer, model.pruned_layers)
    res = run_sweep(model, sae, scorer, test, sets, grid, 16, 2, ReachSettings(cap=12.0))
    for (mi, mode), (li, source), (si, strategy) in itertools.product(
        *(enumerate(axis) for axis in (grid.modes, grid.label_sources, grid.strategies))
    ):
        r = res.reaches[(mi, li, si)]
        assert r.alphas[0] == 3.0 and set(r.saturated) == {"positive", "negative"}
        classes = labels if source == "true" else pred
        draws = sets.random_draws if strategy == "random" else [sets.get(strategy)]
        for alpha, point in zip(r.alphas, r.scores, strict=True):
            fulls = [
                _override_forward(
                    model, images, layer, steer(sae, tokens[:, 0], sets.masks_of(s, classes, 192), alpha, mode).detach()
                )
                for s in draws
            ]
            acc = sum((f.logits.argmax(1) == labels).float().mean().item() for f in fulls) / len(fulls)
            usage = sum(f.masks[:, layer].mean().item() for f in fulls) / len(fulls)
            assert point.correct.mean().item() == pytest.approx(acc) and point.usage.mean().item() == pytest.approx(
                usage
            )


def test_top_class_pairs_equal_sorting_every_pair():
    """The ten most similar class pairs (steer metrics' class_overlap.top_pairs), picked without listing every
    pair, against sorting all (iou, a, b) tuples; many ties, as with many classes of equal sets."""
    from headsteer.steer.summary import _top_pairs

    g = torch.Generator().manual_seed(0)
    for C in (2, 4, 5, 30):
        m = torch.randint(0, 4, (C, C), generator=g).float() / 4  # values 0, .25, .5, .75: ties everywhere
        m = (m + m.T) / 2
        naive = sorted(((m[a, b].item(), a, b) for a in range(C) for b in range(a + 1, C)), reverse=True)[:10]
        assert _top_pairs(m) == naive, C
    assert _top_pairs(torch.ones(1, 1)) == []
