"""Figures that put steering beside its baselines and its noise: the accuracy-usage frontier, the band
of random sets, and the head sensitivity of every pruned layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from headsteer.analysis.figures import _label, _save, plt
from headsteer.steer.names import LabelSource


def attention_macs(usage_overall, results: dict) -> np.ndarray:
    """Attention MACs per image of the whole model for mean usage over the pruned layers (layers without
    a decision network keep every head)."""
    p, st = results["pruned"], results["steering"]
    H, L, n_pruned = p["num_heads"], p["num_layers"], len(p["pruned_layers"])
    kept = np.asarray(usage_overall) * n_pruned * H + (L - n_pruned) * H
    return kept * st["attention_macs_per_head"]


def _curve(axes, usage, overall, acc, results, style: dict) -> None:
    order = np.argsort(usage)
    axes[0].plot(np.asarray(usage)[order], 100 * np.asarray(acc)[order], **style)
    macs = attention_macs(overall, results)
    order = np.argsort(macs)
    axes[1].plot(macs[order] / 1e6, 100 * np.asarray(acc)[order], **style)


def frontier(results: dict, path: Path) -> Path:
    """Accuracy against steered-layer usage and against attention MACs per image: every strategy (all
    alphas, those walked past the grid included; true labels, headline mode), the threshold and mean-shift
    baselines, the unsteered model."""
    st = results["steering"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    cells = results.get("verdicts", {}).get(st["mode"], {}).get(LabelSource.TRUE, {})
    for strategy, c in st["curves"].get(LabelSource.TRUE, {}).items():
        c = cells.get(strategy, {}).get("reach") or c  # with reach: every alpha walked past the grid too
        color, name = _label(strategy)
        _curve(
            axes,
            c["head_usage"],
            c["head_usage_overall"],
            c["accuracy"],
            results,
            dict(color=color, marker=".", lw=1.2, label=name),
        )
    t = st["threshold"]
    _curve(
        axes,
        t["head_usage"],
        t["head_usage_overall"],
        t["accuracy"],
        results,
        dict(color="k", lw=2, ls="-", label="threshold baseline (no SAE)"),
    )
    for source, m in st["mean_shift"].items():
        _curve(
            axes,
            m["head_usage"],
            m["head_usage_overall"],
            m["accuracy"],
            results,
            dict(
                color="#9467bd",
                lw=1.5,
                ls="--" if source == LabelSource.PREDICTED else "-",
                label=f"mean-shift baseline ({source} class)",
            ),
        )
    u = st["unsteered"]
    axes[0].plot([u["head_usage"]], [100 * u["accuracy"]], "k*", ms=12, label="unsteered (no SAE)")
    axes[0].set(
        xlabel="head usage ratio (steered layer)",
        ylabel="test accuracy (%)",
        title="Accuracy at equal usage of the steered layer",
    )
    axes[1].set(
        xlabel="attention MACs per image, whole model (millions)",
        ylabel="test accuracy (%)",
        title="Accuracy against attention compute",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def random_band(results: dict, path: Path) -> Path:
    """The random strategy over its R draws: mean and band (95 % with enough draws, else the range), accuracy
    and usage against alpha."""
    st = results["steering"]
    a, band = np.array(st["alphas"]), st["random_band"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, key, scale, label in (
        (axes[0], "accuracy", 100, "test accuracy (%)"),
        (axes[1], "head_usage", 1, "head usage ratio (steered layer)"),
    ):
        b = band[key]
        ax.fill_between(
            a,
            scale * np.array(b["lo"]),
            scale * np.array(b["hi"]),
            color="#7f7f7f",
            alpha=0.25,
            label=band["name"],
        )
        ax.plot(a, scale * np.array(b["mean"]), color="#7f7f7f", label="mean over draws")
        ax.set(xlabel="amplification strength α", ylabel=label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    return _save(fig, path)


def sensitivity(results: dict, path: Path) -> Path:
    """Accuracy of every pruned layer with its heads all kept, all dropped, each dropped alone."""
    s = results["sensitivity"]
    rows = s["table"]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.8))
    y = np.arange(len(rows))
    for i, r in enumerate(rows):
        ax.plot([100 * r["all_dropped"], 100 * r["all_kept"]], [i, i], color="#bbb", lw=6, solid_capstyle="butt")
        ax.plot(100 * np.array(r["head_dropped"]), [i] * len(r["head_dropped"]), "|", color="#1f77b4", ms=12)
    ax.plot([100 * r["all_kept"] for r in rows], y, "o", color="#2ca02c", label="all heads kept")
    ax.plot([100 * r["all_dropped"] for r in rows], y, "o", color="#d62728", label="all heads dropped")
    ax.plot([], [], "|", color="#1f77b4", ms=12, label="one head dropped")
    labels = [
        f"layer {r['layer']}{' (steered)' if r['layer'] == s['steered_layer'] else ''} · {r['images']} img"
        for r in rows
    ]
    ax.set(yticks=y, yticklabels=labels, xlabel="test accuracy (%)", title="What each layer's heads are worth")
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)


def _study_usage(ax, rec: dict) -> None:
    """Steered-layer usage against alpha per strategy, with the CI of the change against alpha = 0."""
    a = np.array(rec["alphas"])
    a0 = rec["alphas"].index(0.0)
    for strategy, c in rec["curves"].items():
        color, name = _label(strategy)
        u = np.array(c["head_usage"])
        ax.plot(a, u, color=color, marker=".", lw=1.2, label=name)
        if "head_usage_delta_ci" in c:
            ci = np.array(c["head_usage_delta_ci"])  # (A, 2)
            ax.fill_between(a, u[a0] + ci[:, 0], u[a0] + ci[:, 1], color=color, alpha=0.15, lw=0)
    ax.axhline(rec["unsteered"]["head_usage"], color="k", ls=":", lw=1, label="unsteered (no SAE)")
    ax.set(xlabel="amplification strength α", ylabel="head usage ratio (this layer)", ylim=(-0.02, 1.02))


def _study_frontier(ax, rec: dict) -> None:
    """Accuracy against usage: each strategy, the threshold baseline, all heads kept / dropped."""
    for strategy, c in rec["curves"].items():
        color, name = _label(strategy)
        order = np.argsort(c["head_usage"])
        ax.plot(np.array(c["head_usage"])[order], 100 * np.array(c["accuracy"])[order], color=color, marker=".", lw=1)
    t = rec["threshold"]
    order = np.argsort(t["head_usage"])
    ax.plot(np.array(t["head_usage"])[order], 100 * np.array(t["accuracy"])[order], "k-", lw=2, label="threshold")
    s = rec["sensitivity"]
    ax.plot([1.0], [100 * s["all_kept"]], "o", color="#2ca02c", ms=8, label="all heads kept")
    ax.plot([0.0], [100 * s["all_dropped"]], "o", color="#d62728", ms=8, label="all heads dropped")
    u = rec["unsteered"]
    ax.plot([u["head_usage"]], [100 * u["accuracy"]], "k*", ms=11, label="unsteered")
    ax.set(xlabel="head usage ratio (this layer)", ylabel="test accuracy (%)", xlim=(-0.03, 1.03))


def layer_study(results: dict, path: Path) -> Path:
    """One row per steered layer: usage response to alpha (left), accuracy at equal usage beside the
    threshold baseline and the layer's sensitivity (right)."""
    study = results["by_layer"]
    fig, axes = plt.subplots(len(study), 2, figsize=(12, 4.2 * len(study)), squeeze=False, layout="constrained")
    for row, (layer, rec) in enumerate(study.items()):
        headline = int(layer) == results["steering"]["layer"]
        _study_usage(axes[row, 0], rec)
        _study_frontier(axes[row, 1], rec)
        tag = f"layer {layer}{' (headline)' if headline else ''} · {rec['images']} test images"
        axes[row, 0].set_title(f"{tag}: usage response")
        axes[row, 1].set_title(f"{tag}: accuracy at equal usage")
        for ax in axes[row]:
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="best")
    axes[0, 1].legend(fontsize=7, loc="lower right")
    return _save(fig, path)
