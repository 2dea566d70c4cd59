"""The paper's reported numbers beside the run's, one row per quantity (the report's comparison table)."""

from __future__ import annotations

PAPER = {
    "dense_accuracy": 0.9127,
    "pruned_accuracy": 0.8979,
    "target_usage": 0.70,
    "sae_mse": 0.0228,
    "recon_accuracy_delta": -0.0012,
    "recon_usage_delta": 0.025,
    "global_vs_per_class_overlap": 0.1641,
    "examples": "bowl 76→82 %, usage 0.72→0.33 (h2, h5); pine_tree 79→84 %, 0.93→0.35",
    "pairs": "bowl/plate ≈ 0.38, beaver/squirrel ≈ 0.39",
}


def paper_table(results: dict, steer: dict) -> list[tuple[str, str, str]]:
    top = results["steering"]["top_classes"]
    ex = "; ".join(
        f"{t['class']} {100 * t['accuracy_before']:.0f}→{100 * t['accuracy_after']:.0f} %, usage "
        f"{t['usage_before']:.2f}→{t['usage_after']:.2f} (h{', h'.join(map(str, t['heads_kept']))})"
        for t in top[:2]
    )
    pairs = ", ".join(f"{p['a']}/{p['b']} {p['iou']:.2f}" for p in steer["class_overlap"]["top_pairs"][:2])
    r = results
    return [
        ("dataset / model", "CIFAR-100 / ViT-S/16 (ImageNet-pretrained)", f"{r['dataset']} / {r['model']}"),
        ("dense accuracy", f"{100 * PAPER['dense_accuracy']:.2f} %", f"{100 * r['dense']['accuracy']:.2f} %"),
        (
            "pruned accuracy",
            f"{100 * PAPER['pruned_accuracy']:.2f} % (30 % pruned)",
            f"{100 * r['pruned']['accuracy']:.2f} % (usage {r['pruned']['head_usage']:.3f}, "
            f"target {r['pruned']['target_usage']})",
        ),
        (
            "SAE",
            "384 → 3072, k = 64, MSE 0.0228",
            f"{r['sae']['d_in']} → {r['sae']['d_sae']}, k = {r['sae']['k']}, MSE {r['sae']['mse']:.4f}, "
            f"FVU {r['sae']['fvu']:.3f}",
        ),
        (
            "reconstruction control",
            "Δacc −0.12 pts, Δusage +0.025",
            f"Δacc {100 * r['sae']['reconstruction']['accuracy_delta']:+.2f} pts, "
            f"Δusage {r['sae']['reconstruction']['head_usage_delta']:+.3f}",
        ),
        (
            "global vs per-class overlap",
            f"{PAPER['global_vs_per_class_overlap']}",
            f"IoU {r['overlap']['global_vs_per_class_iou']:.3f}, "
            f"|∩|/|S| {r['overlap']['global_vs_per_class_frac']:.3f}",
        ),
        (f"top classes, per-class steering α = {steer['top_alpha']}", PAPER["examples"] + " (α = 1.2)", ex or "—"),
        ("most similar class pairs", PAPER["pairs"], pairs),
    ]
