"""The latent browser's data: head effects against a dense per-latent reference, latent columns against
naive loops, the thumbnail sprite against the images it was made from."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from headsteer.analysis import explorer
from headsteer.config import ModelConfig
from headsteer.model import build_model, deterministic_mask
from headsteer.sae.topk import TopKSAE
from headsteer.steer.latent_effects import head_effects
from headsteer.steer.steering import steer


def _model():
    torch.manual_seed(0)
    cfg = ModelConfig(img_size=28, patch_size=7, embed_dim=48, depth=3, num_heads=6, decision_init_bias=0.0)
    model = build_model(cfg, 10, 1).eval()
    with torch.no_grad():
        for net in model.decisions.values():
            net.net.weight.normal_(std=0.3)
    return model


@pytest.mark.parametrize("mode", ["pre_topk", "additive"])
def test_head_effects_equal_one_latent_at_a_time(mode):
    model, layer = _model(), 1
    torch.manual_seed(3)
    sae = TopKSAE(48, 96, 4).eval()
    x = torch.randn(30, 48)
    latents = torch.tensor([0, 5, 17, 95])
    got = head_effects(model, sae, layer, x, latents, 1.5, mode, batch_size=7)
    decide = model.decisions[str(layer)]
    with torch.no_grad():
        base = deterministic_mask(decide(sae(x).x_hat)).float().mean(0)
        for j, i in enumerate(latents.tolist()):
            S = torch.zeros(30, 96, dtype=torch.bool)
            S[:, i] = True
            want = deterministic_mask(decide(steer(sae, x, S, 1.5, mode))).float().mean(0) - base
            assert torch.allclose(got[j], want, atol=1e-6), (i, got[j], want)
    assert got.abs().sum() > 0  # some latent moves some head, so the comparison is not 0 == 0


def test_latent_columns_against_naive_loops():
    z = torch.tensor([[0.0, 2.0, 0.5], [1.0, 0.0, 0.0], [3.0, 1.0, 0.0], [0.0, 0.5, 0.0]])  # (N=4, n=3)
    lat = {
        "freq_overall": torch.tensor([0.5, 0.25, 0.1]),
        "freq_per_class": torch.tensor([[0.9, 0.1, 0.2], [0.1, 0.4, 0.0]]),  # (C=2, n)
        "head_effect": torch.tensor([[0.1, -0.2], [0.0, 0.3]]),
        "head_effect_latents": torch.tensor([0, 1]),
    }
    doc, used = explorer.latents(lat, z, ["a", "b"])
    c = doc["columns"]
    assert c["id"] == [0, 1]
    assert c["mean"] == pytest.approx([2.0, (2.0 + 1.0 + 0.5) / 3], abs=1e-4)  # over active test rows (4 decimals)
    assert c["fires_on_test"] == [0.5, 0.75]
    assert c["lift"] == [pytest.approx(1.8), pytest.approx(1.6)] and c["lift_class"] == [0, 1]
    # top images: rows by activation, only where the latent fires, as slots of the sprite's rows `used`
    rows_of = [[used[s].item() for s in top if s >= 0] for top in c["top"]]
    assert rows_of == [[2, 1], [0, 2, 3]]
    assert c["top_values"][0][:2] == [3.0, 1.0] and c["effect"] == [[0.1, -0.2], [0.0, 0.3]]
    assert c["class_ids"] == [[0, 1], [0, 1]] and c["class_freq"] == [[0.9, 0.1], [0.1, 0.4]]  # every class


def test_a_latent_shows_its_most_frequent_classes_when_there_are_many():
    g = torch.Generator().manual_seed(0)
    C, n = 50, 6
    per_class = torch.rand(C, n, generator=g)
    lat = {
        "freq_overall": per_class.mean(0),
        "freq_per_class": per_class,
        "head_effect": torch.zeros(n, 2),
        "head_effect_latents": torch.arange(n),
    }
    doc, _ = explorer.latents(lat, torch.rand(9, n, generator=g), [f"c{i}" for i in range(C)])
    for j in range(n):
        ranked = sorted(range(C), key=lambda c: -per_class[c, j].item())[: explorer.CLASSES_SHOWN]
        assert doc["columns"]["class_ids"][j] == ranked
        assert doc["columns"]["class_freq"][j] == pytest.approx([per_class[c, j].item() for c in ranked], abs=1e-4)


def test_per_class_tables_are_exact_float32_and_move_beside_the_page_when_large(tmp_path, monkeypatch):
    import json

    g = torch.Generator().manual_seed(1)
    sweep = {
        "per_class_accuracy": torch.rand(1, 2, 3, 4, 5, generator=g),
        "per_class_usage": torch.rand(1, 2, 3, 4, 5, generator=g),
        "per_class_head": torch.rand(1, 2, 3, 4, 5, 6, generator=g),
    }
    ci = torch.rand(2, 3, 2, 4, 5, 2, generator=g)
    tables = explorer.class_tables(sweep, ci)
    heads = np.frombuffer(base64.b64decode(tables["heads"]), dtype="<f4").reshape(tables["shape"])
    assert np.array_equal(heads, sweep["per_class_head"].numpy())
    assert np.array_equal(np.frombuffer(base64.b64decode(tables["ci"]), "<f4").reshape(tables["ci_shape"]), ci.numpy())
    doc = {"steering": {"class_tables": tables}}
    assert not explorer.place_tables(doc, tmp_path) and doc["steering"]["class_tables"] is tables
    monkeypatch.setattr(explorer, "INLINE_BYTES", 100)
    assert explorer.place_tables(doc, tmp_path) and doc["steering"]["class_tables"] is None
    text = (tmp_path / explorer.SIDECAR).read_text()
    assert text.startswith("window.HS_CLASS_TABLES = ") and json.loads(text[25:].rstrip(";\n")) == tables


@pytest.mark.parametrize("channels", [1, 3])
def test_sprite_holds_each_image_at_its_slot(channels):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (70, channels, 5, 4), dtype=torch.uint8, generator=g)
    sp = explorer.sprite(images)
    grid = np.array(Image.open(io.BytesIO(base64.b64decode(sp["png"]))))
    if channels == 1:
        grid = grid[..., None]
    assert grid.shape == (2 * 5, sp["columns"] * 4, channels)
    for i in (0, 63, 64, 69):
        r, q = divmod(i, sp["columns"])
        assert np.array_equal(grid[r * 5 : (r + 1) * 5, q * 4 : (q + 1) * 4], images[i].permute(1, 2, 0).numpy())
