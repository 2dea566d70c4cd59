"""Learned latent strengths, the untrained-SAE control and the gate readout: a toy where one latent drives the
right head pattern, the linear readout against the steered network, the control's recipe, and fits that never
read a test row."""

import torch

from headsteer.artifacts.activations import Activations
from headsteer.artifacts.io import read_tensors_and_metadata
from headsteer.config.steer import SteerConfig
from headsteer.model.decision import DecisionNet
from headsteer.sae.topk import TopKSAE
from headsteer.steer import fitted
from headsteer.steer.baselines import threshold_curve
from headsteer.steer.fit_cache import FitCache
from headsteer.steer.gate_fit import FitSettings
from headsteer.steer.learned import (
    CodeMatrix,
    Codes,
    FreePairs,
    gate_directions,
    is_linear,
    pushes,
    strength_logits,
)
from headsteer.steer.learned_fit import LearnedProblem, choose, sparsity_paths
from headsteer.steer.practitioner import OnTest
from headsteer.steer.random_sae import untrained_sae
from headsteer.steer.steering import steer
from headsteer.steer.sweep import Scorer
from headsteer.steer.tails import OutcomeCache
from headsteer.steer.uncertainty import Bootstrap
from test_rivals import Rows, ToyTail, toy_split


def identity_sae(d: int, k: int) -> TopKSAE:
    """An SAE whose latents are the coordinates of x (W_dec = I, b_dec = 0): a code is x's k largest entries."""
    sae = TopKSAE(d, d, k)
    with torch.no_grad():
        sae.W_dec.copy_(torch.eye(d))
        sae.W_enc.copy_(torch.eye(d))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def one_latent_toy(g: torch.Generator, n: int = 800, d: int = 12, k: int = 3, H: int = 2, star: int = 5):
    """(x (n, d), identity SAE, right (n, H)): sparse non-negative inputs where latent `star` fires on about 40 %
    of the images, and keeping both heads is right exactly where it does not."""
    x = torch.rand(n, d, generator=g) * (torch.rand(n, d, generator=g) < 0.2)  # sparse, non-negative
    x[:, star] = (torch.rand(n, generator=g) < 0.4).float() * (0.5 + 0.5 * torch.rand(n, generator=g))
    sae = identity_sae(d, k)
    vals, idx = sae.encode_sparse(x)
    z_star = (vals * (idx == star)).sum(1)  # latent `star` as the code holds it
    return x, sae, (z_star == 0).float()[:, None].expand(n, H).clone()


def toy_path(x, sae, right, decide, linear: bool):
    """(sparsity path with m = all, 1, 2 at the held-out rows' right usage, split, target): the linear readout
    G for a linear decision network, else the network on the steered embedding (G = None)."""
    split = toy_split(x, right)
    codes = Codes.of(sae, decide, x)
    G = gate_directions(decide, sae, x.mean(0))  # for a non-linear network, the Jacobian: the strengths' scale only
    p = LearnedProblem(sae, decide, split, codes, None, 1, G if linear else None, pushes(codes, G))
    target = right[~split.holdout].mean().item()
    path = sparsity_paths(p, [target], FitSettings(steps=200, lr=0.1, usage_weight=20.0), 1e-2, [1, 2])[0]
    return path, split, target


def test_sparsity_path_picks_the_driving_latent_at_m_1():
    """Heads must all be dropped exactly on the images where latent 5 fires; the gate reads latent 5 with weight
    -1 on both heads (others with small random weights), so amplifying latent 5 alone does the job."""
    g = torch.Generator().manual_seed(0)
    d, H, star = 12, 2, 5
    x, sae, right = one_latent_toy(g)
    decide = DecisionNet(d, H, init_bias=0.0)
    with torch.no_grad():
        decide.net.weight.copy_(0.05 * torch.randn(H, d, generator=g))
        decide.net.weight[:, star] = -1.0
        decide.net.bias.fill_(1.1)
    path, split, target = toy_path(x, sae, right, decide, linear=True)
    m1 = path[1]
    assert m1.m == 1 and m1.alpha[0].nonzero().flatten().tolist() == [star]
    assert m1.holdout_accuracy > 0.95
    assert choose(path, int(split.holdout.sum()), target) is m1  # the fewest latents within one SE of the best


def test_sparsity_path_through_a_non_linear_gate_picks_the_driving_latent():
    """The same toy with a decision network that has a hidden layer: no linear readout exists, so the fit runs the
    network on the steered embedding (G = None) and the strengths' scale comes from its Jacobian at the mean.
    Hidden unit 0 reads latent 5 alone; both heads drop once GELU of it passes the bias."""
    g = torch.Generator().manual_seed(0)
    d, H, star = 12, 2, 5
    x, sae, right = one_latent_toy(g)
    decide = DecisionNet(d, H, hidden=2, init_bias=0.0)
    with torch.no_grad():
        first, last = decide.net[0], decide.net[2]
        first.weight.copy_(0.05 * torch.randn(2, d, generator=g))
        first.weight[0].zero_()
        first.weight[0, star] = 1.0
        first.bias.zero_()
        last.weight.copy_(torch.tensor([[-1.0, 0.0], [-1.0, 0.0]]))
        last.bias.fill_(1.1)
    assert not is_linear(decide)
    path, _, _ = toy_path(x, sae, right, decide, linear=False)
    m1 = path[1]
    assert m1.m == 1 and m1.alpha[0].nonzero().flatten().tolist() == [star]
    assert m1.holdout_accuracy > 0.95


def test_linear_readout_predicts_the_post_topk_logit_change_exactly():
    torch.manual_seed(1)
    d, n_lat, k, H = 16, 64, 4, 6
    sae, decide = TopKSAE(d, n_lat, k).eval(), DecisionNet(d, H)
    with torch.no_grad():
        decide.net.weight.normal_()
    x = torch.randn(40, d)
    G = gate_directions(decide, sae, x.mean(0))
    vals, idx = sae.encode_sparse(x)
    j = int(idx[0, 0])  # a latent that fires on image 0
    S = torch.zeros(40, n_lat, dtype=torch.bool)
    S[:, j] = True
    with torch.no_grad():
        measured = decide(steer(sae, x, S, 1.7, "post_topk")) - decide(steer(sae, x, S, 0.0, "post_topk"))
    z_j = (vals * (idx == j)).sum(1)
    predicted = 1.7 * z_j[:, None] * G[j][None]
    assert measured.abs().max() > 1e-3  # the latent does move the logits
    torch.testing.assert_close(measured, predicted, atol=1e-5, rtol=1e-4)


def test_untrained_sae_follows_the_stated_recipe():
    like = TopKSAE(10, 40, 5, hook_name="blocks.1.hook_resid_pre.cls")
    cls = torch.randn(300, 10) + 3.0
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = untrained_sae(like, cls, seed=7), untrained_sae(like, cls, seed=7)
    assert torch.equal(torch.rand(1), before)  # the caller's random stream is untouched
    assert (a.d_in, a.d_sae, a.k, a.hook_name) == (10, 40, 5, like.hook_name)
    torch.testing.assert_close(a.W_dec.norm(dim=1), torch.ones(40))
    assert torch.equal(a.W_enc, a.W_dec.T) and torch.equal(a.b_enc, torch.zeros(40))
    torch.testing.assert_close(a.b_dec, cls.mean(0))
    assert torch.equal(a.W_dec, b.W_dec) and not torch.equal(a.W_dec, untrained_sae(like, cls, seed=8).W_dec)
    assert not torch.allclose(a.W_dec, like.W_dec)


def _context(tmp, x_test, right_test, labels_test, split, decide, seed=0):
    n, H = x_test.shape[0], right_test.shape[1]
    acts = Activations(x_test, labels_test, labels_test, torch.ones(n, 1, H, dtype=torch.uint8))
    scorer = Scorer(OutcomeCache(ToyTail(x_test, right_test)), acts, 0, [0])
    with torch.no_grad():
        threshold = threshold_curve(scorer, decide(x_test), 11)
    side = OnTest(decide, x_test, {"true": labels_test, "predicted": labels_test}, scorer)
    sc = SteerConfig(fit_steps=15, learned_path=[1, 2], rival_targets=[0.3, 0.6])
    settings = fitted.fit_settings(sc, seed)
    grid = fitted.targets(decide, split, sc.rival_targets)
    ctx = fitted.FitContext(
        decide,
        split,
        side,
        threshold,
        Bootstrap.draw(n, 50, 0),
        ["a", "b"],
        settings,
        FitCache(tmp, {}),
        ["true"],
        grid,
    )
    return sc, ctx, (threshold, {})


def test_fits_never_read_a_test_row(tmp_path):
    """Everything fitted (rivals, learned strengths on the trained and the untrained SAE) is the same whether
    the test rows are the real ones or noise: only the scoring reads them."""
    g = torch.Generator().manual_seed(5)
    d, H, n = 8, 2, 300
    w = torch.randn(H, d, generator=g)
    x, x_test = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    right, right_test = (x @ w.T > 0).float(), (x_test @ w.T > 0).float()
    labels = (torch.arange(n) % 2).long()
    split = toy_split(x, right)
    split.labels = split.predictions = labels
    decide, sae = DecisionNet(d, H, init_bias=0.0), TopKSAE(d, 24, 3).eval()
    poison = (torch.randn(n, d, generator=g) * 50, (torch.rand(n, H, generator=g) > 0.5).float(), labels.flip(0))
    saved = []
    for i, (xt, rt, lt) in enumerate([(x_test, right_test, labels), poison]):
        sc, ctx, base = _context(tmp_path / str(i), xt, rt, lt, split, decide)
        fitted.fit_all(sc, 0, ctx, sae, Rows(x), base, 0.5)
        saved.append({f.name: read_tensors_and_metadata(f) for f in sorted((tmp_path / str(i) / "fits").iterdir())})
    assert len(saved[0]) == 7  # 3 rivals; 2 learned variants x (trained, untrained SAE)
    for name, (tensors, meta) in saved[0].items():  # (the bytes may differ: safetensors orders metadata keys freely)
        other, other_meta = saved[1][name]
        assert meta == other_meta and tensors.keys() == other.keys(), name
        assert all(torch.equal(tensors[k], other[k]) for k in tensors), name


def test_free_pairs_and_code_matrix_equal_the_dense_strength_logits():
    """The fit's sparse views (only free strengths touched; the code matrix) give the logits of the direct
    computation."""
    torch.manual_seed(2)
    d, n_lat, k, H, C, B = 12, 40, 5, 3, 4, 6
    sae, decide = TopKSAE(d, n_lat, k).eval(), DecisionNet(d, H)
    x, classes = torch.randn(50, d), torch.randint(0, C, (50,))
    codes = Codes.of(sae, decide, x)
    G = gate_directions(decide, sae, x.mean(0))
    allowed = torch.rand(B, C, n_lat) < 0.3
    alpha = torch.randn(B, C, n_lat) * allowed
    rows = torch.arange(10, 50)
    want = strength_logits(alpha, codes, rows, classes, G, decide, sae)
    torch.testing.assert_close(FreePairs(allowed, codes, rows, classes, G).logits(alpha), want, atol=1e-5, rtol=1e-5)
    # the unrestricted fit's sparse product, per class and global (row 0 of alpha for every image)
    torch.testing.assert_close(CodeMatrix(codes, rows, classes, G, n_lat).logits(alpha), want, atol=1e-5, rtol=1e-5)
    want0 = strength_logits(alpha[:, :1], codes, rows, None, G, decide, sae)
    torch.testing.assert_close(
        CodeMatrix(codes, rows, None, G, n_lat).logits(alpha[:, :1]), want0, atol=1e-5, rtol=1e-5
    )
    # and the direct computation is the decision network on the steered embedding (post_topk per latent)
    with torch.no_grad():
        vals, idx = sae.encode_sparse(x[rows])
        steered = sae.decode_sparse(vals * (1 + alpha[2][classes[rows][:, None], idx]), idx)
        torch.testing.assert_close(want[2], decide(steered), atol=1e-5, rtol=1e-5)


def test_choose_keeps_points_near_the_target_then_the_fewest_latents_within_one_se():
    from headsteer.steer.learned_fit import PathPoint

    def point(m, usage, gain, acc=0.9):
        return PathPoint(m, torch.zeros(1, 4), acc, usage, gain)

    far = point(1, 0.50, 0.05)  # the best gain, but at usage 0.5: it does not stand for target 0.1
    pts = [point(0, 0.10, 0.006), far, point(4, 0.12, 0.004), point(8, 0.09, 0.005)]
    assert choose(pts, 1000, 0.1).m == 4  # SE = sqrt(0.9 * 0.1 / 1000) = 0.0095: every near point is within it
    assert choose(pts, 100000, 0.1).m == 0  # SE = 0.00095: only the best one, ALL, is within it
    assert choose([far, point(2, 0.3, 0.0)], 1000, 0.1).m == 2  # none near: the nearest
