"""What the steer stage reports from a sweep: curves with their CIs, the random band, set overlaps."""

from __future__ import annotations

import torch

from headsteer.classwise import class_mean
from headsteer.steer.stats import IndexSets, class_overlap, iou, overlap_frac
from headsteer.steer.sweep import SweepResult
from headsteer.steer.uncertainty import Bootstrap


def _pairs(ci: torch.Tensor) -> list[list[float]]:
    """(2, A) interval -> [[lo, hi] per alpha]."""
    return ci.T.tolist()


def _by_cell(res: SweepResult, mode: str, fn) -> dict:
    """{label source: {strategy: fn((mode, source, strategy) index)}} over the sweep's grid."""
    g = res.grid
    mi = g.modes.index(mode)
    return {
        source: {strategy: fn((mi, li, si)) for si, strategy in enumerate(g.strategies)}
        for li, source in enumerate(g.label_sources)
    }


def curves(res: SweepResult, mode: str, boot: Bootstrap | None = None) -> dict:
    """{label source: {strategy: {accuracy, head_usage, head_usage_overall: per-alpha lists}}}; with a
    bootstrap, also `accuracy_delta_ci` and `head_usage_delta_ci` ([lo, hi] per alpha) of the change
    against alpha = 0, paired over test images."""
    a0 = res.grid.alphas.index(0.0)

    def cell(ix: tuple) -> dict:
        c = {
            "accuracy": res.accuracy[ix].tolist(),
            "head_usage": res.usage_layer[ix].tolist(),
            "head_usage_overall": res.usage_overall[ix].tolist(),
        }
        if boot is not None:
            correct, usage = res.sample_correct[ix].T, res.sample_usage[ix].T  # (N, A)
            c["accuracy_delta_ci"] = _pairs(boot.delta_ci(correct, correct[:, a0]))
            c["head_usage_delta_ci"] = _pairs(boot.delta_ci(usage, usage[:, a0]))
        return c

    return _by_cell(res, mode, cell)


def per_class_cis(res: SweepResult, mode: str, boot: Bootstrap, labels: torch.Tensor, C: int) -> dict:
    """{source: {strategy: {"accuracy" | "head_usage": (A, C, 2) CI of each class's change against alpha = 0}}}."""
    a0 = res.grid.alphas.index(0.0)

    def by_class(values: torch.Tensor) -> list:  # values (N, A)
        per_class = [boot.delta_ci(values, values[:, a0], rows=labels == c) for c in range(C)]  # (2, A) each
        return torch.stack(per_class).permute(2, 0, 1).tolist()  # (A, C, 2)

    def cell(ix: tuple) -> dict:
        return {"accuracy": by_class(res.sample_correct[ix].T), "head_usage": by_class(res.sample_usage[ix].T)}

    return _by_cell(res, mode, cell)


BAND_DRAWS = 40
"""Draws needed before the random band is a 2.5-97.5 % band; with fewer it is the range (min-max) over draws."""


def random_band(res: SweepResult, mode: str) -> dict | None:
    """Mean and band over the random draws, per alpha: the 2.5-97.5 % band with at least BAND_DRAWS draws,
    else the range over the draws (percentiles of a few draws are not a 95 % band); None without random sets."""
    if "random" not in res.grid.strategies or res.draw_accuracy.shape[-1] == 0:
        return None
    mi = res.grid.modes.index(mode)
    R = res.draw_accuracy.shape[-1]
    q = torch.tensor([0.025, 0.975] if R >= BAND_DRAWS else [0.0, 1.0])
    name = f"2.5–97.5 % of {R} draws" if R >= BAND_DRAWS else f"range over {R} draws"
    out = {"draws": R, "name": name}
    for name, t in (("accuracy", res.draw_accuracy[mi]), ("head_usage", res.draw_usage[mi])):  # (A, R)
        band = torch.quantile(t, q, dim=1)
        out[name] = {"mean": t.mean(1).tolist(), "lo": band[0].tolist(), "hi": band[1].tolist()}
    return out


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


def unsteered(predictions: torch.Tensor, labels: torch.Tensor, layer_masks: torch.Tensor, C: int) -> dict:
    """The unsteered model (no SAE): accuracy and steered-layer usage, overall and per class."""
    head = class_mean(layer_masks.float(), labels, C)  # (C, H)
    correct = (predictions == labels).float()
    return {
        "accuracy": correct.mean().item(),
        "head_usage": layer_masks.float().mean().item(),
        "per_class_accuracy": class_mean(correct, labels, C).tolist(),
        "per_class_usage": head.mean(1).tolist(),
        "per_class_head": head.tolist(),
    }
