"""What the steer stage reports from a sweep: curves per mode, top classes, set overlaps."""

from __future__ import annotations

import torch

from headsteer.steer.alphas import nearest_index
from headsteer.steer.stats import IndexSets, class_overlap, iou, overlap_frac
from headsteer.steer.sweep import SweepResult, class_head_stats


def curves(res: SweepResult, mode: str) -> dict:
    """{label source: {strategy: {accuracy, head_usage, head_usage_overall: per-alpha lists}}}."""
    mi = res.modes.index(mode)
    return {
        source: {
            strategy: {
                "accuracy": res.accuracy[mi, li, si].tolist(),
                "head_usage": res.usage_layer[mi, li, si].tolist(),
                "head_usage_overall": res.usage_overall[mi, li, si].tolist(),
            }
            for si, strategy in enumerate(res.strategies)
        }
        for li, source in enumerate(res.label_sources)
    }


def top_classes(
    res: SweepResult,
    mode: str,
    alpha: float,
    n: int,
    classes: list[str],
    base: tuple,
    strategy: str = "per_class",
    source: str = "true",
) -> list[dict]:
    """Classes ranked by accuracy gain under `strategy` steering at the grid alpha nearest `alpha`.

    base: the unsteered (per-class accuracy (C,), usage (C,), per-head keep rate (C, H)).
    """
    if strategy not in res.strategies or source not in res.label_sources:
        return []
    base_acc, base_usage, base_head = base
    ai = nearest_index(res.alphas, alpha)
    ix = (res.modes.index(mode), res.label_sources.index(source), res.strategies.index(strategy), ai)
    acc_after, usage_after = res.per_class_accuracy[ix], res.per_class_usage[ix]
    head_after = res.per_class_head[ix]  # (C, H)
    gain = acc_after - base_acc
    order = sorted(range(len(classes)), key=lambda c: (-gain[c].item(), (usage_after[c] - base_usage[c]).item()))
    return [
        {
            "class": classes[c],
            "class_index": c,
            "alpha": res.alphas[ai],
            "accuracy_before": base_acc[c].item(),
            "accuracy_after": acc_after[c].item(),
            "usage_before": base_usage[c].item(),
            "usage_after": usage_after[c].item(),
            "head_keep_before": base_head[c].tolist(),
            "head_keep_after": head_after[c].tolist(),
            "heads_kept": [h for h in range(head_after.shape[1]) if head_after[c, h] >= 0.5],
        }
        for c in order[:n]
    ]


def set_overlaps(sets: IndexSets, classes: list[str]) -> tuple[dict, dict]:
    """Global vs per-class overlap (means over classes) and the class x class overlap with top pairs."""
    C = len(classes)
    iou_mat, frac_mat = class_overlap(sets.per_class)
    pairs = sorted(((iou_mat[a, b].item(), a, b) for a in range(C) for b in range(a + 1, C)), reverse=True)[:10]
    overlap = {
        "global_vs_per_class_iou": sum(iou(sets.global_, sets.per_class[c]) for c in range(C)) / C,
        "global_vs_per_class_frac": sum(overlap_frac(sets.global_, sets.per_class[c]) for c in range(C)) / C,
        "global_vs_per_class_specific_iou": sum(iou(sets.global_, sets.per_class_specific[c]) for c in range(C)) / C,
    }
    top = [{"a": classes[a], "b": classes[b], "iou": v, "frac": frac_mat[a, b].item()} for v, a, b in pairs]
    return overlap, {"iou": iou_mat.tolist(), "frac": frac_mat.tolist(), "top_pairs": top}


def unsteered(predictions: torch.Tensor, labels: torch.Tensor, layer_masks: torch.Tensor, C: int) -> tuple:
    """The unsteered model: (summary dict, (per-class accuracy, usage, per-head keep rate) tensors).

    predictions, labels: (N,); layer_masks: (N, H) masks of the steered layer."""
    base = class_head_stats(predictions, labels, layer_masks.float(), C)
    acc, usage, head = base
    return {
        "accuracy": (predictions == labels).float().mean().item(),
        "head_usage": layer_masks.float().mean().item(),
        "per_class_accuracy": acc.tolist(),
        "per_class_usage": usage.tolist(),
        "per_class_head": head.tolist(),
    }, base
