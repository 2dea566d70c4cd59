"""Stage `report`: the paper's figures 2-5, a mode comparison, the pruned model's head map, latent
cards, `results.json`, `results.md` and one self-contained `report.html` (images embedded)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from headsteer.analysis import explorer
from headsteer.analysis import figures as fig
from headsteer.analysis import rival_figures as rfig
from headsteer.analysis import trust_figures as tfig
from headsteer.analysis.report import write_html, write_markdown
from headsteer.analysis.results import build_results, findings, verdict
from headsteer.artifacts.activations import load_split
from headsteer.artifacts.integrity import read_record
from headsteer.artifacts.io import git_sha, read_json, read_tensors, write_json
from headsteer.config import RunConfig
from headsteer.data import load_dataset
from headsteer.model.build import model_name
from headsteer.sae.topk import TopKSAE


def test_codes(cfg: RunConfig, layer: int) -> torch.Tensor:
    """(N, n) SAE codes of the test CLS at `layer`."""
    sae = TopKSAE.of_run(cfg.out, layer).eval()
    test = load_split(cfg.out, "test", layer)
    with torch.inference_mode():
        return torch.cat([sae.encode(x) for x in test.cls.split(4096)])


def explorer_data(cfg: RunConfig, results: dict, z: torch.Tensor, ds, per_class: dict) -> dict:
    """The interactive explorer's data (analysis.explorer): steering points, alive latents, thumbnails."""
    steer_dir = Path(cfg.out) / "steer"
    lat = read_tensors(steer_dir / "latents.safetensors")
    doc, used = explorer.latents(lat, z, ds.classes)
    sweep, axes = read_tensors(steer_dir / "sweep.safetensors"), read_json(steer_dir / "sweep.json")
    counts, ci = per_class["class_test_images"], per_class["per_class_ci"]
    return {
        "steering": explorer.steering(results, sweep, axes, counts, ci),
        "latents": doc,
        "sprite": explorer.sprite(ds.test.images[used]),
        "effect_alpha": read_json(steer_dir / "metrics.json")["head_effect"]["alpha"],
    }


def latent_cards(
    cfg: RunConfig, steer: dict, folder: Path, z: torch.Tensor, ds, per_class: int = 2, n_images: int = 8
) -> list[Path]:
    """Cards for the most class-specific latents (by lift) in the per-class sets of the top classes."""
    top = steer["top_classes"][:3]
    if not top:
        return []
    lat = read_tensors(Path(cfg.out) / "steer" / "latents.safetensors")
    freq_c, freq = lat["freq_per_class"], lat["freq_overall"]
    lift = freq_c / freq.clamp(min=1e-12)
    chosen: list[int] = []
    for t in top:
        c = t["class_index"]
        members = lat["set_per_class"][c]
        for i in sorted(members.tolist(), key=lambda i: -lift[c, i].item()):
            if i not in chosen:
                chosen.append(i)
                if sum(1 for j in chosen if j in members.tolist()) >= per_class:
                    break
    paths = []
    for i in chosen:
        vals, idx = z[:, i].topk(n_images)
        paths.append(
            fig.latent_card(
                i,
                [ds.test.images[j].numpy() for j in idx.tolist()],
                vals.tolist(),
                freq_c[:, i].tolist(),
                ds.classes,
                freq[i].item(),
                folder / f"latent_{i}.png",
            )
        )
    return paths


def trust_figures(results: dict, folder: Path) -> list[tuple[str, Path, str]]:
    """(title, PNG path, caption) of the figures that put steering beside its baselines: the report's first."""
    st = results["steering"]
    return [
        (
            "Steering beside its baselines: accuracy at equal head usage",
            tfig.frontier(results, folder / "fig_frontier.png"),
            f"Every α of each strategy ({st['mode']}, true-label class sets) against the threshold baseline (a "
            "constant shift of the steered layer's decision logits, no SAE) and the mean-shift baseline "
            "(x + α(μ_c − μ), no SAE). A strategy is worth its SAE only where it lies above these lines.",
        ),
        (
            "What each layer's heads are worth",
            tfig.sensitivity(results, folder / "fig_sensitivity.png"),
            "Test accuracy with every head of a layer kept, dropped, or one head dropped (other layers decide as "
            "usual). A small kept-vs-dropped range leaves steering little accuracy to move.",
        ),
    ]


def lead_figures(results: dict, folder: Path) -> list[tuple[str, Path, str]]:
    """The figures right under the answer: the frontier of every rival and strategy, the sparsity path."""
    out = []
    if "rivals" in results:
        out.append(
            (
                "Steering against what a practitioner would do instead",
                rfig.frontier(results, folder / "fig_rivals.png"),
                "Accuracy against the steered layer's head usage on the test images. Lines with 95 % CI bands: the "
                "single threshold and the rivals fitted on training images (per-head threshold, retrained gate, "
                "per-class threshold). Dots: every α each frequency strategy reaches (headline mode, true labels). "
                "Circles: learned latent strengths at each target usage (solid: trained SAE; dashed: untrained).",
            )
        )
    if "trained" in results.get("learned", {}):
        out.append(
            (
                "The sparsity path of learned strengths",
                rfig.sparsity_path(results, folder / "fig_sparsity_path.png"),
                "Gain over the threshold at equal usage (95 % paired CI) against the number of latents free, at the "
                "focus target usage, on the trained SAE and on the untrained control.",
            )
        )
    return out


def study_figure(results: dict, folder: Path) -> list[tuple[str, Path, str]]:
    """The layer study, when more than one layer was steered."""
    if "by_layer" not in results:
        return []
    caption = (
        "Per steered layer (true-label class sets, headline mode): left, that layer's head usage against α "
        "(shaded: 95 % paired-bootstrap CI of the change against α = 0); right, accuracy against that layer's "
        "usage for every α, the threshold baseline (black) and the layer's heads all kept / all dropped."
    )
    return [("Layer study: steering at every layer", tfig.layer_study(results, folder / "fig_layers.png"), caption)]


def band_figure(results: dict, folder: Path) -> list[tuple[str, Path, str]]:
    """The random sets' band over draws, when random sets were swept."""
    band = results["steering"].get("random_band")
    if not band:
        return []
    caption = (
        f"Mean and {band['name']} of the random set (independent draws, same |S|, same mode); a 2.5–97.5 % band "
        "needs at least 40 draws (steer.random_draws)."
    )
    return [
        (
            f"Random latent sets: {band['name']}",
            tfig.random_band(results, folder / "fig_random_band.png"),
            caption,
        )
    ]


def make_figures(
    prune: dict, steer: dict, results: dict, folder: Path, iou: torch.Tensor
) -> list[tuple[str, Path, str]]:
    """(title, PNG path, caption) of every figure of the report."""
    st = results["steering"]
    base = st["unsteered"]
    classes = results["classes"]
    return (
        trust_figures(results, folder)
        + study_figure(results, folder)
        + band_figure(results, folder)
        + [
            (
                "The pruned model",
                fig.pruning_overview(
                    prune["pruned"]["keep_rate_per_head"],
                    prune["pruned"]["head_usage_per_layer"],
                    prune["target_usage"],
                    folder / "fig_pruning.png",
                ),
                "Per-image head decisions of the pruned model on the test set (eval mode, deterministic masks).",
            ),
            (
                "Fig. 2 — steering strength vs accuracy and head usage",
                fig.steering_curves(st["alphas"], st["curves"], base, folder / "fig2_steering.png", (0.0, None)),
                f"Steered layer {st['layer']}, mode {st['mode']}; solid: true-label class sets (paper), dashed: "
                "predicted class. Dotted: unsteered model. α = 0 is the SAE reconstruction. Shaded: 95 % "
                "paired-bootstrap CI of the change against α = 0.",
            ),
            (
                "Fig. 3 — head patterns of the top classes",
                fig.head_patterns(steer["top_classes"], prune["num_heads"], folder / "fig3_heads.png"),
                f"Top classes by accuracy gain under per-class steering at α = {steer['top_alpha']}, chosen on one "
                "half of the test set; accuracy, usage and head patterns measured on the other half; cells: "
                "fraction of the class's test images keeping the head.",
            ),
            (
                "Fig. 4 — negative steering",
                fig.steering_curves(st["alphas"], st["curves"], base, folder / "fig4_negative.png", (None, 0.0)),
                "α < 0 suppresses the latents of S.",
            ),
            (
                "Readings of Eq. 5 compared",
                fig.mode_comparison(st["alphas"], st["curves_by_mode"], base, folder / "fig_modes.png"),
                "pre_topk: amplify before top-k; post_topk: scale the sparse code; "
                "additive: add α·max(z) to S, then top-k.",
            ),
            (
                "Fig. 5 — overlap of per-class latent sets",
                fig.class_overlap_matrix(
                    iou,
                    classes,
                    steer["class_overlap"]["top_pairs"],
                    folder / "fig5_overlap.png",
                ),
                "IoU between the per-class top-|S| frequent latent sets (train set).",
            ),
        ]
    )


def run(cfg: RunConfig, folder: Path) -> dict:
    run_dir = Path(cfg.out)
    prune, sae, steer = (read_json(run_dir / s / "metrics.json") for s in ("prune", "sae", "steer"))
    results = build_results(prune, sae, steer)
    results["model"] = model_name(cfg.model)  # the geometry really trained, when the config overrode timm's
    lines, top = findings(results), verdict(results)
    per_class = read_tensors(run_dir / "steer" / "per_class.safetensors")
    figures = make_figures(prune, steer, results, folder, per_class["class_overlap_iou"])
    z, ds = test_codes(cfg, steer["layer"]), load_dataset(cfg.data)
    cards = latent_cards(cfg, steer, folder, z, ds)
    command = read_record(folder / "config.json").get("command") or f"headsteer run CONFIG --out {cfg.out}"
    meta = {"git_sha": git_sha(), "created": time.strftime("%Y-%m-%d %H:%M"), "command": command}
    write_json(folder / "results.json", results)
    write_markdown(folder / "results.md", results, steer, top + lines, command)
    explore = explorer_data(cfg, results, z, ds, per_class)
    lead = lead_figures(results, folder)
    write_html(folder / "report.html", results, steer, lines, top, figures, cards, meta, explore, lead)
    print(f"[report] {folder / 'report.html'}")
    return results
