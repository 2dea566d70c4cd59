"""Stage `steer`: latent statistics on TRAIN, index sets, the alpha sweep on TEST, baselines, the verdict.

Writes `sweep.safetensors` (+ `sweep.json` naming the axes), `latents.safetensors` (frequencies and
index sets) and `metrics.json`: curves per mode with paired-bootstrap CIs, the threshold and
mean-shift baselines, the random band, each strategy's verdict against the baselines at equal usage,
the head sensitivity of every pruned layer, held-out top classes, overlaps, timing.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from headsteer.artifacts.activations import Activations, extracted_layers, load_split
from headsteer.artifacts.io import read_tensors, write_json, write_tensors
from headsteer.config import RunConfig
from headsteer.core.runtime import resolve_device
from headsteer.data import seeded_subset
from headsteer.model.configured import PrunedModel, captured_tokens, load_pruned
from headsteer.model.macs import macs_per_head
from headsteer.sae.topk import TopKSAE
from headsteer.steer import fitted, study
from headsteer.steer.alphas import alpha_grid
from headsteer.steer.baselines import MeanShift, mean_shift_curve, threshold_curve
from headsteer.steer.fit_cache import FitCache
from headsteer.steer.fit_data import FitSplit
from headsteer.steer.heldout import top_classes_heldout
from headsteer.steer.judge import Judging, judge_all, settings_record
from headsteer.steer.latent_effects import head_effects
from headsteer.steer.names import LabelSource
from headsteer.steer.practitioner import OnTest
from headsteer.steer.reach import ReachSettings
from headsteer.steer.readout import readout_record
from headsteer.steer.sensitivity import FLOOR_PTS, layer_sensitivity
from headsteer.steer.stats import IndexSets, latent_sets
from headsteer.steer.summary import curves, per_class_tables, random_band, set_overlaps, unsteered
from headsteer.steer.sweep import Scorer, SweepGrid, SweepResult, run_sweep
from headsteer.steer.tails import OutcomeCache, make_tail
from headsteer.steer.uncertainty import Bootstrap

class_conditioned = IndexSets.class_conditioned


def sensitivities(
    cfg: RunConfig, pm: PrunedModel, steered: OutcomeCache, test: Activations, studied: dict[int, dict]
) -> dict:
    """Kept / dropped / each-dropped accuracy of every pruned layer, one measurement per layer: the steered
    layer on every test image (through the sweep's cache, with the oracle bounds over all head patterns),
    the layers of the layer study as the study measured them (`studied`: layer -> its sensitivity record),
    the others on a seeded subset of `steer.sensitivity_images`, one layer at a time (tokens on the CPU)."""
    model, layer = pm.model, steered.tail.layer
    rows = seeded_subset(len(test), cfg.steer.sensitivity_images, cfg.seed + 17)
    sub = test.take(rows)
    oracle_rows = seeded_subset(len(test), cfg.steer.oracle_images, cfg.seed + 19)
    table = {layer: layer_sensitivity(steered, test.labels, test.predictions, True, oracle_rows).as_dict(), **studied}
    for i in (i for i in model.pruned_layers if i not in table):
        cache = OutcomeCache(make_tail(model, i, [captured_tokens(cfg, pm, i, rows)]), cfg.steer.batch_size)
        table[i] = layer_sensitivity(cache, sub.labels, sub.predictions).as_dict()
    layers = sorted(table)
    for rec in table.values():
        n = rec["images"]
        rec["subset"] = f"all {n} test images" if n == len(test) else f"a seeded subset of {n} test images"
    rep = table[layer]
    return {
        "steered_layer": layer,
        "layers": layers,
        "all_kept": [table[i]["all_kept"] for i in layers],
        "all_dropped": [table[i]["all_dropped"] for i in layers],
        "range_pts": rep["range_pts"],
        "oracle": rep["oracle"],
        "table": [table[i] for i in layers],
        "can_show_accuracy_effects": abs(rep["range_pts"]) >= FLOOR_PTS,
    }


def baselines(
    cfg: RunConfig, pm: PrunedModel, scorer: Scorer, test: Activations, train: Activations, alphas: list[float]
) -> tuple:
    """(threshold curve, {label source: mean-shift curve over `alphas`}) of the steered layer."""
    layer, device = scorer.layer, next(pm.model.parameters()).device
    decide = pm.model.decisions[str(layer)]
    x = test.cls.to(device)
    with torch.inference_mode():
        threshold = threshold_curve(scorer, decide(x), cfg.steer.threshold_levels)
        shift = MeanShift.fit(train.cls, train.labels, len(pm.data.classes))
        sources = {LabelSource.TRUE: test.labels, LabelSource.PREDICTED: test.predictions}
        rs = ReachSettings.of(cfg.steer) if cfg.steer.reach else None
        mean_shift = {
            s: mean_shift_curve(scorer, decide, x, sources[s], shift, alphas, rs) for s in cfg.steer.label_sources
        }
    return threshold, mean_shift


def analyses(cfg, res: SweepResult, test: Activations, classes: list[str], base: tuple, j: Judging) -> dict:
    """Curves with CIs, the random band, the verdicts, held-out top classes (all from per-image scores)."""
    sc, boot = cfg.steer, j.boot
    threshold, mean_shift = base
    out = {
        "curves": curves(res, sc.mode, boot),
        "curves_by_mode": {m: curves(res, m) for m in res.grid.modes},
        "random_band": random_band(res, sc.mode),
        "threshold": threshold.summary(),
        "mean_shift": {s: c.summary() for s, c in mean_shift.items()},
        "verdicts": judge_all(res, j, class_conditioned),
        "top_alpha": sc.top_alpha,
    }
    for source, key in ((LabelSource.TRUE, "top_classes"), (LabelSource.PREDICTED, "top_classes_predicted")):
        held = top_classes_heldout(res, test, classes, boot, sc.top_alpha, sc.top_n, cfg.seed, sc.mode, source=source)
        out[key], out[f"{key}_table"] = held["classes"], held
    return out


def fit_context(cfg: RunConfig, pm: PrunedModel, layer: int, data: tuple, scorer: Scorer, base, boot, folder):
    """The training rows every rival and learned strength is fitted on, and what scoring them on test needs."""
    sc, device = cfg.steer, next(pm.model.parameters()).device
    train, test = data
    rows = seeded_subset(len(train), sc.fit_images, cfg.seed + 41)
    rows = torch.arange(len(train)) if rows is None else rows
    tokens = captured_tokens(cfg, pm, layer, rows, split="train")
    split = FitSplit.build(
        train, rows, OutcomeCache(make_tail(pm.model, layer, [tokens]), sc.batch_size), sc.fit_holdout, cfg.seed + 43
    )
    decide = pm.model.decisions[str(layer)]
    side = OnTest(
        decide, test.cls.to(device), {LabelSource.TRUE: test.labels, LabelSource.PREDICTED: test.predictions}, scorer
    )
    settings = fitted.fit_settings(sc, cfg.seed)
    grid = fitted.targets(decide, split, sc.rival_targets)
    cache = FitCache(
        folder,
        {
            "fit": asdict(settings),
            "targets": grid,
            "rows": rows.numel(),
            "path": sc.learned_path,
            "l1": sc.learned_l1,
            "learned_steps": sc.learned_steps,
            "refit_steps": sc.learned_refit_steps,
        },  # fmt: skip
    )
    return fitted.FitContext(
        decide, split, side, base[0], boot, pm.data.classes, settings, cache, sc.label_sources, grid
    )


def write_sweep(folder: Path, res: SweepResult, classes: list[str]) -> None:
    write_tensors(folder / "sweep.safetensors", res.tensors())
    g = res.grid
    axes = {
        "axes": ["mode", "label_source", "strategy", "alpha", "class", "head"],
        "modes": g.modes,
        "label_sources": g.label_sources,
        "strategies": g.strategies,
        "alphas": g.alphas,
        "classes": classes,
    }
    write_json(folder / "sweep.json", axes)


def latent_head_effects(
    cfg: RunConfig, pm: PrunedModel, sae: TopKSAE, layer: int, test: Activations, folder: Path
) -> dict:
    """Head effect of every latent that fires on TRAIN, on a seeded test subset, added to latents.safetensors."""
    sc = cfg.steer
    lat = read_tensors(folder / "latents.safetensors")
    alive = (lat["freq_overall"] > 0).nonzero().squeeze(1)
    rows = seeded_subset(len(test), sc.effect_images, cfg.seed + 30)
    x = test.take(rows).cls.to(sae.W_dec.device)
    effect = head_effects(pm.model, sae, layer, x, alive, sc.alpha_max, sc.mode, sc.batch_size)
    write_tensors(folder / "latents.safetensors", {**lat, "head_effect": effect, "head_effect_latents": alive})
    return {"alpha": sc.alpha_max, "mode": sc.mode, "images": x.shape[0], "latents": int(alive.numel())}


def headline_entry(metrics: dict, images: int) -> dict:
    """The headline layer's record in the layer study, from its full analysis (true labels)."""
    layer, sens = metrics["layer"], metrics["sensitivity"]
    source = LabelSource.TRUE if LabelSource.TRUE in metrics["curves"] else next(iter(metrics["curves"]))
    return study.LayerEntry(
        layer=layer,
        images=images,
        alphas=metrics["alphas"],
        unsteered={key: metrics["baseline"][key] for key in ("accuracy", "head_usage")},
        curves=metrics["curves"][source],
        random_band=metrics["random_band"],
        threshold=metrics["threshold"],
        verdicts=metrics["verdicts"][metrics["mode"]][source],
        sensitivity=sens["table"][sens["layers"].index(layer)],
        seconds=metrics["timing"]["sweep_seconds"] + metrics["timing"]["analysis_seconds"],
    ).as_dict()


def layer_study(cfg: RunConfig, pm: PrunedModel, layers: list[int], folder: Path) -> dict:
    """{layer: study record} of every extracted layer other than the headline one."""
    sc, device = cfg.steer, next(pm.model.parameters()).device
    out = {}
    for layer in layers:
        sae = TopKSAE.of_run(cfg.out, layer, expected_d_in=pm.model.embed_dim).to(device).eval()
        train, test = load_split(cfg.out, "train", layer), load_split(cfg.out, "test", layer)
        sets = latent_sets(
            sc, cfg.seed, sae, train, len(pm.data.classes), folder / f"latents_layer_{layer}.safetensors", {}
        )
        rows = seeded_subset(len(test), sc.study_images, cfg.seed + 29)
        tokens = captured_tokens(cfg, pm, layer, rows)
        out[layer] = study.study_layer(pm.model, layer, sae, sets, test.take(rows), tokens, sc, cfg.seed)
        print(f"[steer] layer study: layer {layer} in {out[layer]['seconds']:.1f}s", flush=True)
    return out


def headline_layer(cfg: RunConfig, pm: PrunedModel, layer: int, folder: Path) -> tuple[dict, OutcomeCache, Activations]:
    """The headline layer's sweep (every mode, label source and strategy, with reach), baselines, rivals, learned
    strengths and analyses; returns (metrics, the layer's outcome cache, its test activations)."""
    sc, device, classes = cfg.steer, next(pm.model.parameters()).device, pm.data.classes
    sae = TopKSAE.of_run(cfg.out, layer, expected_d_in=pm.model.embed_dim).to(device).eval()
    train, test = load_split(cfg.out, "train", layer), load_split(cfg.out, "test", layer)
    sets = latent_sets(sc, cfg.seed, sae, train, len(classes), folder / "latents.safetensors", sc.custom_sets)
    t0 = time.time()
    cache = OutcomeCache(make_tail(pm.model, layer, [captured_tokens(cfg, pm, layer)]), sc.batch_size)
    scorer = Scorer(cache, test, layer, pm.model.pruned_layers)
    grid = SweepGrid(sc.modes, sc.label_sources, sc.strategies + list(sets.custom), alpha_grid(sc))
    rs = ReachSettings.of(sc) if sc.reach else None
    res = run_sweep(pm.model, sae, scorer, test, sets, grid, sc.batch_size, sc.random_draws, rs)
    sweep_seconds, t0 = time.time() - t0, time.time()
    write_sweep(folder, res, classes)
    base = baselines(cfg, pm, scorer, test, train, grid.alphas)
    boot = Bootstrap.draw(len(test), sc.bootstrap, cfg.seed)
    metrics = {
        "layer": layer,
        "mode": sc.mode,
        "alphas": grid.alphas,
        "set_size": int(sets.global_.numel()),
        "classes": classes,
        "tail": type(cache.tail).__name__,
        "baseline": unsteered(test.predictions, test.labels, test.masks[:, layer], len(classes)),
        "judging": settings_record(sc),
    }
    t1 = time.time()
    ctx = fit_context(cfg, pm, layer, (train, test), scorer, base, boot, folder)
    fits, j, rsae = fitted.fit_all(sc, cfg.seed, ctx, sae, train, base, metrics["baseline"]["accuracy"])
    fit_seconds = time.time() - t1
    metrics.update(analyses(cfg, res, test, classes, base, j))
    metrics["attention_macs_per_head"], metrics["num_layers"] = macs_per_head(pm.model), pm.model.depth
    ov = set_overlaps(sets, classes)
    metrics["overlap"], metrics["class_overlap"] = ov.means, {"top_pairs": ov.top_pairs}
    write_tensors(folder / "per_class.safetensors", per_class_tables(res, sc.mode, boot, test.labels, ov))
    if rsae is not None:
        path, C = folder / "latents_untrained.safetensors", len(classes)
        metrics["untrained_sae"] = fitted.untrained_frequency_sets(
            sc, cfg.seed, pm.model, rsae, (train, test), C, scorer, j, path
        )
    metrics["timing"] = {
        "sweep_seconds": round(sweep_seconds, 2),
        "analysis_seconds": round(time.time() - t0 - fit_seconds, 2),
        "fit_seconds": round(fit_seconds, 2),
        "points": res.accuracy.numel(),
        "reach_points": sum(len(r.alphas) for r in res.reaches.values()),
    }
    t0 = time.time()
    metrics["head_effect"] = latent_head_effects(cfg, pm, sae, layer, test, folder)
    metrics["gate_readout"] = readout_record(ctx, sae, sets, sc.alpha_max, folder / "latents.safetensors")
    metrics["timing"]["head_effect_seconds"] = round(time.time() - t0, 2)
    return {**metrics, **fits}, cache, test


def run(cfg: RunConfig, folder: Path) -> dict:
    pm = load_pruned(cfg, resolve_device(cfg.device))
    layer, layers = extracted_layers(cfg.out)
    metrics, cache, test = headline_layer(cfg, pm, layer, folder)
    t0 = time.time()
    study_records = layer_study(cfg, pm, [i for i in layers if i != layer], folder)
    studied = {i: rec["sensitivity"] for i, rec in study_records.items()}
    metrics["sensitivity"] = sensitivities(cfg, pm, cache, test, studied)
    metrics["timing"]["tail_evaluations"] = cache.computed
    write_tensors(folder / "outcomes.safetensors", cache.computed_pairs())  # for Run.sweep (headsteer.api)
    del cache  # the headline's tokens and per-(image, pattern) outcomes
    metrics["timing"]["study_and_sensitivity_seconds"] = round(time.time() - t0, 2)
    metrics["layer_study"] = {
        str(i): rec for i, rec in sorted({layer: headline_entry(metrics, len(test)), **study_records}.items())
    }
    write_json(folder / "metrics.json", metrics)
    t = metrics["timing"]
    print(
        f"[steer] {t['points']} grid points + {t['reach_points']} reach points in {t['sweep_seconds']:.1f}s, "
        f"baselines + analyses {t['analysis_seconds']:.1f}s, layer study of {len(layers)} layer(s) and "
        f"sensitivity {t['study_and_sensitivity_seconds']:.1f}s ({t['tail_evaluations']} tail evaluations)",
        flush=True,
    )
    return metrics
