"""Stage `steer`: latent statistics on TRAIN, index sets, the alpha sweep on TEST, and the analyses.

Writes `sweep.safetensors` (+ `sweep.json` naming the axes), `latents.safetensors` (frequencies and
index sets) and `metrics.json` (curves per mode, top classes, overlaps, timing).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from headsteer.activations import Activations, load_split
from headsteer.config import RunConfig
from headsteer.data import iterate
from headsteer.io import read_json, write_json, write_tensors
from headsteer.model.configured import PrunedModel, load_pruned
from headsteer.runtime import resolve_device
from headsteer.sae.topk import TopKSAE
from headsteer.steer.alphas import alpha_grid
from headsteer.steer.stats import IndexSets, index_sets, latent_frequencies
from headsteer.steer.summary import curves, set_overlaps, top_classes, unsteered
from headsteer.steer.sweep import FinalBlockTail, GeneralTail, SweepGrid, SweepResult, run_sweep


def latent_sets(cfg: RunConfig, sae: TopKSAE, train: Activations, C: int, folder: Path) -> IndexSets:
    """Latent frequencies and index sets from the TRAIN split, saved to latents.safetensors."""
    sc, device = cfg.steer, sae.W_dec.device
    with torch.inference_mode():
        active = torch.cat([(sae.encode(xb.to(device)) > 0).cpu() for xb in train.cls.split(sc.batch_size)])
    freqs = latent_frequencies(active, train.labels, C)
    sets = index_sets(freqs, sc.set_size or sae.k, cfg.seed, sc.min_class_freq)
    write_tensors(
        folder / "latents.safetensors",
        {
            "freq_per_class": freqs.per_class,
            "freq_overall": freqs.overall,
            "set_per_class": sets.per_class,
            "set_global": sets.global_,
            "set_random": sets.random,
            "set_per_class_specific": sets.per_class_specific,
        },
    )
    return sets


def cached_tail(cfg: RunConfig, pm: PrunedModel, layer: int, device: torch.device):
    """Everything before the steered layer's mask, computed once over the test set."""

    def token_batches():
        with torch.inference_mode():
            for images, _ in iterate(pm.data.test, cfg.prune.eval_batch_size):
                yield pm.model(pm.test_tf(images).to(device), capture=(layer,)).captured[layer]

    if FinalBlockTail.supported(pm.model, layer):
        return FinalBlockTail(pm.model, token_batches())
    return GeneralTail(pm.model, layer, token_batches())


def sweep_metrics(
    cfg: RunConfig, res: SweepResult, sets: IndexSets, test: Activations, layer: int, classes: list[str]
) -> dict:
    """The curves, top classes, overlaps and the unsteered baseline reported from the sweep."""
    sc = cfg.steer
    baseline, base = unsteered(test.predictions, test.labels, test.masks[:, layer], len(classes))
    overlap, class_overlap = set_overlaps(sets, classes)
    return {
        "layer": layer,
        "mode": sc.mode,
        "alphas": res.alphas,
        "set_size": sets.global_.numel(),
        "classes": classes,
        "baseline": baseline,
        "curves": curves(res, sc.mode),
        "curves_by_mode": {mode: curves(res, mode) for mode in res.modes},
        "top_alpha": sc.top_alpha,
        "top_classes": top_classes(res, sc.mode, sc.top_alpha, sc.top_n, classes, base),
        "top_classes_predicted": top_classes(res, sc.mode, sc.top_alpha, sc.top_n, classes, base, source="predicted"),
        "overlap": overlap,
        "class_overlap": class_overlap,
    }


def write_sweep(folder: Path, res: SweepResult, classes: list[str]) -> None:
    write_tensors(folder / "sweep.safetensors", res.tensors())
    axes = {
        "axes": ["mode", "label_source", "strategy", "alpha", "class", "head"],
        "modes": res.modes,
        "label_sources": res.label_sources,
        "strategies": res.strategies,
        "alphas": res.alphas,
        "classes": classes,
    }
    write_json(folder / "sweep.json", axes)


def run(cfg: RunConfig, folder: Path) -> dict:
    device, sc = resolve_device(cfg.device), cfg.steer
    pm = load_pruned(cfg, device)
    layer = read_json(Path(cfg.out) / "extract" / "metrics.json")["layer"]
    sae = TopKSAE.load(Path(cfg.out) / "sae" / "sae", expected_d_in=pm.model.embed_dim).to(device).eval()
    train, test = load_split(cfg.out, "train"), load_split(cfg.out, "test")
    sets = latent_sets(cfg, sae, train, len(pm.data.classes), folder)
    t0 = time.time()
    tail = cached_tail(cfg, pm, layer, device)
    cache_seconds, t0 = time.time() - t0, time.time()
    grid = SweepGrid(sc.modes, sc.label_sources, sc.strategies, alpha_grid(sc))
    res = run_sweep(pm.model, sae, tail, test, sets, grid, sc.batch_size)
    sweep_seconds = time.time() - t0
    write_sweep(folder, res, pm.data.classes)
    metrics = sweep_metrics(cfg, res, sets, test, layer, pm.data.classes)
    metrics["tail"] = type(tail).__name__
    metrics["timing"] = {
        "cache_seconds": round(cache_seconds, 2),
        "sweep_seconds": round(sweep_seconds, 2),
        "points": grid.size,
        "seconds_per_point": sweep_seconds / max(1, grid.size),
    }
    write_json(folder / "metrics.json", metrics)
    top = ", ".join(
        f"{t['class']} {t['accuracy_before']:.2f}->{t['accuracy_after']:.2f} (usage "
        f"{t['usage_before']:.2f}->{t['usage_after']:.2f})"
        for t in metrics["top_classes"][:3]
    )
    print(
        f"[steer] {grid.size} points in {sweep_seconds:.1f}s ({type(tail).__name__}); overlap global/per-class "
        f"IoU {metrics['overlap']['global_vs_per_class_iou']:.3f}; top classes at alpha {sc.top_alpha}: {top}",
        flush=True,
    )
    return metrics
