import json

import pytest
import torch

from headsteer.config import SAEConfig
from headsteer.core.errors import HeadsteerError
from headsteer.sae import train as train_module
from headsteer.sae.topk import TopKSAE, topk_relu
from headsteer.sae.train import (
    SAETrainer,
    auxk_latents,
    evaluate_sae,
    firing_counts,
    geometric_median,
    train_forward,
)


def planted(n=20000, d=32, atoms=48, k=3, seed=0):
    """x = sum of k random unit atoms with positive coefficients, + small noise."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(atoms, d, generator=g)
    D /= D.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(atoms, generator=g)[:k] for _ in range(n)])
    coef = torch.rand(n, k, generator=g) * 2 + 0.5
    x = (coef[..., None] * D[idx]).sum(1) + 0.01 * torch.randn(n, d, generator=g)
    return x, D


def train(sae, x, **cfg):
    c = SAEConfig(**{"epochs": 20, "batch_size": 256, "lr": 3e-3, "dead_window": 5000, **cfg})
    trainer = SAETrainer(sae, c, total_steps=c.epochs * -(-x.shape[0] // c.batch_size))
    for epoch in range(c.epochs):
        stats = trainer.train_epoch(x, epoch, seed=0)
    return trainer, stats


def test_topk_relu_keeps_k_largest():
    pre = torch.tensor([[3.0, -1.0, 2.0, 0.5], [-3.0, -2.0, -1.0, 4.0]])
    z = topk_relu(pre, 2)
    assert z.tolist() == [[3.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 4.0]]  # ReLU drops the kept -1.0


def test_exactly_k_nonzeros_and_named_outputs():
    torch.manual_seed(0)
    sae = TopKSAE(16, 128, 8)
    x = torch.randn(64, 16)
    out = sae(x)
    assert out.z.shape == out.pre_acts.shape == (64, 128) and out.x_hat.shape == (64, 16)
    assert torch.all((out.z != 0).sum(1) == 8)
    torch.testing.assert_close(out.x_hat, sae.decode(sae.encode(x)))
    torch.testing.assert_close(out.x_hat, out.z @ sae.W_dec + sae.b_dec)


def test_decoder_rows_unit_norm_after_training_and_parallel_grad_removed():
    x, _ = planted(n=2000)
    torch.manual_seed(0)
    sae = TopKSAE(32, 64, 3)
    with torch.no_grad():
        sae.W_dec.mul_(3.0)  # break the norm on purpose: the first step must restore it
    train(sae, x, epochs=2)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5, rtol=0)
    sae.normalize_decoder()
    sae.W_dec.grad = torch.randn_like(sae.W_dec)
    sae.remove_parallel_grad()
    torch.testing.assert_close((sae.W_dec.grad * sae.W_dec).sum(1), torch.zeros(64), atol=1e-5, rtol=0)


def test_save_load_roundtrip_saelens_layout(tmp_path):
    torch.manual_seed(0)
    sae = TopKSAE(16, 64, 4, hook_name="blocks.5.hook_resid_pre.cls", model_name="vit")
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    sae.save(tmp_path / "sae")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and (cfg["d_in"], cfg["d_sae"], cfg["k"]) == (16, 64, 4)
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["metadata"]["hook_name"] == "blocks.5.hook_resid_pre.cls" and "sae_lens_version" in cfg["metadata"]
    from safetensors.torch import load_file

    w = load_file(str(tmp_path / "sae" / "sae_weights.safetensors"))
    assert {k: tuple(v.shape) for k, v in w.items()} == {
        "W_enc": (16, 64),
        "b_enc": (64,),
        "W_dec": (64, 16),
        "b_dec": (16,),
    }
    loaded = TopKSAE.load(tmp_path / "sae")
    x = torch.randn(10, 16)
    a, b = sae(x), loaded(x)
    assert torch.equal(a.x_hat, b.x_hat) and torch.equal(a.z, b.z)


def test_load_rejects_wrong_width(tmp_path):
    TopKSAE(16, 64, 4).save(tmp_path / "sae")
    with pytest.raises(HeadsteerError, match=r"d_in=16 but the model's residual width is 192"):
        TopKSAE.load(tmp_path / "sae", expected_d_in=192)
    with pytest.raises(HeadsteerError, match="not an SAE folder"):
        TopKSAE.load(tmp_path / "absent")


def test_geometric_median_robust_to_outliers():
    x = torch.cat([torch.randn(200, 3) * 0.1 + 1.0, torch.full((20, 3), 1000.0)])
    gm = geometric_median(x)
    assert (gm - 1.0).abs().max() < 0.2
    assert (x.mean(0) - 1.0).abs().max() > 50


def test_recovers_planted_dictionary():
    x, D = planted()
    torch.manual_seed(0)
    sae = TopKSAE(32, 96, 3)
    with torch.no_grad():
        sae.b_dec.copy_(geometric_median(x[:5000]))
    _, stats = train(sae, x, epochs=15)
    cos = D @ sae.W_dec.T  # (atoms, d_sae), unit rows on both sides
    best = cos.max(dim=1).values
    assert best.mean() >= 0.9, best
    assert evaluate_sae(sae, x).fvu < 0.1


def test_auxk_revives_dead_latents():
    # 96 planted atoms but only 64 latents that can win the top-k: the other 64 are needed
    x, _ = planted(n=8000, atoms=96, k=3)

    def run(coef):
        torch.manual_seed(1)
        sae = TopKSAE(32, 128, 3)
        with torch.no_grad():
            sae.b_enc[64:] = -4.0  # half the latents start out never winning the top-k
        trainer, stats = train(sae, x, epochs=12, auxk_coef=coef, dead_window=2000)
        revived = (trainer.since_fired[64:] < 2000).float().mean().item()
        return stats.dead_fraction, revived

    (dead_without, revived_without), (dead_with, revived_with) = run(0.0), run(1.0 / 32)
    assert dead_without >= 0.5 and revived_without == 0.0  # without AuxK the handicapped half never fires
    assert dead_with <= 0.2 and revived_with >= 0.7, (dead_with, revived_with)


def dense_reference_grads(sae, x, dead, k_aux, auxk_coef):
    """The gradients of recon + auxk_coef * AuxK written the naive way: the dense (B, d_sae) code and
    AuxK code, full matmuls, autograd through topk; then the decoder-norm projection."""
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc  # (B, d_sae)
    x_hat = topk_relu(pre, sae.k) @ sae.W_dec + sae.b_dec
    loss = (x_hat - x).pow(2).sum(-1).mean()
    if dead.any():
        vals, idx = pre.masked_fill(~dead, float("-inf")).topk(min(k_aux, int(dead.sum())), dim=-1)
        z_aux = torch.zeros_like(pre).scatter(-1, idx, vals)  # raw pre-activations of the top dead latents
        scale = min(int(dead.sum()) / k_aux, 1.0)
        loss = loss + auxk_coef * scale * (z_aux @ sae.W_dec - (x - x_hat).detach()).pow(2).sum(-1).mean()
    sae.zero_grad(set_to_none=True)
    loss.backward()
    sae.remove_parallel_grad()
    return {name: p.grad.clone() for name, p in sae.named_parameters()}, loss.item()


@pytest.mark.parametrize("n_dead", [0, 5, 40])  # none, fewer than k_aux (all of them used), more than k_aux
def test_sparse_step_gradients_equal_the_dense_path(n_dead):
    torch.manual_seed(0)
    sae = TopKSAE(24, 96, 6)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.5)
        sae.b_dec.normal_()
    x = torch.randn(64, 24) * 2
    dead = torch.zeros(96, dtype=torch.bool)
    dead[torch.randperm(96)[:n_dead]] = True
    want, want_loss = dense_reference_grads(sae, x, dead, k_aux=12, auxk_coef=0.5)
    sae.zero_grad(set_to_none=True)
    out = train_forward(sae, x, dead.nonzero().squeeze(1), k_aux=12)
    (out.recon + 0.5 * out.auxk).backward()
    sae.remove_parallel_grad()
    assert (out.recon + 0.5 * out.auxk).item() == pytest.approx(want_loss, rel=1e-5)
    assert (out.auxk.item() > 0) == (n_dead > 0)
    for name, p in sae.named_parameters():
        assert p.grad.abs().max() > 0.1, name  # every parameter gets a real gradient to compare
        torch.testing.assert_close(p.grad, want[name], atol=1e-5, rtol=1e-4, msg=name)


def test_auxk_latents_are_the_top_dead_by_pre_activation():
    pre = torch.tensor([[5.0, 1.0, -2.0, 3.0, -1.0, 0.5], [0.0, 4.0, 2.0, -3.0, 1.0, -0.5]])
    dead = torch.tensor([1, 2, 4, 5])
    got = auxk_latents(pre, dead, 2).sort(-1).values
    assert got.tolist() == [[1, 5], [1, 2]]  # the live latents 0 and 3 never enter, however large
    assert auxk_latents(pre, dead, 4).tolist() == [[1, 2, 4, 5]] * 2  # k_aux >= n_dead: every dead latent


def test_firing_counts_match_the_dense_code():
    torch.manual_seed(0)
    sae = TopKSAE(16, 64, 8)
    with torch.no_grad():
        sae.b_enc.fill_(-1.0)  # some kept entries are negative and must not count as firing
    x = torch.randn(50, 16)
    z = sae.encode(x)  # (B, d_sae) dense code
    assert torch.equal(firing_counts(*sae.encode_sparse(x), 64), (z > 0).sum(0))
    assert 0 < (z > 0).sum(1).float().mean() < 8


def test_auxk_skipped_when_its_coefficient_is_zero(monkeypatch):
    x, _ = planted(n=1000)

    def fail(*args):
        raise AssertionError("AuxK computed although auxk_coef = 0")

    monkeypatch.setattr(train_module, "auxk_latents", fail)
    torch.manual_seed(0)
    trainer, _ = train(TopKSAE(32, 64, 3), x, epochs=1, auxk_coef=0.0, dead_window=1)  # every latent "dead"
    assert trainer.dead_latents() is None
    torch.manual_seed(0)
    with pytest.raises(AssertionError, match="AuxK computed"):
        train(TopKSAE(32, 64, 3), x, epochs=1, auxk_coef=1 / 32, dead_window=1)


def test_grad_clip_bounds_the_global_gradient_norm():
    x, _ = planted(n=512)

    def grad_norm(clip):
        torch.manual_seed(0)
        sae = TopKSAE(32, 64, 3)
        trainer = SAETrainer(sae, SAEConfig(batch_size=512, grad_clip=clip), total_steps=10)
        trainer.train_step(x)  # the step leaves its (clipped) gradients in .grad
        return torch.cat([p.grad.flatten() for p in sae.parameters()]).norm().item()

    assert grad_norm(None) > 1.0
    assert grad_norm(0.5) == pytest.approx(0.5, rel=1e-4)


def test_grad_clip_must_be_positive():
    with pytest.raises(HeadsteerError, match=r"^sae.grad_clip=0.0 must be > 0 \(or null for no clipping\)$"):
        SAEConfig(grad_clip=0.0)
    assert SAEConfig(grad_clip=None).grad_clip is None


def test_decoder_learning_rate_is_scaled(monkeypatch):
    x, _ = planted(n=512)
    torch.manual_seed(0)
    sae = TopKSAE(32, 64, 3)
    cfg = SAEConfig(batch_size=512, lr=1e-3, decoder_lr_scale=4.0, grad_clip=None)
    trainer = SAETrainer(sae, cfg, total_steps=100)
    monkeypatch.setattr(sae, "normalize_decoder", lambda: None)  # see Adam's own step on W_dec
    before = {name: p.detach().clone() for name, p in sae.named_parameters()}
    trainer.train_step(x)
    moved = {name: (p.detach() - before[name]).abs().max().item() for name, p in sae.named_parameters()}
    # Adam's first step moves every parameter with a gradient by its learning rate
    assert moved["W_enc"] == pytest.approx(1e-3, rel=1e-4) and moved["b_enc"] == pytest.approx(1e-3, rel=1e-4)
    assert moved["W_dec"] == pytest.approx(4e-3, rel=1e-4)
