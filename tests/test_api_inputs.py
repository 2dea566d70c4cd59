"""`headsteer.api` on bad input and on folders it must not trust (one-line `HeadsteerError`s with their
exact text), its per-class sets, random draws and sweeps against results.json, and its short reprs; on
the session's smoke run (10 classes, an SAE of 192 latents, 10 random draws, layer 1)."""

import json
import shutil
from pathlib import Path

import pytest
import torch

import headsteer
from headsteer.core.errors import HeadsteerError


def _error(call) -> str:
    with pytest.raises(HeadsteerError) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


BAD_STEERING = [
    (dict(strategy="global", alpha=float("nan"), mode="additive"), "alpha=nan must be a finite number"),
    (dict(strategy="global", alpha=float("inf")), "alpha=inf must be a finite number"),
    (dict(strategy="global", alpha=-float("inf")), "alpha=-inf must be a finite number"),
    (dict(strategy="global", alpha="2"), "alpha='2' must be a number (e.g. alpha=1.5)"),
    (dict(labels=torch.full((4,), -1)), "labels hold -1, outside 0..9 (the run's 10 classes); pass class indices"),
    (dict(labels=[0, 1, 99, 2]), "labels hold 99, outside 0..9 (the run's 10 classes); pass class indices"),
    (dict(labels=torch.zeros(4)), "labels of dtype torch.float32; pass class indices as ints"),
    (dict(labels=torch.zeros(4, 1, dtype=torch.long)), "labels of shape (4, 1); pass one class index per image"),
    (dict(labels=["a", "b", "c", "d"]), "labels=['a', 'b', 'c', 'd'] is not a list of ints; pass class indices"),
    (dict(labels="abcd"), "labels='abcd' is a string; pass class indices as a list or tensor of ints"),
    (dict(latents=[1.5]), "latents of dtype torch.float32; pass latent ids as ints"),
    (dict(latents=[True]), "latents of dtype torch.bool; pass latent ids as ints"),
    (dict(latents="12"), "latents='12' is a string; pass latent ids as a list or tensor of ints"),
    (dict(latents=torch.arange(6).view(3, 2)), "latents of shape (3, 2): one row per class needs 10 rows"),
    (dict(latents=[[[1]]]), "latents of shape (1, 1, 1); pass one or more latent ids, shape (|S|,) or (C=10, |S|)"),
    (dict(latents=[[1, 1]] * 10), "latents=[[1, 1]"),  # a class's row repeats a latent
    (dict(strategy="random"), "strategy='random' has 10 draws (steer.random_draws); pick one with draw=0..9 "),
    (dict(strategy="random", draw=10), "strategy='random' has 10 draws (steer.random_draws); pick one with draw=0.."),
    (dict(strategy="global", draw=1), "draw=1 goes with strategy='random' only"),
    (dict(layer="1"), "layer='1' must be a block index (an int); use one of [1]"),
    (dict(batch_size=-1), "batch_size=-1 must be a whole number >= 1 (or None for 1000)"),
]


@pytest.mark.parametrize("kwargs, message", BAD_STEERING, ids=[m[:40] for _, m in BAD_STEERING])
def test_bad_steering_arguments_are_one_line(run, test_split, kwargs, message):
    assert _error(lambda: run.steer(test_split.images[:4], **kwargs)).startswith(message)


def test_bad_images_are_one_line(run, test_split):
    im = test_split.images[:4]
    nan = im.float() / 255
    nan[0, 0, 3, 3] = float("nan")
    assert _error(lambda: run.forward(nan)) == "images hold 1 NaN or infinite pixel value(s); pass finite pixels"
    empty = "images of shape (0, 1, 28, 28) hold no pixels; pass one image or more"
    assert _error(lambda: run.forward(im[:0])) == empty
    normalised = run.transform(im).cpu()  # the model's input is not pixels: refused, never taken as such
    lo, hi = normalised.min().item(), normalised.max().item()
    assert lo < 0 and hi > 1
    assert _error(lambda: run.steer(normalised)) == (
        f"float images range over [{lo:.3g}, {hi:.3g}], but float pixels must lie in [0, 1] (headsteer normalises "
        "them itself): pass uint8 pixels 0..255, or floats divided by 255"
    )
    hi = im.max().item()  # floats in 0..255 are not pixels in [0, 1]
    assert _error(lambda: run.forward(im.double())).startswith(f"float images range over [0, {hi}], but float pixels")
    assert _error(lambda: run.threshold(im, float("nan"))) == "shift=nan must be a finite number"
    assert _error(lambda: run.threshold(im, "0.5")) == "shift='0.5' must be a number (e.g. shift=1.5)"
    assert _error(lambda: run.forward(im, layer="1")) == "layer='1' must be a block index (an int)"
    assert _error(lambda: run.threshold(im, 0.1, layer=1.5)) == "layer=1.5 must be a block index (an int)"
    # float64 and float16 pixels in [0, 1] are pixels: the same outputs as the uint8 images
    assert torch.equal(run.forward(im.double() / 255).logits, run.forward(im).logits)


def test_per_class_latents_steer_each_image_with_its_class_row(run, test_split):
    x, y = test_split.images, test_split.labels
    sets = run.index_sets()
    by_name = run.steer(x, strategy="per_class", labels=y, alpha=1.5)
    by_ids = run.steer(x, latents=sets["per_class"], labels=y, alpha=1.5)
    assert torch.equal(by_name.masks, by_ids.masks) and torch.equal(by_name.logits, by_ids.logits)
    # a hand-made (C, |S|) table: each class's images steered with their own row, one class at a time
    table = torch.stack([torch.tensor([c, 20 + c, 40 + 2 * c]) for c in range(10)])  # (10, 3)
    out = run.steer(x, latents=table.tolist(), labels=y, alpha=1.0, mode="additive")
    for c in y.unique().tolist():
        rows = y == c
        alone = run.steer(x[rows], latents=table[c], alpha=1.0, mode="additive")
        assert torch.equal(out.masks[rows], alone.masks), c  # other batches: logits equal up to float rounding
        assert torch.allclose(out.logits[rows], alone.logits, atol=1e-5), c
    assert out.masks[:, run.layer].mean() != run.forward(x).masks[:, run.layer].mean()  # steering moved heads


def test_random_draws_one_at_a_time_average_to_the_sweep(run, test_split):
    x, y = test_split.images, test_split.labels
    draws = run.index_sets()["random_draws"]
    one = run.steer(x, strategy="random", draw=3, alpha=1.5)
    assert torch.equal(one.masks, run.steer(x, latents=draws[3], alpha=1.5).masks)
    usage = [run.steer(x, strategy="random", draw=r, alpha=1.5).summary(y) for r in range(10)]
    row = next(r for r in run.sweep("random", [1.5], frame=False))
    assert row["head_usage"] == pytest.approx(sum(u["head_usage"] for u in usage) / 10, abs=1e-6)
    assert row["accuracy"] == pytest.approx(sum(u["accuracy"] for u in usage) / 10, abs=1e-6)
    assert len({u["head_usage"] for u in usage}) > 1  # the draws differ: the average is not one of them


@pytest.mark.parametrize("strategy", ["per_class", "global", "random", "per_class_specific"])
def test_sweep_equals_the_results_curve(run, strategy):
    st = run.results["steering"]
    rows = run.sweep(strategy, frame=False)
    assert [r["alpha"] for r in rows] == st["alphas"]
    curve = st["curves"]["true"][strategy]
    for key in ("accuracy", "head_usage", "head_usage_overall"):
        assert [r[key] for r in rows] == curve[key], key  # exactly
    other = run.sweep(strategy, [-1.0, 1.5], mode="additive", label_source="predicted", frame=False)
    ref = st["curves_by_mode"]["additive"]["predicted"][strategy]
    i, j = st["alphas"].index(-1.0), st["alphas"].index(1.5)
    assert [r["head_usage"] for r in other] == [ref["head_usage"][i], ref["head_usage"][j]]
    assert all(type(r[k]) is float for r in rows for k in ("alpha", "accuracy", "head_usage"))


def test_sweep_starts_from_the_stage_outcomes_and_builds_the_tail_only_when_needed(pipeline, monkeypatch):
    from headsteer.artifacts.io import read_tensors
    from headsteer.steer.tails import OutcomeCache

    stored = read_tensors(Path(pipeline.out) / "steer" / "outcomes.safetensors")
    assert set(stored) == {"pattern", "row", "pred", "kept_after"} and stored["row"].numel() > 160
    curve = headsteer.load_run(pipeline.out).results["steering"]["curves"]["true"]["per_class"]["head_usage"]
    warm = headsteer.load_run(pipeline.out, device="cpu")  # nothing cached in memory yet
    assert [r["head_usage"] for r in warm.sweep("per_class", frame=False)] == curve
    scorer, _ = warm._tails.get(warm, warm.layer)
    assert scorer.cache.computed == 0 and scorer.cache.tail._tail is None  # the stage's outcomes answered
    monkeypatch.setattr(OutcomeCache, "add_pairs", lambda self, pairs: None)  # as for a run without them
    cold = headsteer.load_run(pipeline.out, device="cpu")
    assert [r["head_usage"] for r in cold.sweep("per_class", frame=False)] == curve
    scorer, _ = cold._tails.get(cold, cold.layer)
    assert scorer.cache.computed > 0 and scorer.cache.tail._tail is not None  # the tail was built and ran


def test_sweep_of_own_latents_and_as_a_frame(run):
    pandas = pytest.importorskip("pandas")
    mine = run.sweep(latents=run.index_sets()["per_class"], alphas=[0.5, 1.5], frame=False)
    named = run.sweep("per_class", [0.5, 1.5], frame=False)
    assert [r["head_usage"] for r in mine] == [r["head_usage"] for r in named]
    assert {r["strategy"] for r in mine} == {"latents"}
    df = run.sweep("global", [0.0, 1.5])
    assert isinstance(df, pandas.DataFrame) and df.to_dict("records") == run.sweep("global", [0.0, 1.5], frame=False)
    assert list(df.columns) == ["strategy", "mode", "label_source", "alpha", "accuracy", "head_usage"] + [
        "head_usage_overall"
    ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="dense"), "mode='dense' is not one of pre_topk, post_topk, additive"),
        (dict(alphas=1.5), "alphas=1.5 must be a non-empty list of numbers (e.g. [0, 0.5, 1.5])"),
        (dict(alphas=[0.5, float("nan")]), "alphas[1]=nan must be a finite number"),
        (dict(label_source="oracle"), "label_source='oracle' is not one of true, predicted"),
        (dict(strategy="nope"), "strategy='nope' is not one of per_class, global, random, per_class_specific"),
        (dict(frame="yes"), "frame='yes' must be True, False or None"),
    ],
)
def test_bad_sweep_arguments_are_one_line(run, kwargs, message):
    assert _error(lambda: run.sweep(**{"alphas": [0.0], **kwargs})) == message


def test_reprs_are_short_and_summaries_are_python_floats(run, test_split):
    out = run.forward(test_split.images)
    s = out.summary(test_split.labels)
    assert all(type(v) is float for k, v in s.items() if k != "images") and s["images"] == 160
    assert repr(out) == (
        f"Outputs(160 images, 10 classes, layer 1: mean usage {s['head_usage']:.4f}, "
        f"overall {s['head_usage_overall']:.4f})"
    )
    assert repr(run) == f"Run('{run.path}', stages=prune+extract+sae+steer+report, layer=1, device=cpu)"
    assert repr(run.sae()) == f"RunSAE(layer 1: 48 -> 192 latents, k=8, folder='{run.sae().folder}')"
    lat = run.latents()
    alive = int((lat.freq_overall > 0).sum())
    assert repr(lat) == f"LatentStats(192 latents, {alive} fire on TRAIN, 10 classes, head effects of {alive})"


def _copy(pipeline, tmp_path, stages=("prune", "extract", "sae", "steer", "report")) -> Path:
    copy = tmp_path / "run"
    for stage in stages:
        shutil.copytree(Path(pipeline.out) / stage, copy / stage)
    return copy


def test_load_run_refuses_a_changed_artifact(pipeline, tmp_path):
    copy = _copy(pipeline, tmp_path)
    cfg = copy / "sae" / "layer_1" / "sae" / "cfg.json"
    cfg.write_text(cfg.read_text().replace('"k": 8', '"k": 4'))
    assert _error(lambda: headsteer.load_run(copy)) == (
        f"{cfg} changed since the sae stage finished; redo it (`headsteer run CONFIG --out {copy}`) or open "
        "another folder"
    )


def test_load_run_refuses_stages_that_disagree(pipeline, tmp_path):
    copy = _copy(pipeline, tmp_path)
    (copy / "sae" / "done.json").unlink()  # the sae stage started again (run --force sae.k=4) and was stopped
    assert _error(lambda: headsteer.load_run(copy)) == (
        f"{copy / 'steer'} was made from an earlier result of the sae stage, which was redone or left unfinished "
        f"since: the run's stages disagree; finish the run (`headsteer run CONFIG --out {copy}`) or open another "
        "folder"
    )
    copy = _copy(pipeline, tmp_path / "b")
    meta = json.loads((copy / "report" / "config.json").read_text())
    meta["config"]["sae"]["k"] = meta["full_config"]["sae"]["k"] = 4  # the report's record says k=4, the sae's 8
    (copy / "report" / "config.json").write_text(json.dumps(meta))
    assert _error(lambda: headsteer.load_run(copy)) == (
        f"{copy}: the sae stage was made with other settings than the report stage (sae.k: 8 -> 4); the run's "
        "stages disagree: finish it with one config, or open another folder"
    )


def test_a_run_whose_prune_alone_finished(pipeline, tmp_path, test_split):
    copy = _copy(pipeline, tmp_path, ("prune",))
    run = headsteer.load_run(copy, device="cpu")
    assert repr(run) == f"Run('{copy}', stages=prune, device=cpu)"
    assert run.forward(test_split.images[:8], layer=1).summary()["images"] == 8  # the model works
    assert _error(lambda: run.results) == (
        f"{copy} has no finished report stage (finished: prune); finish the run with `headsteer run CONFIG "
        f"--out {copy}`"
    )
    assert _error(lambda: run.sae()).startswith(f"{copy} has no finished sae stage (finished: prune)")


def test_the_sweep_benchmark_runs_quick_on_a_run(pipeline):
    """bench/bench_api_sweep.py needs a finished run (runs/demo for the figures); --quick on the smoke run."""
    import subprocess
    import sys

    from conftest import ROOT

    cmd = [sys.executable, "bench/bench_api_sweep.py", "--quick", "--device", "cpu", "--run", str(pipeline.out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [" ".join(line.split()) for line in r.stdout.splitlines()]
    assert "call strategy points seconds cpu_s ms_per_point" in lines and "--quick run: results not saved" in lines
    assert any(line.startswith("sweep (first) per_class 31 ") for line in lines), r.stdout
