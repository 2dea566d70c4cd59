import pytest
import torch

from headsteer.activations import Activations
from headsteer.config import ModelConfig, SteerConfig
from headsteer.errors import HeadsteerError
from headsteer.model import build_model
from headsteer.sae.topk import TopKSAE
from headsteer.steer.alphas import alpha_grid
from headsteer.steer.stats import class_overlap, index_sets, iou, latent_frequencies, overlap_frac
from headsteer.steer.steering import steer, steer_codes
from headsteer.steer.sweep import FinalBlockTail, GeneralTail, SweepGrid, run_sweep

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
    assert torch.equal(steer(sae, x, Sr, 0.0, mode), sae(x).x_hat)


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


@pytest.mark.parametrize("layer", [2, 1])
def test_cached_tail_equals_full_forward(layer):
    model, images, labels = _model_and_data()
    sae = _sae(48)
    with torch.no_grad():
        tokens = model(images, capture=(layer,)).captured[layer]
    tail = FinalBlockTail(model, [tokens[:25], tokens[25:]]) if layer == 2 else GeneralTail(model, layer, [tokens])
    assert FinalBlockTail.supported(model, 2) and not FinalBlockTail.supported(model, 1)
    x = tokens[:, 0]
    Sm = torch.zeros(40, 192, dtype=torch.bool)
    Sm[:, :20] = True
    x_tilde = steer(sae, x, Sm, 1.2, "pre_topk").detach()
    with torch.no_grad(), model.override_decision_input(layer, lambda cls: x_tilde):
        full = model(images)
    if layer == 2:
        mask = (model.decisions["2"](x_tilde) > 0).float()
        got = tail.logits(mask, slice(0, 40))
        assert torch.equal(mask, full.masks[:, 2])
    else:
        got, masks = tail.run(x_tilde, slice(0, 40))
        assert torch.equal(masks[:, layer:], full.masks[:, layer:])  # layers before the start are not re-run
    assert (got - full.logits).abs().max().item() < 1e-4


def test_sweep_matches_naive_loop():
    model, images, labels = _model_and_data()
    sae = _sae(48)
    with torch.no_grad():
        base = model(images, capture=(2,))
    tokens = base.captured[2]
    active = sae.encode(tokens[:, 0]) > 0
    sets = index_sets(latent_frequencies(active, labels, 10), size=8, seed=0)
    pred = base.logits.argmax(1)
    test = Activations(cls=tokens[:, 0], labels=labels, predictions=pred, masks=base.masks.to(torch.uint8))
    grid = SweepGrid(["pre_topk", "additive"], ["true", "predicted"], ["per_class", "global"], [-0.5, 0.0, 1.0])
    res = run_sweep(model, sae, FinalBlockTail(model, [tokens]), test, sets, grid, batch_size=16)
    for mi, mode in enumerate(["pre_topk", "additive"]):
        for li, source in enumerate(["true", "predicted"]):
            for si, strategy in enumerate(["per_class", "global"]):
                for ai, alpha in enumerate([-0.5, 0.0, 1.0]):
                    Sm = sets.masks(strategy, labels if source == "true" else pred, 192)
                    x_tilde = steer(sae, tokens[:, 0], Sm, alpha, mode).detach()
                    with torch.no_grad(), model.override_decision_input(2, lambda cls, xt=x_tilde: xt):
                        full = model(images)
                    acc = (full.logits.argmax(1) == labels).float().mean().item()
                    assert res.accuracy[mi, li, si, ai].item() == pytest.approx(acc)
                    assert res.usage_layer[mi, li, si, ai].item() == pytest.approx(full.masks[:, 2].mean().item())
                    assert res.usage_overall[mi, li, si, ai].item() == pytest.approx(full.masks.mean().item())
