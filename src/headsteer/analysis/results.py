"""The numbers of a run (results.json, schema in docs/results-schema.md) and what they say, in words."""

from __future__ import annotations

from headsteer.analysis.answer import comparisons, headline, label, table
from headsteer.analysis.paper_table import PAPER
from headsteer.analysis.rival_answer import rival_clause, strongest
from headsteer.prune.evaluate import TARGET_SLACK
from headsteer.steer.alphas import nearest_index
from headsteer.steer.names import LabelSource
from headsteer.steer.verdict import Comparison, sentence


def build_results(prune: dict, sae: dict, steer: dict) -> dict:
    """The results.json document (fractions in [0, 1]); see docs/results-schema.md."""
    sae_keys = ("d_in", "d_sae", "k", "mse", "fvu", "l0", "dead_fraction")
    rc = sae["reconstruction"]
    steering_keys = ("layer", "mode", "alphas", "curves", "curves_by_mode", "random_band", "threshold")
    steering_keys += ("mean_shift", "top_alpha", "top_classes", "attention_macs_per_head")
    results = {
        "dataset": prune["dataset"],
        "model": prune["model"],
        "classes": prune["classes"],
        "dense": {"accuracy": prune["dense"]["accuracy"]},
        "pruned": {
            "accuracy": prune["pruned"]["accuracy"],
            "head_usage": prune["pruned"]["head_usage"],
            "head_usage_per_layer": prune["pruned"]["head_usage_per_layer"],
            "target_usage": prune["target_usage"],
            "num_heads": prune["num_heads"],
            "num_layers": prune["num_layers"],
            "pruned_layers": prune["pruned_layers"],
        },
        "sae": {k: sae[k] for k in sae_keys}
        | {
            "reconstruction": {"accuracy_delta": rc["accuracy_delta"], "head_usage_delta": rc["head_usage_layer_delta"]}
        },
        "steering": {k: steer[k] for k in steering_keys}
        | {
            "unsteered": steer["baseline"],
            "top_classes_selection": {k: v for k, v in steer["top_classes_table"].items() if k != "classes"},
        },
        "verdicts": steer["verdicts"],
        "judging": steer["judging"],
        "sensitivity": steer["sensitivity"],
        "overlap": {k: steer["overlap"][k] for k in ("global_vs_per_class_iou", "global_vs_per_class_frac")},
    }  # per-class CIs and the class x class overlap: steer/per_class.safetensors (they grow with C)
    if len(steer.get("layer_study", {})) > 1:  # one steered layer: the one-layer schema alone
        results["by_layer"] = {  # timings stay in steer/metrics.json: results.json repeats bitwise
            layer: {k: v for k, v in rec.items() if k != "seconds"} for layer, rec in steer["layer_study"].items()
        }
    for key in ("rivals", "learned", "untrained_sae", "gate_readout"):
        if key in steer:
            results[key] = steer[key]
    if "rivals" in results:
        results["rivals"]["layer"] = steer["layer"]
        name = strongest(results)
        results["rivals"]["answer"] = {
            "strongest": name,
            "sentence": rival_clause(results, comparisons(steer["verdicts"])),
        }
    results["pruned"]["target_missed"] = target_note(results["pruned"])
    results["answer"] = {"sentence": headline(results), "table": table(results)}
    return results


def target_note(pruned: dict) -> str | None:
    """A warning when pruning missed its usage target by more than TARGET_SLACK; None when it did not."""
    usage, target = pruned["head_usage"], pruned["target_usage"]
    if abs(usage - target) <= TARGET_SLACK:
        return None
    return (
        f"Pruning missed its target: final head usage {usage:.3f} against prune.target_usage {target} (more than "
        f"{TARGET_SLACK} off), so the steering comparison may be void: the steered layer starts where it should not, "
        "and ranges of usage may not overlap the baselines'. Train longer (prune.joint_epochs) or raise "
        "prune.usage_weight, then re-run."
    )


def study_rows(results: dict) -> list[dict]:
    """Per layer of the study: sensitivity, the usage and accuracy change at the largest alpha on every
    layer's grid, with their CIs, and the verdict against the threshold, per strategy (empty for one layer)."""
    study = results.get("by_layer", {})
    if not study:
        return []
    at_alpha = max(set.intersection(*(set(rec["alphas"]) for rec in study.values())))
    rows = []
    for layer, rec in study.items():
        ai = rec["alphas"].index(at_alpha)
        a0 = rec["alphas"].index(0.0)
        per_strategy = {
            strategy: {
                "usage": [c["head_usage"][a0], c["head_usage"][ai]],
                "usage_delta_ci": c["head_usage_delta_ci"][ai],
                "accuracy_delta": c["accuracy"][ai] - c["accuracy"][a0],
                "accuracy_delta_ci": c["accuracy_delta_ci"][ai],
                "vs_threshold": rec["verdicts"][strategy]["vs_threshold"],
            }
            for strategy, c in rec["curves"].items()
        }
        sens = rec["sensitivity"]
        rows.append(
            {
                "layer": int(layer),
                "images": rec["images"],
                "alpha": rec["alphas"][ai],
                "range_pts": sens["range_pts"],
                "unsteered": rec["unsteered"],
                "strategies": per_strategy,
            }
        )
    return rows


def _at(alphas: list[float], values: list, alpha: float):
    return values[nearest_index(alphas, alpha)]


def verdict_lines(results: dict, mode: str | None = None) -> list[str]:
    """One sentence per comparison of `mode` (default: the headline mode) and baseline, with the CI and
    what was at stake, then the low-usage verdicts."""
    mode = mode or results["steering"]["mode"]
    out, low = [], []
    for m, source, strategy, v in comparisons({mode: results["verdicts"][mode]}):
        who = label(m, source, strategy)
        for baseline, name in (("vs_threshold", "threshold"), ("vs_mean_shift", "mean-shift")):
            if v.get(baseline):
                out.append(sentence(who, name, Comparison(**v[baseline])))
        if v.get("low_usage"):
            lu = v["low_usage"]
            low.append(
                sentence(f"{who}, below usage {lu['usage_limit']:.2f},", "threshold", Comparison(**lu["vs_threshold"]))
            )
    return out + low


def sensitivity_line(results: dict) -> str:
    s = results["sensitivity"]
    i = s["layers"].index(s["steered_layer"])
    line = (
        f"Steered layer {s['steered_layer']}: all heads kept {100 * s['all_kept'][i]:.2f} %, all dropped "
        f"{100 * s['all_dropped'][i]:.2f} % (a {s['range_pts']:+.2f} pt difference)."
    )
    o = s.get("oracle")
    if o:
        line += (
            f" Over all {o['patterns']} fixed head patterns ({o.get('images', 'all')} test images) accuracy ranges "
            f"{100 * o['min_accuracy']:.2f}–{100 * o['max_accuracy']:.2f} %; the share of images some pattern gets "
            f"right is {100 * o['any_pattern_right']:.2f} % (every pattern: {100 * o['every_pattern_right']:.2f} %), "
            "a count that peeks at the label, not a ceiling any policy can reach (the retrained gate is the one that "
            "can)."
        )
    if not s["can_show_accuracy_effects"]:
        line += (
            " Kept vs dropped differ by under 1 pt: accuracy effects of steering this layer are hard to "
            "tell from noise; compare head usage and the baselines instead."
        )
    return line


def change_lines(results: dict) -> list[str]:
    """Steered-layer usage and accuracy change at the largest alpha against alpha = 0, with 95 % CIs."""
    st = results["steering"]
    alphas, a_max = st["alphas"], max(st["alphas"])
    parts = []
    for strategy, c in st["curves"].get(LabelSource.TRUE, {}).items():
        i, i0 = nearest_index(alphas, a_max), alphas.index(0.0)
        lo, hi = c["accuracy_delta_ci"][i]
        ulo, uhi = c["head_usage_delta_ci"][i]
        parts.append(
            f"{strategy}: usage {c['head_usage'][i] - c['head_usage'][i0]:+.3f} [{ulo:+.3f}, {uhi:+.3f}], "
            f"accuracy {100 * (c['accuracy'][i] - c['accuracy'][i0]):+.2f} pts [{100 * lo:+.2f}, {100 * hi:+.2f}]"
        )
    if not parts:
        return []
    return [f"At α = {a_max} ({st['mode']}, true labels) against α = 0, with 95 % CIs: " + "; ".join(parts) + "."]


def heldout_line(results: dict) -> str | None:
    st = results["steering"]
    top, sel = st["top_classes"], st["top_classes_selection"]
    if not top:
        return None
    parts = [
        f"{t['class']} {100 * (t['accuracy_after'] - t['accuracy_before']):+.1f} pts "
        f"[{100 * t['gain_ci'][0]:+.1f}, {100 * t['gain_ci'][1]:+.1f}]"
        for t in top
    ]
    return (
        f"Top classes by per-class steering gain at α = {sel['alpha']}, chosen on {sel['selection_images']} test "
        f"images and measured on the other {sel['report_images']}: " + ", ".join(parts) + "."
    )


def study_lines(results: dict) -> list[str]:
    """One sentence per layer of the layer study: its heads' worth, and each strategy against the threshold."""
    out = []
    for r in study_rows(results):
        calls = [f"{s} {v['vs_threshold']['call']}" for s, v in r["strategies"].items()]
        out.append(
            f"Layer {r['layer']} ({r['images']} test images): heads worth {r['range_pts']:+.2f} pts (all kept − "
            f"all dropped); against the threshold baseline at equal usage: " + ", ".join(calls) + "."
        )
    return out


def verdict(results: dict) -> list[str]:
    """What the report opens with after the answer: the steered layer's sensitivity, each headline-mode
    verdict, the layer study (a missed pruning target comes before the answer: `opening`)."""
    return [sensitivity_line(results), *verdict_lines(results), *study_lines(results)]


def opening(results: dict) -> list[str]:
    """The first lines of results.md: the missed-target warning, if any, then the answer."""
    missed = results["pruned"].get("target_missed")
    return [*([missed] if missed else []), f"Answer: {results['answer']['sentence']}"]


def findings(results: dict) -> list[str]:
    """Plain-language findings computed from the numbers, whichever way they came out (after the verdict)."""
    st = results["steering"]
    alphas, curves = st["alphas"], st["curves"].get(LabelSource.TRUE, {})
    out = change_lines(results)
    held = heldout_line(results)
    if held:
        out.append(held)
    a_min = min(alphas)
    if a_min < 0 and curves:
        i0 = alphas.index(0.0)
        neg = {s: _at(alphas, c["head_usage"], a_min) - c["head_usage"][i0] for s, c in curves.items()}
        out.append(
            f"Negative steering (α = {a_min}) changed steered-layer usage by "
            + ", ".join(f"{s} {v:+.3f}" for s, v in neg.items())
            + "."
        )
    ov = results["overlap"]
    out.append(
        f"Global vs per-class latent sets: mean IoU {ov['global_vs_per_class_iou']:.3f}, "
        f"|∩|/|S| {ov['global_vs_per_class_frac']:.3f} (paper: {PAPER['global_vs_per_class_overlap']})."
    )
    return out
