"""The report's first figure, one accuracy-usage frontier with every rival and every strategy's reach, and the
sparsity path of the learned strengths (trained against untrained SAE)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from headsteer.analysis.figures import _label, _save, plt
from headsteer.steer.alphas import nearest_index
from headsteer.steer.names import LabelSource, Strategy

RIVAL_STYLE = {
    "per_head_threshold": ("#8c564b", "per-head threshold (fitted)"),
    "retrained_gate": ("#e377c2", "retrained gate (fitted)"),
    "class_threshold.true": ("#17becf", "per-class threshold, true labels (fitted)"),
    "class_threshold.predicted": ("#bcbd22", "per-class threshold, predicted class (fitted)"),
}
LEARNED_STYLE = {Strategy.GLOBAL: "#ff7f0e", "per_class.true": "#9467bd", "per_class.predicted": "#8c8cff"}


def _band(ax, usage, acc, ci, color: str, label: str, **style) -> None:
    order = np.argsort(usage)
    u, a, c = np.asarray(usage)[order], 100 * np.asarray(acc)[order], 100 * np.asarray(ci, dtype=float)[order]
    ax.plot(u, a, color=color, label=label, **style)
    if len(c):
        ax.fill_between(u, c[:, 0], c[:, 1], color=color, alpha=0.15, lw=0)


def frontier(results: dict, path: Path) -> Path:
    """Accuracy against steered-layer usage: the threshold and the fitted rivals (95 % CI bands), every point
    each frequency strategy reaches (headline mode, true labels), the learned strengths' chosen points on the
    trained SAE (solid) and the untrained one (dashed), and the unsteered model."""
    fig, (ax, gx) = plt.subplots(2, 1, figsize=(10, 8.6), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    rv, st = results["rivals"], results["steering"]
    t = rv["threshold"]
    _band(ax, t["head_usage"], t["accuracy"], t["accuracy_ci"], "k", "single threshold (no SAE)", lw=2)
    for name, r in rv["rivals"].items():
        color, label = RIVAL_STYLE.get(name, ("#444", name))
        f = r["frontier"]
        _band(ax, f["head_usage"], f["accuracy"], f["accuracy_ci"], color, label, marker="s", ms=4, lw=1.5)
    cells = results["verdicts"].get(st["mode"], {}).get(LabelSource.TRUE, {})
    for strategy, rec in cells.items():
        color, name = _label(strategy)
        reach = rec["reach"]
        ax.scatter(
            reach["head_usage"], 100 * np.asarray(reach["accuracy"]), s=9, color=color, label=f"{name} (every α)"
        )
    for kind, ls in (("trained", "-"), ("untrained", "--")):
        for variant, rec in results.get("learned", {}).get(kind, {}).items():
            pts = [p["path"][p["chosen"]] for p in rec["targets"]]
            u, a = [p["head_usage"] for p in pts], [p["accuracy"] for p in pts]
            order = np.argsort(u)
            color = LEARNED_STYLE.get(variant, "#ff7f0e")
            label = f"learned strengths, {variant} ({kind} SAE)"
            ax.plot(np.asarray(u)[order], 100 * np.asarray(a)[order], ls, color=color, marker="o", ms=3, label=label)
    u = st["unsteered"]
    ax.plot([u["head_usage"]], [100 * u["accuracy"]], "k*", ms=12, label="unsteered model")
    ax.set(
        ylabel="test accuracy (%)",
        title=f"Layer {st['layer']}: steering against what a practitioner would do instead",
        xlim=(-0.02, 1.02),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _gains(gx, results)
    return _save(fig, path)


def _gains(ax, results: dict) -> None:
    """Below the frontier: each fitted policy's accuracy minus the threshold's at the same usage (paired 95 % CI
    over test images), so what beats the threshold where stands out from the overlapping bands above."""
    ax.axhline(0, color="k", lw=1.5)
    for name, r in results["rivals"]["rivals"].items():
        f = r["frontier"]
        color = RIVAL_STYLE.get(name, ("#444", name))[0]
        _band(ax, f["head_usage"], f["gain_vs_threshold"], f["gain_vs_threshold_ci"], color, None, marker="s", ms=4)
    for kind, ls in (("trained", "-"), ("untrained", "--")):
        for variant, rec in results.get("learned", {}).get(kind, {}).items():
            pts = [p["path"][p["chosen"]] for p in rec["targets"]]
            pts = [p for p in pts if p["gain_vs_threshold"] is not None]
            u, g = [p["head_usage"] for p in pts], [p["gain_vs_threshold"] for p in pts]
            ci = [p["gain_vs_threshold_ci"] for p in pts]
            _band(ax, u, g, ci, LEARNED_STYLE.get(variant, "#ff7f0e"), None, ls=ls, marker="o", ms=3)
    ax.set(xlabel="head usage ratio (steered layer)", ylabel="accuracy − threshold's (pts)")
    ax.grid(alpha=0.3)


def sparsity_path(results: dict, path: Path) -> Path:
    """Per learned variant, at the focus target: the gain over the threshold at equal usage (pts, 95 % CI)
    against the number of latents free (m; 'all' last), trained against untrained SAE."""
    learned = results["learned"]
    variants = list(learned["trained"])
    fig, axes = plt.subplots(1, len(variants), figsize=(4.2 * len(variants), 3.6), squeeze=False)
    for ax, variant in zip(axes[0], variants, strict=True):
        for kind, color in (("trained", "#1f77b4"), ("untrained", "#7f7f7f")):
            rec = learned.get(kind, {}).get(variant)
            if rec is None:
                continue
            i = _focus_index(rec, results["learned"].get("focus", {}).get(variant))
            rows = sorted(rec["targets"][i]["path"], key=lambda r: (r["m"] == 0, r["m"]))
            x = np.arange(len(rows))
            g = 100 * np.array([r["gain_vs_threshold"] for r in rows])
            ci = 100 * np.array([r["gain_vs_threshold_ci"] for r in rows])
            ax.errorbar(x + (0.1 if kind == "untrained" else 0), g, yerr=[g - ci[:, 0], ci[:, 1] - g], fmt="o-",
                        color=color, ms=4, capsize=2, label=f"{kind} SAE")  # fmt: skip
            ax.set_xticks(x, [str(r["m"]) if r["m"] else "all" for r in rows])
        ax.axhline(0, color="k", lw=1)
        ax.set(xlabel="latents free per row of strengths (m)", ylabel="gain over the threshold (pts)",
               title=f"{variant}, target usage {rec['targets'][i]['target']:g}")  # fmt: skip
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    return _save(fig, path)


def _focus_index(rec: dict, focus: dict | None) -> int:
    targets = [t["target"] for t in rec["targets"]]
    want = focus["target"] if focus else targets[len(targets) // 2]
    return nearest_index(targets, want)
