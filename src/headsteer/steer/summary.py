"""What the steer stage reports from a sweep: curves with their CIs, the random band, set overlaps."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headsteer.core.classwise import class_mean
from headsteer.steer.names import Strategy
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


METRICS = ("accuracy", "head_usage")
"""The per-class CI table's metric axis."""


def _distinct_columns(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, where) of x (B, P): one column of each distinct kind, and for every column the position of
    its kind in `first`. Columns are grouped by a seeded random projection, and a group is kept only if
    its columns are equal to the element (torch.unique(dim=1) sorts the columns: ten times slower)."""
    g = torch.Generator().manual_seed(0)
    h = torch.rand(x.shape[0], dtype=torch.float64, generator=g) @ x.double()  # (P,) equal columns: equal h
    _, where = torch.unique(h, return_inverse=True)
    n = torch.arange(x.shape[1])
    first = torch.full((int(where.max()) + 1,), x.shape[1]).scatter_reduce_(0, where, n, "amin")
    if not torch.equal(x, x.index_select(1, first[where])):  # two different columns met the same h: no grouping
        return n, n
    return first, where


def per_class_cis(res: SweepResult, mode: str, boot: Bootstrap, labels: torch.Tensor, C: int) -> torch.Tensor:
    """(Ls, St, 2, A, C, 2) float32: the 95 % CI [lo, hi] of each class's change against alpha = 0, per label
    source, strategy, metric (METRICS) and alpha of `mode`, paired over the class's test images (zeros for
    a class without test images). Alphas whose resampled means are equal share one interval, computed
    once (the same numbers as one interval per alpha): a class of few images has few distinct columns,
    so many classes of few images cost about what a few classes of many images do."""
    g = res.grid
    mi, a0, A = g.modes.index(mode), g.alphas.index(0.0), len(g.alphas)
    deltas = [  # (N, A) change against alpha = 0 of each (source, strategy, metric), in the output's order
        values - values[:, a0, None]
        for li in range(len(g.label_sources))
        for si in range(len(g.strategies))
        for values in (res.sample_correct[mi, li, si].T, res.sample_usage[mi, li, si].T)
    ]
    out = torch.zeros(len(deltas), A, C, 2)
    for c in range(C):
        rows = (labels == c).nonzero().squeeze(1)
        if rows.numel():
            sub = boot.restricted(rows)
            means = torch.cat([sub.means(d[rows]) for d in deltas], dim=1)  # (B, len(deltas) * A)
            first, where = _distinct_columns(means)
            out[:, :, c] = sub.interval(means[:, first]).T[where].view(len(deltas), A, 2)
    return out.view(len(g.label_sources), len(g.strategies), len(METRICS), A, C, 2)


BAND_DRAWS = 40
"""Draws needed before the random band is a 2.5-97.5 % band; with fewer it is the range (min-max) over draws."""


def random_band(res: SweepResult, mode: str) -> dict | None:
    """Mean and band over the random draws, per alpha: the 2.5-97.5 % band with at least BAND_DRAWS draws,
    else the range over the draws (percentiles of a few draws are not a 95 % band); None without random sets."""
    if Strategy.RANDOM not in res.grid.strategies or res.draw_accuracy.shape[-1] == 0:
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


@dataclass
class Overlaps:
    """How much the strategies' latent sets share."""

    means: dict
    """Global vs per-class (and per-class-specific) sets: IoU and |∩|/|S|, means over classes."""
    top_pairs: list[dict]
    """The 10 class pairs whose per-class sets overlap most: {a, b, iou, frac}."""
    iou: torch.Tensor
    """(C, C) IoU of the per-class sets."""
    frac: torch.Tensor
    """(C, C) |S_a ∩ S_b| / |S_a| of the per-class sets."""


TOP_PAIRS = 10


def _top_pairs(iou_mat: torch.Tensor) -> list[tuple[float, int, int]]:
    """(iou, a, b) of the TOP_PAIRS pairs a < b of highest IoU, ties to the higher (a, b) first."""
    a, b = torch.triu_indices(iou_mat.shape[0], iou_mat.shape[0], 1)  # (P,) each, (a, b) ascending
    vals = iou_mat[a, b]
    if not vals.numel():
        return []
    k = min(TOP_PAIRS, vals.numel())
    kth = vals.topk(k).values[-1]
    above = (vals > kth).nonzero().squeeze(1)
    ties = (vals == kth).nonzero().squeeze(1)  # ascending (a, b): the last ones come first
    picked = torch.cat([above, ties[ties.numel() - (k - above.numel()) :]])
    return sorted(zip(vals[picked].tolist(), a[picked].tolist(), b[picked].tolist(), strict=True), reverse=True)


def set_overlaps(sets: IndexSets, classes: list[str]) -> Overlaps:
    """Global vs per-class overlap (means over classes) and the class x class overlap with its top pairs."""
    C = len(classes)
    iou_mat, frac_mat = class_overlap(sets.per_class)
    means = {
        "global_vs_per_class_iou": sum(iou(sets.global_, sets.per_class[c]) for c in range(C)) / C,
        "global_vs_per_class_frac": sum(overlap_frac(sets.global_, sets.per_class[c]) for c in range(C)) / C,
        "global_vs_per_class_specific_iou": sum(iou(sets.global_, sets.per_class_specific[c]) for c in range(C)) / C,
    }
    top = [
        {"a": classes[a], "b": classes[b], "iou": v, "frac": frac_mat[a, b].item()} for v, a, b in _top_pairs(iou_mat)
    ]
    return Overlaps(means, top, iou_mat, frac_mat)


def per_class_tables(res: SweepResult, mode: str, boot: Bootstrap, labels: torch.Tensor, ov: Overlaps) -> dict:
    """steer/per_class.safetensors: the tables that grow with the number of classes C, kept out of
    metrics.json and results.json (whose size they would set with many classes)."""
    C = ov.iou.shape[0]
    return {
        "per_class_ci": per_class_cis(res, mode, boot, labels, C),
        "class_overlap_iou": ov.iou,
        "class_overlap_frac": ov.frac,
        "class_test_images": torch.bincount(labels, minlength=C),
    }


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
