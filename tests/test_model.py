import math

import pytest
import timm
import torch
from safetensors.torch import save_file

from headsteer.config import ModelConfig
from headsteer.core.errors import HeadsteerError
from headsteer.model import build_model, deterministic_mask, gumbel_sigmoid_mask

SMALL = dict(img_size=28, patch_size=7, embed_dim=48, depth=3, num_heads=6, mlp_ratio=2.0)


def small_model(**kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(**{**SMALL, **kw}), num_classes=10, in_chans=1).eval()


def timm_reference(model):
    ref = timm.create_model("vit_tiny_patch16_224", num_classes=10, in_chans=1, **SMALL).eval()
    ref.load_state_dict(model.vit.state_dict(), strict=True)
    return ref


def test_all_heads_kept_equals_unmodified_timm():
    model = small_model(decision_init_bias=5.0)  # every decision logit > 0 -> all masks 1 in eval
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        out = model(x)
        ref = timm_reference(model)(x)
    assert torch.all(out.masks == 1)
    assert (out.logits - ref).abs().max().item() < 1e-5
    model.gating = False
    with torch.no_grad():
        assert (model(x).logits - ref).abs().max().item() < 1e-5


def test_vit_small_geometry_matches_timm():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="vit_small_patch16_224", img_size=64), num_classes=100, in_chans=3).eval()
    assert (model.depth, model.num_heads, model.embed_dim) == (12, 6, 384)
    ref = timm.create_model("vit_small_patch16_224", num_classes=100, img_size=64).eval()
    ref.load_state_dict(model.vit.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    model.gating = False
    with torch.no_grad():
        assert (model(x).logits - ref(x)).abs().max().item() < 1e-5


def naive_masked_block_output(model, layer, x, mask):
    """Eq. 1 by hand: per-head softmax attention, head outputs times mask, concat, proj."""
    attn = model.vit.blocks[layer].attn
    B, N, C = x.shape
    H, D = attn.num_heads, attn.head_dim
    qkv = x @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = qkv.split(C, dim=-1)
    heads = []
    for h in range(H):
        sl = slice(h * D, (h + 1) * D)
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(D), dim=-1)
        heads.append((w @ v[..., sl]) * mask[:, h, None, None])
    return torch.cat(heads, dim=-1) @ attn.proj.weight.T + attn.proj.bias


def test_gated_attention_matches_naive_reference():
    model = small_model()
    x = torch.randn(3, 17, 48)
    mask = torch.tensor([[1, 0, 1, 0, 1, 1], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.float32)
    with torch.no_grad():
        got = model.vit.blocks[1].attn(x, head_mask=mask)
        want = naive_masked_block_output(model, 1, x, mask)
    assert (got - want).abs().max().item() < 1e-5
    # a fully masked sample gets only the proj bias
    assert torch.allclose(got[1], model.vit.blocks[1].attn.proj.bias.expand(17, -1), atol=1e-6)


def test_outputs_are_named_with_shapes_and_eval_mask_is_deterministic():
    model = small_model(decision_init_bias=0.0)
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert a.logits.shape == (5, 10)
    assert a.masks.shape == a.decision_logits.shape == (5, 3, 6)
    assert torch.equal(a.masks, b.masks)
    assert torch.equal(a.masks, (a.decision_logits > 0).float())


def test_pruned_layers_subset_and_negative_index():
    model = small_model(pruned_layers=[-1])
    assert model.pruned_layers == [2]
    with torch.no_grad():
        out = model(torch.randn(2, 1, 28, 28))
    assert torch.all(out.masks[:, :2] == 1) and torch.isinf(out.decision_logits[:, :2]).all()
    with pytest.raises(HeadsteerError, match="model.pruned_layers entry=7 does not exist"):
        build_model(ModelConfig(**SMALL, pruned_layers=[7]), 10, 1)


def test_gumbel_sigmoid_keep_probability_and_straight_through():
    torch.manual_seed(0)
    logits = torch.tensor([-2.0, 0.0, 1.5]).repeat(20000, 1).requires_grad_()
    mask = gumbel_sigmoid_mask(logits, tau=5.0)
    assert set(mask.detach().unique().tolist()) <= {0.0, 1.0}
    keep = mask.detach().mean(0)
    torch.testing.assert_close(keep, torch.sigmoid(torch.tensor([-2.0, 0.0, 1.5])), atol=0.015, rtol=0)
    mask.sum().backward()
    assert torch.all(logits.grad > 0)  # gradient of sigmoid((a+g)/tau) flows through the hard mask
    det = deterministic_mask(torch.tensor([-0.1, 0.0, 0.1]))
    assert det.tolist() == [0.0, 0.0, 1.0]


def test_training_masks_are_noisy_and_gradients_reach_decision_nets():
    model = small_model(decision_init_bias=0.0).train()
    out = model(torch.randn(16, 1, 28, 28))
    assert not torch.equal(out.masks, out.decision_masks)
    (out.logits.sum() + out.masks.sum()).backward()
    for net in model.decisions.values():
        assert net.net.weight.grad is not None and net.net.weight.grad.abs().sum() > 0


def test_override_decision_input_is_scoped_and_removed_on_error():
    model = small_model(decision_init_bias=0.0)
    x = torch.randn(4, 1, 28, 28)
    seen = []

    def record(cls):
        seen.append(cls.clone())
        return torch.zeros_like(cls)

    with torch.no_grad():
        base = model(x, capture=(2,))
        with model.override_decision_input(-1, record):
            steered = model(x)
    assert len(seen) == 1 and torch.equal(seen[0], base.captured[2][:, 0])
    # zero input -> decision logits equal the bias; earlier layers and the residual stream unchanged
    torch.testing.assert_close(steered.decision_logits[:, 2], model.decisions["2"].net.bias.expand(4, -1))
    assert torch.equal(steered.masks[:, :2], base.masks[:, :2])
    with pytest.raises(RuntimeError, match="boom"):
        with model.override_decision_input(2, record):
            raise RuntimeError("boom")
    assert model._overrides == {}
    with torch.no_grad():
        assert torch.equal(model(x).logits, base.logits)
    with pytest.raises(HeadsteerError, match="layer=9 does not exist"):
        with model.override_decision_input(9, record):
            pass


def test_pretrained_file_loads_strictly(tmp_path):
    torch.manual_seed(1)
    ref = timm.create_model("vit_tiny_patch16_224", num_classes=10, in_chans=1, **SMALL).eval()
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    model = build_model(ModelConfig(**SMALL, pretrained_file=str(path), decision_init_bias=5.0), 10, 1).eval()
    for name, value in ref.state_dict().items():
        assert torch.equal(model.vit.state_dict()[name], value), name
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert (model(x).logits - ref(x)).abs().max().item() < 1e-5


def test_pretrained_file_of_other_architecture_is_refused(tmp_path):
    other = timm.create_model("vit_tiny_patch16_224", num_classes=10, in_chans=1, **{**SMALL, "embed_dim": 96})
    path = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises(HeadsteerError, match=r"pretrained file .* does not match architecture vit_tiny_patch16_224"):
        build_model(ModelConfig(**SMALL, pretrained_file=str(path)), 10, 1)
    with pytest.raises(HeadsteerError, match="not found"):
        build_model(ModelConfig(**SMALL, pretrained_file=str(tmp_path / "absent.pth")), 10, 1)


def test_unknown_architecture():
    with pytest.raises(HeadsteerError, match="unknown timm architecture model.arch='vit_nonexistent'"):
        build_model(ModelConfig(arch="vit_nonexistent"), 10, 3)


def test_skipping_path_equals_masked_dense_path_including_empty_and_full_heads():
    model = small_model()
    torch.manual_seed(5)
    x = torch.randn(12, 1, 28, 28)
    masks = (torch.rand(12, 3, 6) < 0.5).float()
    masks[:, :, 0] = 0  # head 0 kept by no sample
    masks[:, :, 1] = 1  # head 1 kept by every sample
    masks[:, 2] = 0  # a layer with every head dropped
    with torch.no_grad():
        dense = model(x, fixed_masks=masks)
        model.skip_pruned_heads = True
        skipped = model(x, fixed_masks=masks)
    assert (dense.logits - skipped.logits).abs().max().item() < 1e-4
    assert torch.equal(dense.masks, skipped.masks)


def _one_pattern(B, pattern):
    return torch.tensor(pattern, dtype=torch.float32).expand(B, -1).clone()


@pytest.mark.parametrize(
    "case",
    [
        "mixed",
        "one_partial_pattern",
        "all_kept",
        "all_dropped",
        "batch_of_one",
        "some_samples_keep_nothing",
        "qk_norm_no_bias",
    ],
)
def test_skipping_attention_equals_masked_attention(case):
    """Layer-level check of the pattern-grouped path against a naive reference: the masked dense path."""
    from headsteer.model.gated_attention import GatedAttention

    torch.manual_seed(3)
    plain = case != "qk_norm_no_bias"
    attn = GatedAttention(
        48, num_heads=6, qkv_bias=plain, proj_bias=plain, qk_norm=not plain, norm_layer=torch.nn.LayerNorm
    ).eval()
    B = 1 if case == "batch_of_one" else 10
    x = torch.randn(B, 17, 48)
    mask = {
        "mixed": (torch.rand(B, 6) < 0.6).float(),
        "one_partial_pattern": _one_pattern(B, [1, 0, 1, 1, 0, 0]),
        "all_kept": torch.ones(B, 6),
        "all_dropped": torch.zeros(B, 6),
        "batch_of_one": _one_pattern(1, [0, 1, 0, 0, 1, 1]),
        "some_samples_keep_nothing": torch.cat([torch.zeros(4, 6), (torch.rand(6, 6) < 0.5).float()]),
        "qk_norm_no_bias": (torch.rand(B, 6) < 0.5).float(),
    }[case]
    with torch.no_grad():
        ref = attn(x, head_mask=mask)
        out = attn(x, head_mask=mask, skip=True)
    assert out.shape == ref.shape == (B, 17, 48)
    assert (out - ref).abs().max().item() < 1e-5
    if case == "all_dropped":  # only proj's bias is left
        assert torch.allclose(out, attn.proj.bias.expand_as(out))


def test_skipping_path_only_in_eval_mode():
    model = small_model().train()
    model.skip_pruned_heads = True
    out = model(torch.randn(4, 1, 28, 28))
    out.logits.sum().backward()  # training keeps the masked path, so decision nets get gradients
    assert model.decisions["0"].net.weight.grad is not None


def test_mac_counter_against_hand_count():
    from headsteer.model.macs import count_macs

    model = small_model()
    T, d, H, D, hidden, L = 17, 48, 6, 8, 96, 3
    per_head = T * d * 3 * D + 2 * T * T * D + T * D * d
    fixed = 16 * 49 * d + L * 2 * T * d * hidden + d * 10
    masks = torch.ones(2, L, H)
    masks[1, :, :3] = 0  # second image keeps half the heads
    c = count_macs(model, masks)
    assert c.dense == fixed + L * H * per_head
    decision = L * d * H
    assert c.per_sample.tolist() == [fixed + decision + L * H * per_head, fixed + decision + L * 3 * per_head]
    assert 0.5 < c.ratio < 1.0


@pytest.mark.parametrize("skip", [False, True])
def test_tokens_entering_a_block_equal_what_the_full_forward_captures(skip):
    model = small_model(decision_init_bias=0.0, skip_pruned_heads=skip)  # about half the heads dropped
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        out = model(x, capture=(0, 1, 2))
        assert 0 < out.masks[:, :2].mean() < 1  # the earlier blocks' decisions are in play
        for layer in (0, 1, 2, -1):
            assert torch.equal(model.tokens_entering(x, layer), out.captured[layer % 3]), layer
