"""Top classes without selection bias: ranked by steering gain on one half of the test set, reported on the other.

Picking the best of C classes and reporting its gain on the same images mostly reports noise; here the
halves come from a seeded permutation, the ranking uses the first half only, and every reported gain
(against alpha = 0, the SAE reconstruction) comes with a paired bootstrap CI over the second half.
Only classes with test images in both halves are ranked (which classes those are depends on the labels
alone, not on any outcome); a class without an image in a half has no gain there: `null`, with the
reason, in `all_classes`.
"""

from __future__ import annotations

import torch

from headsteer.artifacts.activations import Activations
from headsteer.core.classwise import class_mean
from headsteer.steer.alphas import nearest_index
from headsteer.steer.names import LabelSource, Strategy
from headsteer.steer.sweep import SweepResult
from headsteer.steer.uncertainty import Bootstrap


def halves(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(select, report): complementary bool masks (N,) of a seeded random split."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 4242))
    select = torch.zeros(n, dtype=torch.bool)
    select[perm[: n // 2]] = True
    return select, ~select


def _class_row(c: int, name: str, rows: torch.Tensor, test: Activations, before, after, boot: Bootstrap) -> dict:
    """Numbers of class c on `rows` (bool (N,)): before / after = (correct (N,), usage (N,)) at alpha 0 / alpha."""
    r = rows & (test.labels == c)
    ci = boot.delta_ci(after[0][:, None], before[0], rows=r)[:, 0]
    usage_ci = boot.delta_ci(after[1][:, None], before[1], rows=r)[:, 0]
    return {
        "class": name,
        "class_index": c,
        "images": int(r.sum()),
        "accuracy_no_sae": (test.predictions[r] == test.labels[r]).float().mean().item(),
        "accuracy_before": before[0][r].mean().item(),
        "accuracy_after": after[0][r].mean().item(),
        "gain_ci": ci.tolist(),
        "usage_change_ci": usage_ci.tolist(),
        "usage_before": before[1][r].mean().item(),
        "usage_after": after[1][r].mean().item(),
    }


def _gains(name: str, selection: float | None, report: float | None) -> dict:
    """A class's gain on each half; None (with the reason) on a half that holds none of its images."""
    row = {"class": name, "gain_selection_half": selection, "gain_report_half": report}
    missing = [half for half, v in (("selection", selection), ("report", report)) if v is None]
    if missing:
        row["reason"] = f"no test image of this class in the {' or the '.join(missing)} half"
    return row


def top_classes_heldout(
    res: SweepResult,
    test: Activations,
    classes: list[str],
    boot: Bootstrap,
    alpha: float,
    n_top: int,
    seed: int,
    mode: str,
    strategy: str = Strategy.PER_CLASS,
    source: str = LabelSource.TRUE,
) -> dict:
    """Top `n_top` classes by accuracy gain at the grid alpha nearest `alpha`, selected on one half of the
    test set and reported on the other; `all_classes` holds the gain of every class on both halves."""
    g = res.grid
    if strategy not in g.strategies or source not in g.label_sources:
        return {"classes": [], "all_classes": []}
    mi, li, si = g.modes.index(mode), g.label_sources.index(source), g.strategies.index(strategy)
    ai, a0 = nearest_index(g.alphas, alpha), g.alphas.index(0.0)
    correct, usage = res.sample_correct[mi, li, si], res.sample_usage[mi, li, si]  # (A, N)
    select, report = halves(len(test), seed)
    gain = correct[ai] - correct[a0]  # (N,)
    C = len(classes)
    gain_sel = class_mean(gain[select], test.labels[select], C)
    gain_rep = class_mean(gain[report], test.labels[report], C)
    in_sel = torch.bincount(test.labels[select], minlength=C) > 0  # (C,) the class has images in the half
    in_rep = torch.bincount(test.labels[report], minlength=C) > 0
    order = sorted((c for c in range(C) if in_sel[c] and in_rep[c]), key=lambda c: -gain_sel[c].item())
    before, after = (correct[a0], usage[a0]), (correct[ai], usage[ai])
    top = [_class_row(c, classes[c], report, test, before, after, boot) for c in order[:n_top]]
    heads = res.sample_heads[mi, li, si][:, report].float()  # (A, N_report, H)
    head0, head1 = (class_mean(heads[a], test.labels[report], C) for a in (a0, ai))  # (C, H), report half
    for t in top:
        c = t["class_index"]
        t["head_keep_before"], t["head_keep_after"] = head0[c].tolist(), head1[c].tolist()
        t["heads_kept"] = [h for h in range(head1.shape[1]) if head1[c, h] >= 0.5]
        t["alpha"] = g.alphas[ai]
    rows = [
        _gains(classes[c], gain_sel[c].item() if in_sel[c] else None, gain_rep[c].item() if in_rep[c] else None)
        for c in range(C)
    ]
    return {
        "alpha": g.alphas[ai],
        "mode": mode,
        "strategy": strategy,
        "label_source": source,
        "selection_images": int(select.sum()),
        "report_images": int(report.sum()),
        "classes": top,
        "all_classes": rows,
    }
