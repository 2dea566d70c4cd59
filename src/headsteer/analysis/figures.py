"""One function per figure. Each takes plain numbers (lists / tensors) and a path, writes a PNG."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from headsteer.artifacts.atomic import write_bytes  # noqa: E402
from headsteer.steer.names import LabelSource, Strategy

STYLE = {
    Strategy.PER_CLASS: ("#1f77b4", "per-class frequent"),
    Strategy.GLOBAL: ("#d62728", "global frequent"),
    Strategy.RANDOM: ("#7f7f7f", Strategy.RANDOM.value),
    Strategy.PER_CLASS_SPECIFIC: ("#2ca02c", "per-class specific (lift)"),
}
DPI = 110


def _save(fig, path: Path) -> Path:
    """Render to PNG bytes in memory, then write them through headsteer's one writer."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return path


def _label(strategy: str) -> tuple[str, str]:
    return STYLE.get(strategy, ("#000000", strategy))


def _min_span(ax, span: float) -> None:
    """Widen the y range to at least `span` so tiny changes do not look like large ones."""
    lo, hi = ax.get_ylim()
    if hi - lo < span:
        mid = (lo + hi) / 2
        ax.set_ylim(mid - span / 2, mid + span / 2)


def _ci_band(axes, a: np.ndarray, keep: np.ndarray, c: dict, color: str) -> None:
    """Shade the 95 % CI of the change against alpha = 0 around the alpha = 0 value (paired bootstrap)."""
    i0 = int(np.argmin(np.abs(a)))
    for ax, key, scale in ((axes[0], "accuracy", 100), (axes[1], "head_usage", 1)):
        ci = c.get(f"{key}_delta_ci")
        if ci is None:
            continue
        ci = np.array(ci)[keep]  # (A, 2)
        ref = scale * c[key][i0]
        ax.fill_between(a[keep], ref + scale * ci[:, 0], ref + scale * ci[:, 1], color=color, alpha=0.12, lw=0)


def steering_curves(alphas, curves: dict, baseline: dict, path: Path, alpha_range=(0.0, None), title: str = "") -> Path:
    """Paper Fig. 2 (and Fig. 4 with alpha_range=(None, 0)): accuracy and steered-layer usage vs alpha; shaded:
    the 95 % paired-bootstrap CI of the change against alpha = 0 (true-label curves)."""
    a = np.array(alphas)
    lo, hi = alpha_range
    keep = np.ones_like(a, dtype=bool)
    if lo is not None:
        keep &= a >= lo - 1e-9
    if hi is not None:
        keep &= a <= hi + 1e-9
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for source, ls in ((LabelSource.TRUE, "-"), (LabelSource.PREDICTED, "--")):
        for strategy, c in curves.get(source, {}).items():
            if source == LabelSource.PREDICTED and strategy in (Strategy.GLOBAL, Strategy.RANDOM):
                continue  # identical to the true-label curves
            color, name = _label(strategy)
            suffix = " (predicted class)" if source == LabelSource.PREDICTED else ""
            axes[0].plot(a[keep], 100 * np.array(c["accuracy"])[keep], ls, color=color, marker=".", label=name + suffix)
            axes[1].plot(a[keep], np.array(c["head_usage"])[keep], ls, color=color, marker=".", label=name + suffix)
            if source == LabelSource.TRUE:
                _ci_band(axes, a, keep, c, color)
    axes[0].axhline(100 * baseline["accuracy"], color="k", lw=0.8, ls=":", label="unsteered")
    axes[1].axhline(baseline["head_usage"], color="k", lw=0.8, ls=":", label="unsteered")
    axes[0].set(xlabel="amplification strength α", ylabel="test accuracy (%)", title="Accuracy")
    _min_span(axes[0], 2.0)
    axes[1].set(
        xlabel="amplification strength α",
        ylabel="head usage ratio (steered layer)",
        title="Head usage",
        ylim=(-0.02, 1.02),
    )
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def head_patterns(top: list[dict], num_heads: int, path: Path) -> Path:
    """Paper Fig. 3: keep rate of each head (rows h0..) for the top classes, before and after steering."""
    if not top:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(
            0.5,
            0.5,
            "no top classes: no per-class strategy swept, or no class\nwith test images in both halves",
            ha="center",
        )
        ax.axis("off")
        return _save(fig, path)
    before = np.array([t["head_keep_before"] for t in top]).T  # (H, n)
    after = np.array([t["head_keep_after"] for t in top]).T
    cols = [
        f"{t['class']}\nacc {100 * t['accuracy_before']:.0f}→{100 * t['accuracy_after']:.0f}%\n"
        f"usage {t['usage_before']:.2f}→{t['usage_after']:.2f}"
        for t in top
    ]
    fig, axes = plt.subplots(1, 2, figsize=(2.2 * len(top) * 2 + 1, 0.55 * num_heads + 2.2))
    for ax, data, name in (
        (axes[0], before, "before steering"),
        (axes[1], after, f"after per-class steering (α={top[0]['alpha']})"),
    ):
        im = ax.imshow(data, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, fontsize=8)
        ax.set_yticks(range(num_heads), [f"h{h}" for h in range(num_heads)])
        ax.set_title(name)
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                ax.text(
                    j,
                    i,
                    f"{data[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if data[i, j] > 0.6 else "black",
                )
    fig.colorbar(im, ax=axes, label="fraction of the class's test images keeping the head", shrink=0.8)
    return _save(fig, path)


MATRIX_CLASSES = 60
"""Up to this many classes Fig. 5 is the class x class matrix; with more, the distribution over pairs."""


def _pairs_text(ax, pairs: list[dict]) -> None:
    text = "most similar pairs (IoU):\n" + "\n".join(f"{p['a']} / {p['b']}: {p['iou']:.2f}" for p in pairs[:6])
    ax.text(1.25, 0.0, text, transform=ax.transAxes, fontsize=8, va="bottom", family="monospace")


def _overlap_histogram(m: np.ndarray, pairs: list[dict], path: Path) -> Path:
    """Many classes: how the IoU of the per-class sets is distributed over all class pairs."""
    C = m.shape[0]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(m[np.triu_indices(C, 1)], bins=np.linspace(0, 1, 21), color="#1f77b4")
    ax.set(yscale="log", xlabel="IoU of per-class top-|S| latent sets", ylabel="class pairs", xlim=(0, 1))
    ax.set_title(f"Overlap of per-class latent sets: all {C * (C - 1) // 2} pairs of {C} classes")
    _pairs_text(ax, pairs)
    return _save(fig, path)


def class_overlap_matrix(iou, classes: list[str], pairs: list[dict], path: Path) -> Path:
    """Paper Fig. 5: class x class IoU of the per-class latent sets, with the most similar pairs (more than
    MATRIX_CLASSES classes: the IoU's distribution over class pairs)."""
    m = np.asarray(iou, dtype=np.float64)
    C = len(classes)
    if C > MATRIX_CLASSES:
        return _overlap_histogram(m, pairs, path)
    size = min(14, 4 + 0.12 * C)
    fig, ax = plt.subplots(figsize=(size + 3, size))
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1)
    fs = 8 if C <= 20 else 4
    ax.set_xticks(range(C), classes, rotation=90, fontsize=fs)
    ax.set_yticks(range(C), classes, fontsize=fs)
    if C <= 20:
        for i in range(C):
            for j in range(C):
                ax.text(
                    j,
                    i,
                    f"{m[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if m[i, j] < 0.6 else "black",
                )
    fig.colorbar(im, ax=ax, label="IoU of per-class top-|S| latent sets", shrink=0.8)
    _pairs_text(ax, pairs)
    ax.set_title("Overlap of per-class latent sets")
    return _save(fig, path)


def mode_comparison(alphas, curves_by_mode: dict, baseline: dict, path: Path) -> Path:
    """Accuracy and usage vs alpha for each reading of Eq. 5 (true labels)."""
    modes = list(curves_by_mode)
    fig, axes = plt.subplots(2, len(modes), figsize=(4.2 * len(modes), 7), squeeze=False, sharey="row")
    a = np.array(alphas)
    for j, mode in enumerate(modes):
        for strategy, c in curves_by_mode[mode].get(LabelSource.TRUE, {}).items():
            color, name = _label(strategy)
            axes[0, j].plot(a, 100 * np.array(c["accuracy"]), color=color, label=name)
            axes[1, j].plot(a, np.array(c["head_usage"]), color=color, label=name)
        axes[0, j].axhline(100 * baseline["accuracy"], color="k", lw=0.8, ls=":")
        axes[1, j].axhline(baseline["head_usage"], color="k", lw=0.8, ls=":")
        axes[0, j].set_title(f"mode: {mode}")
        axes[1, j].set_xlabel("amplification strength α")
        for i in range(2):
            axes[i, j].axvline(0, color="k", lw=0.5)
            axes[i, j].grid(alpha=0.3)
    axes[0, 0].set_ylabel("test accuracy (%)")
    _min_span(axes[0, 0], 2.0)
    axes[1, 0].set_ylabel("head usage ratio (steered layer)")
    axes[1, -1].legend(fontsize=8)
    return _save(fig, path)


def pruning_overview(keep_rate_per_head, usage_per_layer, target: float, path: Path) -> Path:
    """The pruned model: keep rate per (layer, head) and usage per layer."""
    k = np.array(keep_rate_per_head)  # (L, H)
    L, H = k.shape
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * L + 2), gridspec_kw={"width_ratios": [1.2, 1]})
    im = axes[0].imshow(k, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    axes[0].set_xticks(range(H), [f"h{h}" for h in range(H)])
    axes[0].set_yticks(range(L), [f"layer {i}" for i in range(L)])
    for i in range(L):
        for j in range(H):
            axes[0].text(
                j,
                i,
                f"{k[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if k[i, j] > 0.6 else "black",
            )
    axes[0].set_title("fraction of test images keeping each head")
    fig.colorbar(im, ax=axes[0], shrink=0.8)
    axes[1].barh(range(L), usage_per_layer, color="#1f77b4")
    axes[1].axvline(target, color="r", ls="--", label=f"target γ={target}")
    axes[1].set(
        yticks=range(L),
        yticklabels=[f"layer {i}" for i in range(L)],
        xlim=(0, 1.05),
        xlabel="head usage ratio",
        title="usage per layer",
    )
    axes[1].invert_yaxis()
    axes[1].legend(fontsize=8)
    return _save(fig, path)


def latent_card(
    latent: int,
    images,
    activations,
    freq_per_class,
    classes: list[str],
    overall_freq: float,
    path: Path,
    mean=(0.5,),
    std=(0.5,),
) -> Path:
    """Top-activating test images, the class histogram of firing frequency, and the overall frequency."""
    n = len(images)
    fig = plt.figure(figsize=(11, 2.6))
    grid = fig.add_gridspec(1, n + 4)
    for i in range(n):
        ax = fig.add_subplot(grid[0, i])
        img = np.asarray(images[i], dtype=np.float32) / 255.0  # (C, H, W) uint8 -> [0, 1]
        ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray" if img.shape[0] == 1 else None)
        ax.set_title(f"{activations[i]:.2f}", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(grid[0, n + 1 :])
    f = np.array(freq_per_class)
    order = np.argsort(-f)[:10]
    ax.barh(range(len(order)), f[order], color="#1f77b4")
    ax.set_yticks(range(len(order)), [classes[c] for c in order], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="firing frequency in class (train)")
    fig.suptitle(
        f"latent {latent} — fires on {100 * overall_freq:.1f} % of training images; "
        f"top-{n} test activations (value above each)",
        fontsize=9,
    )
    return _save(fig, path)
