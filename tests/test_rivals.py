"""Rivals of steering fitted on training images: the exact objective, the grouped threshold search, the
retrained gate on a toy whose right head pattern is a known linear function of the CLS, the share of gain."""

import itertools
import math

import numpy as np
import pytest
import torch

from headsteer.core.errors import HeadsteerError
from headsteer.model.decision import DecisionNet
from headsteer.steer.baselines import Curve
from headsteer.steer.fit_cache import FitCache
from headsteer.steer.fit_data import FitSplit, pattern_bits
from headsteer.steer.gate_fit import FitSettings, expected_accuracy
from headsteer.steer.group_threshold import search, shifts_for
from headsteer.steer.rival_judge import share_of_gain
from headsteer.steer.rivals import fit_gates, fit_grouped
from headsteer.steer.tails import OutcomeCache
from headsteer.steer.uncertainty import Bootstrap


class ToyTail:
    """A 'network after the mask' that is right (class 0) exactly when the mask is the image's right pattern."""

    def __init__(self, x: torch.Tensor, right: torch.Tensor):
        H = right.shape[1]
        self.model = type("M", (), {"num_heads": H})()
        self.decision_input, self.right, self.layer = x, right, 0

    def run_masked(self, mask, idx):
        ok = (mask == self.right[idx]).all(1)
        logits = torch.stack([ok.float(), (~ok).float()], 1)  # class 0 when right
        return logits, torch.zeros(mask.shape[0], dtype=torch.long)


class Rows:
    """What FitSplit.build reads of the extracted TRAIN split."""

    def __init__(self, x):
        self.cls, self.labels, self.predictions = x, torch.zeros(len(x), dtype=torch.long), torch.zeros(len(x)).long()


def toy_split(x: torch.Tensor, right: torch.Tensor, holdout: float = 0.25, seed: int = 0) -> FitSplit:
    rows = torch.arange(len(x))
    return FitSplit.build(Rows(x), rows, OutcomeCache(ToyTail(x, right)), holdout, seed)


@pytest.mark.parametrize("holdout, held", [(0.05, 0), (0.95, 8)])
def test_a_fit_split_without_held_out_or_fit_images_is_refused(holdout, held):
    """8 fit images: 5 % holds out none (nothing to choose a sparsity level on), 95 % all (nothing to fit on)."""
    x = torch.rand(8, 4)
    with pytest.raises(HeadsteerError) as err:
        toy_split(x, torch.ones(8, 2), holdout)
    assert str(err.value) == (
        f"steer.fit_holdout={holdout} of 8 fit images holds out {held}; the fits need at least one held-out image "
        "and one to fit on: raise steer.fit_images or move steer.fit_holdout toward 0.5"
    )
    assert int(toy_split(x, torch.ones(8, 2), 0.25).holdout.sum()) == 2


def test_expected_accuracy_matches_enumerating_every_pattern():
    g = torch.Generator().manual_seed(0)
    logits, table = torch.randn(5, 3, generator=g), (torch.rand(5, 8, generator=g) > 0.5).float()
    naive = []
    for n in range(5):
        p = torch.sigmoid(logits[n])
        total = 0.0
        for bits in itertools.product((0, 1), repeat=3):
            prob = math.prod(float(p[h]) if b else 1 - float(p[h]) for h, b in enumerate(bits))
            pid = sum(b << h for h, b in enumerate(bits))  # bit h = head h, as OutcomeCache numbers patterns
            total += prob * float(table[n, pid])
        naive.append(total)
    assert torch.allclose(expected_accuracy(logits, table, pattern_bits(3)), torch.tensor(naive), atol=1e-6)


def test_shifts_reproduce_the_searched_counts():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 4, generator=g)
    groups = torch.arange(4).expand(50, 4)
    counts = torch.tensor([0, 50, 17, 3])
    shifts = shifts_for(logits, groups, counts).float()
    kept = (logits + shifts[groups] > 0).sum(0)
    assert kept.tolist() == counts.tolist()


def test_per_head_threshold_never_below_the_single_threshold_on_its_fit_rows():
    """Head 0 decides every image; heads 1-3 are noise. At equal usage the grouped search must do at least as
    well as the single threshold on the rows it is fitted on (it starts there), and here strictly better."""
    g = torch.Generator().manual_seed(2)
    n, H = 400, 4
    logits = torch.randn(n, H, generator=g)
    logits[:, 0] -= 1.0  # the single threshold keeps head 0 less often than it should
    right = torch.zeros(n, H)
    right[:, 0] = 1.0  # keeping head 0 is what matters
    table = torch.zeros(n, 2**H)
    for p in range(2**H):
        table[:, p] = float(p & 1)  # right whenever head 0 is kept

    def correct_rows(masks, rows):
        ids = (masks.long() * (2 ** torch.arange(H))).sum(1)
        return table[rows, ids]

    def accuracy(masks):
        return correct_rows(masks, torch.arange(n)).mean().item()

    for usage in (0.25, 0.5):
        kept = round(usage * n * H)
        top = torch.zeros(n * H, dtype=torch.bool)
        top[torch.argsort(logits.flatten(), descending=True, stable=True)[:kept]] = True
        single = accuracy(top.view(n, H).float())
        found = search(logits, torch.arange(H).expand(n, H), H, kept, correct_rows)
        masks = (logits + found.shifts[None] > 0).float()
        assert int(masks.sum()) == kept
        assert accuracy(masks) >= single
        assert accuracy(masks) > single + 0.1  # head 0 gets its keeps: the search does something


def test_retrained_gate_recovers_a_linear_rule():
    """The right pattern is 1[w_h . x > 0] per head: a linear gate can be exactly right; the refit one must be
    right on at least 95 % of fresh images (the trained-from-scratch start is right on about 1 in 8)."""
    g = torch.Generator().manual_seed(3)
    d, H = 6, 3
    w = torch.randn(H, d, generator=g)
    x, x_new = torch.randn(600, d, generator=g), torch.randn(600, d, generator=g)
    right, right_new = (x @ w.T > 0).float(), (x_new @ w.T > 0).float()
    split = toy_split(x, right)
    decide = DecisionNet(d, H, init_bias=0.0)
    before = ((decide(x_new) > 0).float() == right_new).all(1).float().mean().item()
    policy = fit_gates(decide, split, [right.mean().item()], FitSettings(steps=400, lr=0.05, usage_weight=1.0))[0]
    net = DecisionNet(d, H)
    net.load_state_dict(policy.params)
    after = ((net(x_new) > 0).float() == right_new).all(1).float().mean().item()
    assert before < 0.5 and after >= 0.95, (before, after)


def test_class_threshold_uses_the_class_of_its_label_source():
    """Class 1's images are right with every head dropped, class 0's with every head kept: one shift per class
    is exactly right at class 0's share of the usage, a shift per head is not."""
    g = torch.Generator().manual_seed(4)
    n, H = 200, 2
    x = torch.randn(n, 4, generator=g)
    labels = (torch.arange(n) % 2).long()
    right = (labels == 0).float()[:, None].expand(n, H).clone()
    split = toy_split(x, right)
    noise = torch.randint(0, 2, (n,), generator=g)
    split.labels, split.predictions = labels, noise  # the 'predicted' class says nothing here
    decide = DecisionNet(4, H, init_bias=0.0)
    usage = (labels[~split.holdout] == 0).float().mean().item()  # class 0's share of the fit rows
    true = fit_grouped(decide, split, usage, "class_threshold.true", "true", 2)
    wrong = fit_grouped(decide, split, usage, "class_threshold.predicted", "predicted", 2)
    head = fit_grouped(decide, split, usage, "per_head_threshold", None, 2)
    assert true.record["accuracy"] == 1.0
    assert wrong.record["accuracy"] < 0.6 and head.record["accuracy"] < 0.8


def test_share_of_gain_by_hand():
    """Threshold flat at 0.80, gate 0.90 and strategy 0.85 at usage 0.2: the strategy recovers half."""
    n = 200
    boot = Bootstrap.draw(n, 200, 0)

    def curve(acc_at: list[tuple[float, float]]) -> Curve:
        correct = torch.stack([(torch.arange(n) < round(a * n)).float() for _, a in acc_at])
        usage = torch.stack([torch.full((n,), u) for u, _ in acc_at])
        return Curve("target", [u for u, _ in acc_at], correct, usage, usage)

    threshold = curve([(0.0, 0.8), (0.5, 0.8), (1.0, 0.8)])
    gate = curve([(0.2, 0.9), (0.6, 0.8)])
    gate_rec = {"head_usage": [0.2, 0.6], "gain_vs_threshold_ci": [[0.05, 0.15], [-0.01, 0.01]]}
    strategy = curve([(0.2, 0.85), (0.7, 0.8)])
    pts = (strategy.sample_correct.T, strategy.sample_usage.T)
    out = share_of_gain(boot, pts, gate_rec, gate, threshold)
    assert [round(r["usage"], 3) for r in out] == [0.2]  # the 0.6 point's gain CI contains 0
    assert out[0]["share"] == pytest.approx(0.5) and out[0]["gate_gain"] == pytest.approx(0.1)
    assert out[0]["share_ci"][0] <= 0.5 <= out[0]["share_ci"][1]


def test_fit_cache_round_trip_and_other_settings(tmp_path):
    cache = FitCache(tmp_path, {"steps": 3})
    entries = [({"shifts": torch.arange(3.0)}, {"target": 0.5, "note": "a"})]
    cache.save("per_head_threshold", entries)
    ((ts, rec),) = cache.load("per_head_threshold")
    assert torch.equal(ts["shifts"], torch.arange(3.0)) and rec == {"target": 0.5, "note": "a"}
    assert FitCache(tmp_path, {"steps": 4}).load("per_head_threshold") is None
    assert cache.load("retrained_gate") is None
    assert np.isfinite(ts["shifts"].numpy()).all()


def test_more_than_eight_heads_fit_with_gumbel_sigmoid_through_the_frozen_tail():
    """With 10 heads the 2^H table is not built: the gate is fitted with Gumbel-Sigmoid masks through the
    network after the mask (the prune stage's loss), and its usage on the fit rows lands near each target, while
    the network itself is not changed."""
    from headsteer.config import ModelConfig
    from headsteer.model import build_model
    from headsteer.steer.tails import make_tail

    torch.manual_seed(0)
    model = build_model(ModelConfig(img_size=28, patch_size=7, embed_dim=40, depth=2, num_heads=10), 10, 1).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.rand(120, 1, 28, 28)
    with torch.no_grad():
        tokens = model(images, capture=(1,)).captured[1]
        labels = model(images).logits.argmax(1)  # the model's own answers: learnable
    rows = Rows(tokens[:, 0])
    rows.labels = labels
    split = FitSplit.build(rows, torch.arange(120), OutcomeCache(make_tail(model, 1, [tokens])), 0.25, 0)
    assert split.table is None
    policies = fit_gates(model.decisions["1"], split, [0.2, 0.8], FitSettings(steps=60, lr=0.05, usage_weight=5.0))
    usage = [p.record["usage"] for p in policies]
    assert policies[0].record["objective"] == "gumbel"
    assert abs(usage[0] - 0.2) < 0.15 and abs(usage[1] - 0.8) < 0.15, usage
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
