"""Stage `steer`: latent statistics on TRAIN, index sets, the alpha sweep on TEST, and the analyses.

Writes `sweep.safetensors` (+ `sweep.json` naming the axes), `latents.safetensors` (frequencies and
index sets) and `metrics.json` (curves per mode, top classes, overlaps, timing).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from headsteer.config import RunConfig
from headsteer.data import iterate
from headsteer.engine import resolve_device
from headsteer.io import read_json, write_json, write_tensors
from headsteer.sae.topk import TopKSAE
from headsteer.stages.extract import load_activations, load_pruned
from headsteer.steer.stats import class_overlap, index_sets, iou, latent_frequencies, overlap_frac
from headsteer.steer.sweep import FinalBlockTail, GeneralTail, SweepResult, class_head_stats, run_sweep


def curves(res: SweepResult, mode: str) -> dict:
    mi = res.modes.index(mode)
    return {source: {strategy: {"accuracy": res.accuracy[mi, li, si].tolist(),
                                "head_usage": res.usage_layer[mi, li, si].tolist(),
                                "head_usage_overall": res.usage_overall[mi, li, si].tolist()}
                     for si, strategy in enumerate(res.strategies)}
            for li, source in enumerate(res.label_sources)}


def top_classes(res: SweepResult, mode: str, alpha: float, n: int, classes: list[str], base_acc: torch.Tensor,
                base_usage: torch.Tensor, base_head: torch.Tensor, strategy: str = "per_class", source: str = "true") -> list[dict]:
    """Classes ranked by accuracy gain under `strategy` steering at the grid alpha nearest `alpha`."""
    if strategy not in res.strategies or source not in res.label_sources:
        return []
    ai = min(range(len(res.alphas)), key=lambda i: abs(res.alphas[i] - alpha))
    ix = (res.modes.index(mode), res.label_sources.index(source), res.strategies.index(strategy), ai)
    acc_after, usage_after = res.per_class_accuracy[ix], res.per_class_usage[ix]
    head_after = res.per_class_head[ix]  # (C, H)
    gain = acc_after - base_acc
    order = sorted(range(len(classes)), key=lambda c: (-gain[c].item(), (usage_after[c] - base_usage[c]).item()))
    return [{"class": classes[c], "class_index": c, "alpha": res.alphas[ai],
             "accuracy_before": base_acc[c].item(), "accuracy_after": acc_after[c].item(),
             "usage_before": base_usage[c].item(), "usage_after": usage_after[c].item(),
             "head_keep_before": base_head[c].tolist(), "head_keep_after": head_after[c].tolist(),
             "heads_kept": [h for h in range(head_after.shape[1]) if head_after[c, h] >= 0.5]}
            for c in order[:n]]


def run(cfg: RunConfig, folder: Path) -> dict:
    device = resolve_device(cfg.device)
    sc = cfg.steer
    ds, model, test_tf = load_pruned(cfg, device)
    layer = read_json(Path(cfg.out) / "extract" / "metrics.json")["layer"]
    sae = TopKSAE.load(Path(cfg.out) / "sae" / "sae", expected_d_in=model.embed_dim).to(device).eval()
    train, test = load_activations(cfg.out, "train"), load_activations(cfg.out, "test")
    C, classes = len(ds.classes), ds.classes

    # latent statistics and index sets, from the TRAIN split
    with torch.inference_mode():
        active = torch.cat([(sae.encode(xb.to(device)) > 0).cpu() for xb in train["cls"].split(sc.batch_size)])
    freqs = latent_frequencies(active, train["labels"], C)
    size = sc.set_size or sae.k
    sets = index_sets(freqs, size, cfg.seed, sc.min_class_freq)
    write_tensors(folder / "latents.safetensors", {
        "freq_per_class": freqs.per_class, "freq_overall": freqs.overall, "set_per_class": sets.per_class,
        "set_global": sets.global_, "set_random": sets.random, "set_per_class_specific": sets.per_class_specific})

    # the cached tail: everything before the steered layer's mask, computed once
    t0 = time.time()

    def token_batches():
        with torch.inference_mode():
            for images, _ in iterate(ds.test, cfg.prune.eval_batch_size):
                yield model(test_tf(images).to(device), capture=(layer,)).captured[layer]

    tail = FinalBlockTail(model, token_batches()) if FinalBlockTail.supported(model, layer) \
        else GeneralTail(model, layer, token_batches())
    cache_seconds = time.time() - t0
    t0 = time.time()
    alphas = sc.alphas()
    res = run_sweep(model, sae, tail, test["cls"].to(device), test["labels"], test["predictions"], test["masks"],
                    sets, sc.modes, sc.label_sources, sc.strategies, alphas, sc.batch_size)
    sweep_seconds = time.time() - t0
    write_tensors(folder / "sweep.safetensors", res.tensors())
    write_json(folder / "sweep.json", {"axes": ["mode", "label_source", "strategy", "alpha", "class", "head"],
                                       "modes": res.modes, "label_sources": res.label_sources,
                                       "strategies": res.strategies, "alphas": res.alphas, "classes": classes})

    # analyses
    base_acc, base_usage, base_head = class_head_stats(test["predictions"], test["labels"],
                                                       test["masks"][:, layer].float(), C)
    iou_mat, frac_mat = class_overlap(sets.per_class)
    pairs = sorted(((iou_mat[a, b].item(), a, b) for a in range(C) for b in range(a + 1, C)), reverse=True)[:10]
    n_points = len(res.modes) * len(res.label_sources) * len(res.strategies) * len(alphas)
    metrics = {
        "layer": layer, "mode": sc.mode, "alphas": alphas, "set_size": size, "classes": classes,
        "tail": type(tail).__name__,
        "baseline": {"accuracy": (test["predictions"] == test["labels"]).float().mean().item(),
                     "head_usage": test["masks"][:, layer].float().mean().item(),
                     "per_class_accuracy": base_acc.tolist(), "per_class_usage": base_usage.tolist(),
                     "per_class_head": base_head.tolist()},
        "curves": curves(res, sc.mode),
        "curves_by_mode": {mode: curves(res, mode) for mode in res.modes},
        "top_classes": top_classes(res, sc.mode, sc.top_alpha, sc.top_n, classes, base_acc, base_usage, base_head),
        "top_classes_predicted": top_classes(res, sc.mode, sc.top_alpha, sc.top_n, classes, base_acc, base_usage,
                                             base_head, source="predicted"),
        "overlap": {"global_vs_per_class_iou": sum(iou(sets.global_, sets.per_class[c]) for c in range(C)) / C,
                    "global_vs_per_class_frac": sum(overlap_frac(sets.global_, sets.per_class[c]) for c in range(C)) / C,
                    "global_vs_per_class_specific_iou":
                        sum(iou(sets.global_, sets.per_class_specific[c]) for c in range(C)) / C},
        "class_overlap": {"iou": iou_mat.tolist(), "frac": frac_mat.tolist(),
                          "top_pairs": [{"a": classes[a], "b": classes[b], "iou": v, "frac": frac_mat[a, b].item()}
                                        for v, a, b in pairs]},
        "timing": {"cache_seconds": round(cache_seconds, 2), "sweep_seconds": round(sweep_seconds, 2),
                   "points": n_points, "seconds_per_point": sweep_seconds / max(1, n_points)},
    }
    write_json(folder / "metrics.json", metrics)
    top = metrics["top_classes"][:3]
    print(f"[steer] {n_points} points in {sweep_seconds:.1f}s ({type(tail).__name__}); overlap global/per-class IoU "
          f"{metrics['overlap']['global_vs_per_class_iou']:.3f}; top classes at alpha {sc.top_alpha}: " +
          ", ".join(f"{t['class']} {t['accuracy_before']:.2f}->{t['accuracy_after']:.2f} "
                    f"(usage {t['usage_before']:.2f}->{t['usage_after']:.2f})" for t in top))
    return metrics
