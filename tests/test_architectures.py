"""Any timm ViT with standard blocks, built with random init at a small geometry (its features kept:
layer scale, register tokens, pre-norm, average pooling): all heads kept equals timm's unmodified
model, the skipping path equals the masked path, the sweep's tails equal a full forward, a training
step reaches every part; other architectures get the one-line error."""

from __future__ import annotations

import pytest
import timm
import torch

from conftest import ROOT, one_line_error
from headsteer.config import ModelConfig
from headsteer.model import AdaViT, GatedAttention, build_model
from headsteer.steer.tails import FinalBlockTail, GeneralTail, make_tail

GEOMETRY = dict(embed_dim=48, depth=3, num_heads=6, mlp_ratio=2.0)
ARCHS = {  # arch -> (img_size, patch_size)
    "vit_small_patch16_224": (32, 16),
    "deit_small_patch16_224": (32, 16),
    "deit3_small_patch16_224": (32, 16),  # layer scale
    "vit_small_patch14_reg4_dinov2": (28, 14),  # 4 register tokens, layer scale
    "vit_base_patch16_clip_224": (32, 16),  # pre-norm (norm_pre), quick-gelu-free CLIP block
}


def _build(arch: str, bias: float = 0.0, **extra) -> AdaViT:
    img, patch = ARCHS.get(arch, (32, 16))
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, img_size=img, patch_size=patch, decision_init_bias=bias, **GEOMETRY)
    model = build_model(cfg, num_classes=5, in_chans=3).eval()
    with torch.no_grad():
        for net in model.decisions.values():
            net.net.weight.normal_(std=0.5)  # decisions that vary with the input
    return model


def _reference(arch: str, model: AdaViT, **kw) -> torch.nn.Module:
    img, patch = ARCHS.get(arch, (32, 16))
    ref = timm.create_model(arch, num_classes=5, in_chans=3, img_size=img, patch_size=patch, **GEOMETRY, **kw)
    ref.load_state_dict(model.vit.state_dict(), strict=True)
    return ref.eval()


def _images(arch: str, n: int = 6) -> torch.Tensor:
    img = ARCHS.get(arch, (32, 16))[0]
    return torch.randn(n, 3, img, img, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("arch", list(ARCHS))
def test_all_heads_kept_equals_timm_and_skipping_equals_masked(arch):
    model = _build(arch, bias=50.0)  # every decision logit > 0: all heads kept
    x = _images(arch)
    with torch.no_grad():
        out, ref = model(x), _reference(arch, model)(x)
    assert torch.all(out.masks == 1) and (out.logits - ref).abs().max().item() < 1e-5
    model = _build(arch)
    with torch.no_grad():
        masked = model(x)
        model.skip_pruned_heads = True
        skipped = model(x)
    assert 0 < masked.masks.mean() < 1  # some heads dropped, so the two paths differ in work
    assert torch.equal(masked.masks, skipped.masks) and (masked.logits - skipped.logits).abs().max().item() < 1e-4


@pytest.mark.parametrize("arch", list(ARCHS))
def test_tails_equal_a_full_forward(arch):
    model, x = _build(arch), _images(arch)
    with torch.no_grad():
        tokens = model(x, capture=(1, 2))
    for layer in (1, 2):
        tail = make_tail(model, layer, [tokens.captured[layer][:4], tokens.captured[layer][4:]])
        assert isinstance(tail, FinalBlockTail if layer == 2 else GeneralTail)
        mask = torch.tensor([[1.0, 0, 1, 0, 1, 1]]).expand(x.shape[0], -1)
        with torch.no_grad():
            full = model.forward_from(model.embed(x), 0, force={layer: mask})
        logits, after = tail.run_masked(mask, slice(None))
        assert (logits - full.logits).abs().max().item() < 1e-4
        assert torch.equal(after, full.masks[:, layer + 1 :].sum(dim=(1, 2)).long())


@pytest.mark.parametrize("arch", list(ARCHS))
def test_one_training_step_reaches_backbone_and_decisions(arch):
    model, x = _build(arch).train(), _images(arch)
    out = model(x)
    loss = torch.nn.functional.cross_entropy(out.logits, torch.arange(x.shape[0]) % 5)
    loss = loss + (out.masks.mean() - 0.7) ** 2
    loss.backward()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.vit.blocks[0].attn.qkv.weight.detach().clone()
    opt.step()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.decision_parameters())
    assert not torch.equal(before, model.vit.blocks[0].attn.qkv.weight)


def test_average_pooling_uses_the_general_tail_and_equals_timm():
    """global_pool='avg' (CLS token kept, not pooled): the CLS-only last-block tail does not apply."""
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_small_patch16_224", img_size=32, patch_size=16, num_classes=5, global_pool="avg",
        attn_layer=GatedAttention, **GEOMETRY,
    )  # fmt: skip
    model = AdaViT(vit, [0, 1, 2], decision_init_bias=50.0).eval()
    x = _images("vit_small_patch16_224")
    with torch.no_grad():
        ref = _reference("vit_small_patch16_224", model, global_pool="avg")(x)
        out = model(x, capture=(2,))
    assert (out.logits - ref).abs().max().item() < 1e-5
    assert not FinalBlockTail.supported(model, 2)
    mask = torch.tensor([[0.0, 1, 1, 0, 0, 1]]).expand(x.shape[0], -1)
    with torch.no_grad():
        full = model.forward_from(model.embed(x), 0, force={2: mask})
    logits, _ = make_tail(model, 2, [out.captured[2]]).run_masked(mask, slice(None))
    assert (logits - full.logits).abs().max().item() < 1e-4


@pytest.mark.parametrize("arch", ["swin_tiny_patch4_window7_224", "eva02_tiny_patch14_224", "resnet18"])
def test_unsupported_architectures_get_one_line(arch, capsys, tmp_path):
    argv = ["prune", str(ROOT / "configs/smoke.yaml"), f"model.arch={arch}", f"out={tmp_path}"]
    line = one_line_error(capsys, argv)
    assert f"model.arch='{arch}'" in line and "VisionTransformer" in line


def test_pretrained_file_at_another_image_size_goes_through_timms_filters(tmp_path):
    """A checkpoint saved at 64 px loads into a 32 px model: timm's checkpoint filter resamples the
    position embedding (the same call timm makes, checked here by hand); every other weight is equal."""
    from safetensors.torch import save_file
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(2)
    big = timm.create_model("deit3_small_patch16_224", num_classes=5, img_size=64, patch_size=16, **GEOMETRY)
    path = tmp_path / "deit3_64px.safetensors"
    save_file({k: v.contiguous() for k, v in big.state_dict().items()}, str(path))
    cfg = ModelConfig(arch="deit3_small_patch16_224", img_size=32, patch_size=16, pretrained_file=str(path), **GEOMETRY)
    model = build_model(cfg, num_classes=5, in_chans=3)
    loaded, saved = model.vit.state_dict(), big.state_dict()
    want = resample_abs_pos_embed(saved["pos_embed"], new_size=(2, 2), old_size=(4, 4), num_prefix_tokens=0)
    assert loaded["pos_embed"].shape == (1, 4, 48) and torch.allclose(loaded["pos_embed"], want, atol=1e-6)
    for name, value in saved.items():
        if name != "pos_embed":
            assert torch.equal(loaded[name], value), name
