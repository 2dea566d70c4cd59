"""Figures that put steering beside its baselines and its noise: the accuracy-usage frontier, the band
of random sets, and the head sensitivity of every pruned layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from headsteer.analysis.figures import _label, _save, plt


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
    alphas, true labels, headline mode), the threshold and mean-shift baselines, the unsteered model."""
    st = results["steering"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for strategy, c in st["curves"].get("true", {}).items():
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
                ls="--" if source == "predicted" else "-",
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
    """The random strategy over its R draws: mean and 2.5-97.5 % band, accuracy and usage against alpha."""
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
            label=f"2.5–97.5 % of {band['draws']} draws",
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
