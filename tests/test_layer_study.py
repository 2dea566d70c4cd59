"""The layer study (extract.layers): one extraction pass for every layer, one SAE per layer, a reduced
sweep per layer that equals full forwards, and results.json keyed by layer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, one_line_error
from headsteer.artifacts.activations import Activations
from headsteer.config import ModelConfig, SteerConfig
from headsteer.config.loader import load_config
from headsteer.data import seeded_subset
from headsteer.model import build_model
from headsteer.model.configured import study_layers
from headsteer.sae.topk import TopKSAE
from headsteer.stages import run_stage
from headsteer.steer.stats import index_sets, latent_frequencies
from headsteer.steer.steering import steer
from headsteer.steer.study import study_layer
from headsteer.steer.tails import GeneralTail, make_tail

FAST_STEER = ["steer.alpha_step=0.5", "steer.modes=[pre_topk]", "steer.bootstrap=100", "steer.random_draws=3"]


def _cfg(fashion_dir, out, *overrides):
    return load_config(
        ROOT / "configs/smoke.yaml",
        [f"data.root={fashion_dir}", f"out={out}", "model.depth=3", "extract.layer=1", *FAST_STEER, *overrides],
    )


@pytest.fixture(scope="module")
def study_run(fashion_dir, tmp_path_factory):
    """Every stage once on a 3-block smoke model, steering layer 1 (headline) and layer 2 (study)."""
    cfg = _cfg(fashion_dir, tmp_path_factory.mktemp("study"), "extract.layers=all", "steer.study_images=100")
    for stage in ("prune", "extract", "sae", "steer", "report"):
        run_stage(cfg, stage)
    return cfg


def test_multi_layer_extraction_equals_single_layer(study_run, fashion_dir, tmp_path):
    """Each layer's chunks from the one multi-layer pass equal a pass that extracts that layer alone."""
    multi = Path(study_run.out) / "extract"
    assert json.load(open(multi / "metrics.json"))["layers"] == [1, 2]
    for layer in (1, 2):
        single_out = tmp_path / f"single_{layer}"
        shutil.copytree(Path(study_run.out) / "prune", single_out / "prune")
        run_stage(_cfg(fashion_dir, single_out, f"extract.layer={layer}"), "extract")
        assert json.load(open(single_out / "extract" / "metrics.json"))["layers"] == [layer]
        for split in ("train", "test"):
            a_dir, b_dir = multi / f"layer_{layer}" / split, single_out / "extract" / f"layer_{layer}" / split
            chunks = sorted(p.name for p in a_dir.glob("chunk_*"))
            assert chunks and chunks == sorted(p.name for p in b_dir.glob("chunk_*"))
            for name in chunks:
                a, b = load_file(str(a_dir / name)), load_file(str(b_dir / name))
                assert a.keys() == b.keys() == {"cls", "labels", "predictions", "masks"}
                for key in a:
                    assert torch.equal(a[key], b[key]), (layer, split, name, key)
    # the two layers' CLS differ (a multi-layer pass that stored one layer twice would pass the above only
    # if the single pass had the same bug, so check the layers against each other as well)
    one = load_file(str(multi / "layer_1" / "test" / "chunk_00000.safetensors"))["cls"]
    two = load_file(str(multi / "layer_2" / "test" / "chunk_00000.safetensors"))["cls"]
    assert not torch.allclose(one, two)


def test_layer_study_results_are_keyed_by_layer(study_run):
    out = Path(study_run.out)
    results = json.load(open(out / "report" / "results.json"))
    assert set(results["by_layer"]) == {"1", "2"} and results["steering"]["layer"] == 1
    headline, other = results["by_layer"]["1"], results["by_layer"]["2"]
    assert headline["images"] == 160 and other["images"] == 100  # the study's seeded subset
    assert other["alphas"] == [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
    assert headline["alphas"] == results["steering"]["alphas"]
    assert set(other["curves"]) == {"per_class", "global", "random", "per_class_specific"}
    assert other["threshold"]["head_usage"][0] == 0.0 and other["threshold"]["head_usage"][-1] == 1.0
    assert other["sensitivity"]["layer"] == 2 and other["sensitivity"]["images"] == 100
    for layer in (1, 2):  # one SAE per layer, each in SAELens layout with its own hook
        sae = TopKSAE.of_run(out, layer, expected_d_in=48)
        assert sae.hook_name == f"blocks.{layer}.hook_resid_pre.cls"
    sae_metrics = json.load(open(out / "sae" / "metrics.json"))
    assert set(sae_metrics["by_layer"]) == {"1", "2"} and sae_metrics["layer"] == 1
    html = (out / "report" / "report.html").read_text()
    assert "Layer study" in html and (out / "report" / "fig_layers.png").is_file()


def test_one_layer_keeps_the_one_layer_schema(pipeline):
    results = json.load(open(Path(pipeline.out) / "report" / "results.json"))
    assert "by_layer" not in results and results["steering"]["layer"] == 1


def test_layers_all_skips_block_0_and_block_0_is_refused(smoke_cfg, capsys, fashion_dir, tmp_path):
    cfg = smoke_cfg("model.depth=4", "model.pruned_layers=[0,1,3]", "extract.layers=all")
    model = build_model(cfg.model, 10, 1)
    assert study_layers(model, cfg.extract) == (3, [1, 3])
    with pytest.raises(Exception, match=r"extract.layers entry=2 has no decision network"):
        study_layers(model, load_config(None, ["extract.layers=[2]", "extract.layer=1"]).extract)
    line = one_line_error(
        capsys,
        ["run", str(ROOT / "configs/smoke.yaml"), f"data.root={fashion_dir}", f"out={tmp_path}", "extract.layers=[0]"],
    )
    assert "extract.layers entry=0: the CLS token entering block 0 is the same for every image" in line
    assert not (tmp_path / "prune").exists()  # refused before any training


def test_seeded_subset_is_fixed_by_its_seed():
    rows = seeded_subset(1000, 100, seed=4)
    assert torch.equal(rows, seeded_subset(1000, 100, seed=4)) and not torch.equal(
        rows, seeded_subset(1000, 100, seed=5)
    )
    assert rows.numel() == 100 and rows.unique().numel() == 100 and torch.equal(rows, rows.sort().values)
    assert seeded_subset(1000, None, 0) is None and seeded_subset(50, 100, 0) is None


def _override_forward(model, images, layer, x_tilde):
    with torch.no_grad(), model.override_decision_input(layer, lambda cls: x_tilde):
        return model(images)


def test_study_points_equal_full_forwards_at_a_middle_layer():
    """At layer 1 of 4, every study point (accuracy, this layer's usage, usage over every layer) equals
    a full forward with the decision input overridden; the re-run blocks give its logits and every
    later layer's masks."""
    torch.manual_seed(0)
    mcfg = ModelConfig(img_size=28, patch_size=7, embed_dim=48, depth=4, num_heads=6, decision_init_bias=0.0)
    model = build_model(mcfg, 10, 1).eval()
    with torch.no_grad():
        for net in model.decisions.values():
            net.net.weight.normal_(std=0.3)  # decisions that vary with the input
    images, labels, layer = torch.randn(48, 1, 28, 28), torch.randint(0, 10, (48,)), 1
    torch.manual_seed(3)
    sae = TopKSAE(48, 192, 8).eval()
    with torch.no_grad():
        base = model(images, capture=(layer,))
    tokens = base.captured[layer]
    test = Activations(tokens[:, 0], labels, base.logits.argmax(1), base.masks.to(torch.uint8))
    sets = index_sets(latent_frequencies(sae.encode(tokens[:, 0]) > 0, labels, 10), size=8, seed=0, random_draws=2)
    sc = SteerConfig(study_alphas=[-1.0, 1.5], strategies=["per_class", "global"], bootstrap=50, random_draws=2)
    rec = study_layer(model, layer, sae, sets, test, tokens, sc, seed=0)
    assert isinstance(make_tail(model, layer, [tokens]), GeneralTail)
    assert rec["alphas"] == [-1.0, 0.0, 1.5]
    for strategy in ("per_class", "global"):
        for ai, alpha in enumerate(rec["alphas"]):
            x_tilde = steer(sae, tokens[:, 0], sets.masks_of(sets.get(strategy), labels, 192), alpha, "pre_topk")
            full = _override_forward(model, images, layer, x_tilde.detach())
            c = rec["curves"][strategy]
            assert c["accuracy"][ai] == pytest.approx((full.logits.argmax(1) == labels).float().mean().item())
            assert c["head_usage"][ai] == pytest.approx(full.masks[:, layer].mean().item())
            assert c["head_usage_overall"][ai] == pytest.approx(full.masks.mean().item())
            # the sweep's tail (block 1 from its cached per-head attention outputs, then blocks 2-3)
            logits, after = make_tail(model, layer, [tokens[:20], tokens[20:]]).run_masked(
                full.masks[:, layer], slice(None)
            )
            assert (logits - full.logits).abs().max().item() < 1e-4
            assert torch.equal(after, full.masks[:, layer + 1 :].sum(dim=(1, 2)).long())
            with torch.no_grad():  # every later layer's masks, from the same re-run with the mask forced
                rerun = model.forward_from(tokens, layer, force={layer: full.masks[:, layer]})
            assert torch.equal(rerun.masks[:, layer:].bool(), full.masks[:, layer:].bool())
