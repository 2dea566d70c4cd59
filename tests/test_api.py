"""`headsteer.load_run`: a finished run from Python reproduces what the pipeline wrote (results.json, the
reconstruction control, the latents' head effects), on the session's smoke run."""

import dataclasses
import inspect
import json
import os
import shutil
from functools import cached_property
from pathlib import Path

import pytest
import torch
from PIL import Image

import headsteer
from conftest import ROOT
from headsteer.config.docs import field_docs
from headsteer.core.errors import HeadsteerError


def _at(curve: dict, i: int) -> tuple:
    return curve["accuracy"][i], curve["head_usage"][i], curve["head_usage_overall"][i]


def _scores(out, labels) -> tuple:
    return out.accuracy(labels), out.usage.mean().item(), out.usage_overall.mean().item()


def test_steer_reproduces_the_per_class_curve_at_alpha_1_5(run, test_split):
    st = run.results["steering"]
    assert st["mode"] == "pre_topk" and st["layer"] == run.layer
    i = st["alphas"].index(1.5)
    out = run.steer(test_split.images, strategy="per_class", labels=test_split.labels, alpha=1.5)
    assert _scores(out, test_split.labels) == pytest.approx(_at(st["curves"]["true"]["per_class"], i), abs=1e-6)
    unsteered = st["unsteered"]["head_usage"]
    assert out.usage.mean().item() < unsteered - 0.05  # the check has teeth: steering moved the heads
    # without labels, class-conditioned sets take the unsteered prediction: the `predicted` curve
    pred = run.steer(test_split.images, alpha=1.5)
    assert _scores(pred, test_split.labels) == pytest.approx(_at(st["curves"]["predicted"]["per_class"], i), abs=1e-6)


@pytest.mark.parametrize("strategy", ["global", "per_class_specific"])
def test_steer_reproduces_other_strategies(run, test_split, strategy):
    st = run.results["steering"]
    i = st["alphas"].index(-1.0)
    out = run.steer(test_split.images, strategy=strategy, labels=test_split.labels, alpha=-1.0)
    assert _scores(out, test_split.labels) == pytest.approx(_at(st["curves"]["true"][strategy], i), abs=1e-6)


def test_forward_and_threshold_reproduce_the_unsteered_model_and_the_threshold_curve(run, test_split):
    st = run.results["steering"]
    plain = run.forward(test_split.images)
    assert (plain.accuracy(test_split.labels), plain.usage.mean().item()) == pytest.approx(
        (st["unsteered"]["accuracy"], st["unsteered"]["head_usage"]), abs=1e-6
    )
    zero = run.threshold(test_split.images, 0.0)
    assert torch.equal(zero.logits, plain.logits) and torch.equal(zero.masks, plain.masks)
    t = st["threshold"]
    usages = []
    for j, shift in enumerate(t["values"]):
        out = run.threshold(test_split.images, shift)
        assert _scores(out, test_split.labels) == pytest.approx(_at(t, j), abs=1e-6), shift
        usages.append(out.usage.mean().item())
    assert min(usages) == 0.0 and max(usages) == 1.0


def test_alpha_0_is_the_reconstruction_control(run, pipeline, test_split):
    rc = json.loads((Path(pipeline.out) / "sae" / "metrics.json").read_text())["reconstruction"]
    out = run.steer(test_split.images, latents=[0, 1, 2], alpha=0.0)
    got = _scores(out, test_split.labels)
    assert got == pytest.approx((rc["accuracy"], rc["head_usage_layer"], rc["head_usage"]), abs=1e-6)


def test_one_latent_reproduces_its_stored_head_effect(run, test_split):
    lat, alpha = run.latents(), run.config.steer.alpha_max
    assert run.config.steer.effect_images >= len(test_split)  # measured on every test image of the smoke run
    for a in torch.linspace(0, len(lat.head_effect_latents) - 1, 4).long().tolist():
        i = int(lat.head_effect_latents[a])
        kept = run.steer(test_split.images, latents=[i], alpha=alpha, mode=run.config.steer.mode).masks[:, run.layer]
        base = run.steer(test_split.images, latents=[i], alpha=0.0).masks[:, run.layer]
        assert torch.allclose(kept.mean(0) - base.mean(0), lat.head_effect[a], atol=1e-6), i


def test_config_is_rebuilt_from_the_run_folder(run, pipeline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is read relative to the directory the run was made in
    again = headsteer.load_run(pipeline.out)
    expected = dataclasses.asdict(pipeline)
    assert dataclasses.asdict(again.config) == expected and again.path == Path(pipeline.out)
    assert again.classes == run.data.classes and again.layers == [1] and run.depth == 2


def test_a_moved_dataset_names_the_key_to_override(pipeline, tmp_path):
    folder = tmp_path / "elsewhere"
    shutil.copytree(Path(pipeline.out) / "prune", folder / "prune")  # a run whose prune alone has finished
    meta = json.loads((folder / "prune" / "config.json").read_text())
    meta["full_config"]["data"]["root"] = meta["config"]["data"]["root"] = "/no/such/fashion"
    (folder / "prune" / "config.json").write_text(json.dumps(meta))  # bookkeeping: no digest in done.json
    with pytest.raises(HeadsteerError) as err:
        headsteer.load_run(folder)
    assert str(err.value) == (
        f"run {folder} was made with data.root=/no/such/fashion, which does not exist here; "
        f"pass load_run('{folder}', data_root=DIR) with the folder holding that data"
    )
    moved = headsteer.load_run(folder, data_root=str(pipeline.data.root))
    assert moved.config.data.root == pipeline.data.root and moved.config.out == str(folder)
    with pytest.raises(HeadsteerError, match="holds no finished stage"):
        headsteer.load_run(tmp_path)


def test_index_sets_latents_and_sae(run, pipeline):
    from headsteer.artifacts.io import read_tensors

    stored = read_tensors(Path(pipeline.out) / "steer" / "latents.safetensors")
    sets = run.index_sets()
    assert list(sets) == ["per_class", "global", "random", "per_class_specific", "random_draws"]
    for name in sets:
        assert torch.equal(sets[name], stored[f"set_{name}"])
    assert sets["random_draws"].shape[0] == run.config.steer.random_draws == 10
    assert torch.equal(sets["random_draws"][0], sets["random"])
    lat = run.latents()
    fires = lat.freq_overall > 0
    assert torch.allclose(lat.lift[:, fires] * lat.freq_overall[fires], lat.freq_per_class[:, fires])
    s = run.sae()
    assert s.layer == 1 and (s.folder / "cfg.json").is_file() and s.sae.k == run.config.sae.k
    assert s.sae.W_dec.shape[0] == lat.freq_overall.shape[0]


def test_custom_sets_are_index_sets_and_steer_like_their_ids(run, test_split, monkeypatch):
    monkeypatch.setattr(run.config.steer, "custom_sets", {"mine": [5, 3, 9]}, raising=False)
    assert run.index_sets()["mine"].tolist() == [5, 3, 9]
    by_name = run.steer(test_split.images, strategy="mine", alpha=1.5)
    by_ids = run.steer(test_split.images, latents=[5, 3, 9], alpha=1.5)
    assert torch.equal(by_name.masks, by_ids.masks) and torch.equal(by_name.logits, by_ids.logits)
    monkeypatch.setattr(run.config.steer, "custom_sets", {"global": [1]}, raising=False)
    with pytest.raises(HeadsteerError, match="named 'global', like a built-in one"):
        run.index_sets()


def test_images_as_pil_tensors_and_single_images(run, test_split):
    images = test_split.images[:5]  # (5, 1, 28, 28) uint8
    pil = [Image.fromarray(img[0].numpy()) for img in images]
    assert torch.equal(run.transform(pil), run.transform(images))
    assert torch.equal(run.transform(images[0]), run.transform(images[:1]))  # (C, H, W)
    assert torch.equal(run.transform(images[0, 0]), run.transform(images[:1]))  # (H, W)
    assert torch.equal(run.transform(images.numpy()), run.transform(images))
    x = run.transform(images)
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    for floats in (images.float() / 255, images.double() / 255, images.half() / 255):  # float pixels in [0, 1]
        assert torch.allclose(run.transform(floats), x, atol=1e-3 if floats.dtype == torch.half else 0)
    assert torch.equal(run.forward(images.float() / 255).logits, run.forward(images).logits)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r, im: r.steer(im, strategy="nope"), "strategy='nope' is not an index set of layer 1; use one of"),
        (lambda r, im: r.steer(im, latents=[10**6]), "latents=[1000000] must be one or more latent ids in 0.."),
        (lambda r, im: r.steer(im, latents=[2, 2]), "latents=[2, 2] repeats a latent; list each one once"),
        (lambda r, im: r.steer(im, strategy="global", latents=[1]), "give a strategy or latents, not both"),
        (lambda r, im: r.steer(im, labels=[0, 1]), "2 labels for 4 images; give one label per image"),
        (lambda r, im: r.steer(im, mode="dense"), "mode='dense' is not a steering mode; use one of pre_topk"),
        (lambda r, im: r.steer(im, layer=0), "layer=0 has no SAE in this run; use one of [1]"),
        (lambda r, im: r.forward(im[:, :, 0]), "images of shape (4, 1, 28); the model takes (B, 1, H, W)"),
        (lambda r, im: r.forward(im.int()), "images of dtype torch.int32; pass uint8 pixels"),
        (lambda r, im: r.forward([1, 2]), "images: a list must hold PIL images"),
    ],
)
def test_user_mistakes_are_one_line_errors(run, test_split, call, message):
    with pytest.raises(HeadsteerError) as err:
        call(run, test_split.images[:4])
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_public_names_are_exported_typed_and_documented():
    import headsteer.api as api

    assert set(api.__all__) <= set(headsteer.__all__) | {"ImageInput"}
    for name in api.__all__:
        assert getattr(headsteer, name, None) is getattr(api, name) or name == "ImageInput"
    for cls in (api.Run, api.Outputs, api.LatentStats, api.RunSAE, api.LearnedStrengths):
        assert cls.__doc__, cls
        if dataclasses.is_dataclass(cls):  # every field has its docstring
            assert set(field_docs(cls)) == {f.name for f in dataclasses.fields(cls)}, cls
        for name, member in vars(cls).items():
            if name.startswith("_"):
                continue
            if isinstance(member, (property, cached_property)):
                fn = member.fget if isinstance(member, property) else member.func
            elif inspect.isfunction(member):
                fn = member
            else:
                continue
            assert fn.__doc__, f"{cls.__name__}.{name}"
            assert "return" in inspect.get_annotations(fn), f"{cls.__name__}.{name}"
    assert headsteer.load_run.__doc__ and "return" in inspect.get_annotations(headsteer.load_run)


def test_the_acceptance_snippet_runs_in_a_fresh_interpreter(pipeline, tmp_path):
    """`import headsteer; run = headsteer.load_run(RUN); run.steer(...)`, as a user types it."""
    import subprocess
    import sys

    copy = tmp_path / "run"
    shutil.copytree(pipeline.out, copy)  # a run folder moved elsewhere still loads
    code = (
        "import headsteer; run = headsteer.load_run(r'%s'); t = run.data.test; "
        "out = run.steer(t.images, strategy='per_class', labels=t.labels, alpha=1.5); "
        "print(out.accuracy(t.labels), float(out.usage.mean()))" % copy
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    st = json.loads((copy / "report" / "results.json").read_text())["steering"]
    i = st["alphas"].index(1.5)
    acc, usage = map(float, r.stdout.split())
    curve = st["curves"]["true"]["per_class"]
    assert (acc, usage) == pytest.approx((curve["accuracy"][i], curve["head_usage"][i]), abs=1e-6)
