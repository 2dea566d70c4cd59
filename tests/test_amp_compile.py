"""Mixed precision (prune.amp) and torch.compile (model.compile), checked on the CPU, where bf16
autocast and the inductor compiler both run: same results within tolerance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from headsteer.config import ModelConfig
from headsteer.model import build_model
from headsteer.model.configured import compile_blocks
from headsteer.stages import run_stage

SMALL = dict(img_size=28, patch_size=7, embed_dim=48, depth=2, num_heads=6, mlp_ratio=2.0, decision_init_bias=0.0)


def _prune(smoke_cfg, tmp_path, name: str, *overrides):
    cfg = smoke_cfg(f"out={tmp_path / name}", "prune.dense_epochs=2", "prune.joint_epochs=1", *overrides)
    run_stage(cfg, "prune")
    return json.loads((Path(cfg.out) / "prune" / "metrics.json").read_text())


def test_bf16_and_fp16_training_match_float32_within_tolerance(smoke_cfg, tmp_path):
    ref = _prune(smoke_cfg, tmp_path, "fp32")
    for amp in ("bf16", "fp16"):
        got = _prune(smoke_cfg, tmp_path, amp, f"prune.amp={amp}")
        for a, b in zip(ref["history"], got["history"], strict=True):
            assert b["train"]["loss"] == pytest.approx(a["train"]["loss"], rel=0.05), (amp, a, b)
        assert abs(got["pruned"]["accuracy"] - ref["pruned"]["accuracy"]) <= 0.05, amp
        assert got["history"][0]["train"]["loss"] != ref["history"][0]["train"]["loss"]  # it did run in low precision


def test_autocast_forward_is_close_and_really_bf16():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**SMALL), 10, 1).eval()
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.logits.dtype == torch.bfloat16
    assert (low.logits.float() - ref.logits).abs().max().item() < 0.05 * ref.logits.abs().max().item()


def test_compiled_blocks_equal_eager():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**SMALL), 10, 1)
    with torch.no_grad():
        for net in model.decisions.values():
            net.net.weight.normal_(std=0.3)
    x = torch.randn(8, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        ref = model(x)
    keys = list(model.state_dict())
    compile_blocks(model)
    with torch.no_grad():
        out = model(x)
    assert list(model.state_dict()) == keys  # checkpoints stay loadable either way
    assert all(blk.attn._compiled_call_impl is not None for blk in model.vit.blocks)  # really compiled
    assert torch.equal(out.masks, ref.masks) and (out.logits - ref.logits).abs().max().item() < 1e-5
    model.skip_pruned_heads = True  # the grouped skipping path runs eager inside the compiled attention
    with torch.no_grad():
        skipped = model(x)
    assert torch.equal(skipped.masks, ref.masks) and (skipped.logits - ref.logits).abs().max().item() < 1e-4


def test_model_compile_is_wired_into_the_run(smoke_cfg):
    from headsteer.data import load_dataset
    from headsteer.model.configured import build_for

    cfg = smoke_cfg("model.compile=true")
    built = build_for(cfg, load_dataset(cfg.data), torch.device("cpu"))
    assert all(blk.mlp._compiled_call_impl is not None for blk in built.model.vit.blocks)


def test_fp16_scaler_state_is_checkpointed_and_restored(smoke_cfg, tmp_path):
    from headsteer.artifacts.io import checkpoint_state
    from headsteer.prune.train import PruneRun, resume_state

    cfg = smoke_cfg(f"out={tmp_path / 'fp16'}", "prune.amp=fp16", "prune.dense_epochs=1", "prune.joint_epochs=1")
    run_stage(cfg, "prune")
    saved = checkpoint_state(tmp_path / "fp16" / "prune" / "checkpoint.safetensors")["scaler"]
    assert saved["scale"] > 0 and "_growth_tracker" in saved
    run = PruneRun(
        None,
        None,
        None,
        None,
        cfg.prune,
        0,
        torch.device("cpu"),
        tmp_path / "fp16" / "prune" / "checkpoint.safetensors",
    )
    run.scaler = torch.amp.GradScaler("cpu", init_scale=3.0)  # a scale training never reaches (65536 x 2^k)
    assert resume_state(run)["scaler"] == saved and run.scaler.get_scale() == saved["scale"] != 3.0
