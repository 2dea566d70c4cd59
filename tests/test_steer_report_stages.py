import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from headsteer.stages import run_all


def test_results_json_schema(pipeline):
    r = json.load(open(Path(pipeline.out) / "report" / "results.json"))
    assert r["dataset"] == "fashion_mnist" and len(r["classes"]) == 10
    assert 0 <= r["dense"]["accuracy"] <= 1
    assert {"accuracy", "head_usage", "head_usage_per_layer", "target_usage"} <= set(r["pruned"])
    assert set(r["sae"]) == {"d_in", "d_sae", "k", "mse", "fvu", "l0", "dead_fraction", "reconstruction"}
    assert set(r["sae"]["reconstruction"]) == {"accuracy_delta", "head_usage_delta"}
    st = r["steering"]
    assert st["layer"] == 1 and st["mode"] == "pre_topk" and len(st["alphas"]) == 31
    assert set(st["curves"]) == {"true", "predicted"}
    assert set(st["curves"]["true"]) == {"per_class", "global", "random", "per_class_specific"}
    i0 = st["alphas"].index(0.0)
    for c in st["curves"]["true"].values():
        assert set(c) == {"accuracy", "head_usage", "head_usage_overall", "accuracy_delta_ci", "head_usage_delta_ci"}
        assert all(len(c[k]) == 31 and all(0 <= x <= 1 for x in c[k]) for k in ("accuracy", "head_usage"))
        for key in ("accuracy_delta_ci", "head_usage_delta_ci"):
            assert c[key][i0] == [0.0, 0.0]  # the reference point differs from itself by nothing
            assert all(lo <= hi for lo, hi in c[key])
    assert set(st["curves_by_mode"]) == {"pre_topk", "post_topk", "additive"}
    assert st["curves_by_mode"]["pre_topk"]["true"]["global"]["accuracy"] == st["curves"]["true"]["global"]["accuracy"]
    pc = load_file(str(Path(pipeline.out) / "steer" / "per_class.safetensors"))["per_class_ci"]  # (Ls, S, 2, A, C, 2)
    assert pc.shape == (2, 4, 2, 31, 10, 2) and (pc[..., 0] <= pc[..., 1]).all()
    assert pc[:, :, :, i0].abs().sum() == 0  # alpha 0 against itself
    band = st["random_band"]
    assert band["draws"] == 10 and all(
        lo <= m + 1e-6 and m <= hi + 1e-6
        for lo, m, hi in zip(band["accuracy"]["lo"], band["accuracy"]["mean"], band["accuracy"]["hi"], strict=True)
    )
    t = st["threshold"]
    assert t["knob"] == "shift" and 0.0 in t["values"] and min(t["head_usage"]) == 0.0 and max(t["head_usage"]) == 1.0
    ms = st["mean_shift"]["true"]
    assert set(st["mean_shift"]) == {"true", "predicted"} and set(st["alphas"]) <= set(ms["values"])
    assert ms["values"] == sorted(ms["values"]) and len(ms["accuracy"]) == len(ms["values"]) >= 31  # grid + reach
    assert len(st["top_classes"]) == 5 and {"gain_ci", "accuracy_no_sae", "images"} <= set(st["top_classes"][0])
    sel = st["top_classes_selection"]
    assert sel["selection_images"] + sel["report_images"] == 160 and len(sel["all_classes"]) == 10
    calls = ("beats", "loses", "matches", "inconclusive", "borderline", "range too narrow")
    assert set(r["verdicts"]) == {"pre_topk", "post_topk", "additive"}  # every mode is judged
    for by_source in r["verdicts"].values():
        assert set(by_source) == {"true", "predicted"}
        for strategy, v in by_source["true"].items():
            assert v["vs_threshold"]["call"] in calls and {"span_pts", "stake_pts", "ci_mc_error"} <= set(
                v["vs_threshold"]
            )
            assert (v["vs_mean_shift"] is None) == (strategy in ("global", "random"))
            reach = v["reach"]
            assert (
                reach["min_usage"]["usage"] <= reach["max_usage"]["usage"]
                and len(reach["min_usage"]["accuracy_ci"]) == 2
            )
            assert min(reach["alphas"]) <= -1.5 and max(reach["alphas"]) >= 1.5
    assert r["answer"]["sentence"].startswith(("Yes, at layer 1", "No, at layer 1", "No answer at layer 1"))
    assert r["judging"]["reach"] == {"factor": 2.0, "tol": 0.005, "cap": 1000.0} and r["judging"]["bootstrap"] >= 1
    assert len(r["answer"]["table"]) == 3 * (2 * 2 + 2)  # modes x (class-conditioned x sources + class-free)
    sens = r["sensitivity"]
    assert sens["steered_layer"] == 1 and sens["layers"] == [0, 1] and len(sens["table"][1]["head_dropped"]) == 6
    assert sens["range_pts"] == pytest.approx(100 * (sens["all_kept"][1] - sens["all_dropped"][1]))
    assert 0 <= r["overlap"]["global_vs_per_class_iou"] <= r["overlap"]["global_vs_per_class_frac"] <= 1
    assert "class_overlap" not in r and "per_class_ci" not in r["steering"]  # in steer/per_class.safetensors
    tables = load_file(str(Path(pipeline.out) / "steer" / "per_class.safetensors"))
    iou = tables["class_overlap_iou"]
    assert iou.shape == (10, 10) and torch.equal(iou.diagonal(), torch.ones(10)) and torch.equal(iou, iou.T)
    assert tables["per_class_ci"].shape == (2, 4, 2, len(r["steering"]["alphas"]), 10, 2)
    assert tables["class_test_images"].sum() == 160


def test_threshold_point_at_zero_shift_is_the_unsteered_model(pipeline):
    """Independent check: the threshold curve at b = 0 is the extracted unsteered predictions and masks."""
    from headsteer.artifacts.activations import load_split

    r = json.load(open(Path(pipeline.out) / "report" / "results.json"))
    t = r["steering"]["threshold"]
    k = t["values"].index(0.0)
    test = load_split(pipeline.out, "test")
    assert t["accuracy"][k] == pytest.approx((test.predictions == test.labels).float().mean().item(), abs=1e-9)
    assert t["head_usage"][k] == pytest.approx(test.masks[:, 1].float().mean().item(), abs=1e-9)


def test_alpha_zero_equals_reconstruction_control(pipeline):
    """The sweep at alpha = 0 must reproduce the SAE stage's reconstruction control (every mode)."""
    sae = json.load(open(Path(pipeline.out) / "sae" / "metrics.json"))["reconstruction"]
    st = json.load(open(Path(pipeline.out) / "steer" / "metrics.json"))
    i0 = st["alphas"].index(0.0)
    for mode, by_source in st["curves_by_mode"].items():
        for strategy, c in by_source["true"].items():
            assert c["accuracy"][i0] == pytest.approx(sae["accuracy"], abs=1e-6), (mode, strategy)
            assert c["head_usage"][i0] == pytest.approx(sae["head_usage_layer"], abs=1e-6), (mode, strategy)


def test_report_is_self_contained_html(pipeline):
    folder = Path(pipeline.out) / "report"
    doc = (folder / "report.html").read_text()
    imgs = re.findall(r'<img src="([^"]+)"', doc)
    assert len(imgs) >= 6 and all(src.startswith("data:image/png;base64,") for src in imgs)
    assert "http://" not in doc and "https://" not in doc
    for name in (
        "fig2_steering",
        "fig3_heads",
        "fig4_negative",
        "fig5_overlap",
        "fig_modes",
        "fig_pruning",
        "fig_frontier",
        "fig_sensitivity",
        "fig_random_band",
        "fig_rivals",
        "fig_sparsity_path",
    ):
        assert (folder / f"{name}.png").stat().st_size > 5000
    assert "T-shirt/top" in doc and "paper" in doc
    # the report opens with the answer and the rivals' frontier, then the verdict and the sensitivity, before
    # any other curve
    first, second = (doc.index(f'alt="{name}"') for name in ("fig_rivals", "fig_sparsity_path"))
    assert doc.index('id="answer"') < first < doc.index('id="rivals"') < doc.index("<h2>Verdict</h2>")
    assert doc.index("<h2>Verdict</h2>") < doc.index("range (pts)") < doc.index('alt="fig_frontier"')
    assert second < doc.index("<h2>Verdict</h2>")
    assert "threshold baseline" in doc
    md = (folder / "results.md").read_text()
    assert md.startswith("# headsteer results") and "| dense accuracy |" in md


def test_rerun_skips_finished_stages(pipeline, capsys):
    run_all(pipeline)
    out = capsys.readouterr().out
    assert out.count("already done") == 5


def test_cli_run_ends_with_report_path_and_summary(pipeline, capsys):
    from conftest import PIPELINE_OVERRIDES, ROOT
    from headsteer.cli import main

    rc = main(
        [
            "run",
            str(ROOT / "configs/smoke.yaml"),
            f"data.root={pipeline.data.root}",
            f"out={pipeline.out}",
            *PIPELINE_OVERRIDES,
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "already done" in out
    tail = out[out.index("Report: ") :].strip().splitlines()
    assert tail[0].endswith("report/report.html") and len(tail) == 6 and all(ln.startswith("  - ") for ln in tail[1:])


def test_custom_sets_are_swept_and_judged_like_the_built_in_ones(pipeline, tmp_path, capsys):
    """steer.custom_sets: the set is stored, swept with CIs, reaches and verdicts in every mode, and has a row
    in the answer's table; a latent id beyond the SAE's width is one line naming the set."""
    import shutil

    from safetensors.torch import load_file

    from conftest import PIPELINE_OVERRIDES, ROOT, one_line_error
    from headsteer.cli import main

    out = tmp_path / "run"
    shutil.copytree(pipeline.out, out, ignore=shutil.ignore_patterns(".lock", "explorer.png"))
    base = [str(ROOT / "configs/smoke.yaml"), f"data.root={pipeline.data.root}", f"out={out}", *PIPELINE_OVERRIDES]
    ids = [0, 5, 9, 40, 41]
    assert main(["steer", *base, f"steer.custom_sets={{mine: {ids}}}", "--force"]) == 0
    assert main(["report", *base, f"steer.custom_sets={{mine: {ids}}}", "--force"]) == 0
    assert load_file(str(out / "steer" / "latents.safetensors"))["set_custom.mine"].tolist() == ids
    r = json.load(open(out / "report" / "results.json"))
    assert "mine" in r["steering"]["curves"]["true"] and len(r["steering"]["curves"]["true"]["mine"]["accuracy"]) == 31
    for mode in ("pre_topk", "post_topk", "additive"):
        cell = r["verdicts"][mode]["true"]["mine"]
        assert cell["vs_mean_shift"] is None and cell["vs_threshold"]["call"] and cell["reach"]["min_usage"]
    assert sum(row["strategy"] == "mine" for row in r["answer"]["table"]) == 3  # once per mode
    capsys.readouterr()
    line = one_line_error(capsys, ["steer", *base, "steer.custom_sets={mine: [0, 100000]}", "--force"])
    assert "steer.custom_sets.mine holds latent 100000" in line


def test_missed_pruning_target_is_said_in_the_log_and_first_in_the_report(smoke_cfg, pipeline, tmp_path, capsys):
    from headsteer.analysis.report import answer_html, write_markdown
    from headsteer.analysis.results import target_note
    from headsteer.stages import run_stage

    # a target one joint epoch from heads that start on cannot reach: the log says so
    heads_on = "model.decision_init_bias=3.0"  # every head kept with probability 0.95 at start
    run_stage(smoke_cfg("prune.target_usage=0.2", "prune.dense_epochs=1", "prune.joint_epochs=1", heads_on), "prune")
    log = capsys.readouterr().out
    warning = r"\[prune\] warning: head usage [01]\.\d{3} misses prune\.target_usage 0\.2 by more than 0\.05"
    assert re.search(warning, log), log
    # results.json's flag and its place in results.md and report.html, on the pipeline's real results
    r = json.loads((Path(pipeline.out) / "report" / "results.json").read_text())
    r["pruned"]["head_usage"], r["pruned"]["target_usage"] = 1.0, 0.7
    r["pruned"]["target_missed"] = target_note(r["pruned"])
    assert r["pruned"]["target_missed"].startswith("Pruning missed its target: final head usage 1.000 against")
    steer = json.loads((Path(pipeline.out) / "steer" / "metrics.json").read_text())
    write_markdown(tmp_path / "results.md", r, steer, ["a finding"], "headsteer run CONFIG")
    bullets = [ln for ln in (tmp_path / "results.md").read_text().splitlines() if ln.startswith("- ")]
    assert bullets[0].startswith("- Pruning missed its target") and bullets[1].startswith("- Answer: ")
    assert bullets[2] == "- a finding"
    page = answer_html(r)
    assert page.index("Pruning missed its target") < page.index('id="answer"')
    assert page.count("Pruning missed its target") == 1
