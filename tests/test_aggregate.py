"""`headsteer aggregate`: runs of one config with different seeds, written by the test in the real layout
(RUN/report/results.json + RUN/report/config.json), combined into mean ± sd and the conclusions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import one_line_error
from headsteer.analysis.aggregate import aggregate, default_out
from headsteer.analysis.aggregate_files import write_aggregate
from headsteer.cli import main
from headsteer.core.errors import HeadsteerError

ALPHAS = [-1.0, -0.5, 0.0, 0.5, 1.0]  # α = 0 at index 2, the largest α at index 4
# per seed: headline values, steered-layer usage drop of per_class steering at α = 1, accuracy change of
# random steering at α = 1, and the verdicts of global vs threshold (one differs across seeds)
SEEDS = {
    0: dict(dense=0.910, pruned=0.890, usage=0.700, fvu=0.20, mse=0.020, rec=-0.001, iou=0.16, sens=0.3),
    1: dict(dense=0.905, pruned=0.884, usage=0.712, fvu=0.22, mse=0.021, rec=0.002, iou=0.18, sens=0.5),
    2: dict(dense=0.915, pruned=0.893, usage=0.695, fvu=0.19, mse=0.019, rec=-0.003, iou=0.14, sens=0.4),
}
USAGE_DROP = {0: 0.30, 1: 0.25, 2: 0.35}
RANDOM_ACC = {0: 0.01, 1: -0.02, 2: 0.0}
GLOBAL_CALL = {0: "beats", 1: "beats", 2: "matches"}
PC_DELTA = {0: 0.020, 1: 0.015, 2: 0.030}


def _curve(acc0: float, acc_change: float, usage0: float, usage_drop: float) -> dict:
    usage = [usage0 + 0.1, usage0 + 0.05, usage0, usage0 - usage_drop / 2, usage0 - usage_drop]
    return {"accuracy": [acc0] * 4 + [acc0 + acc_change], "head_usage": usage, "head_usage_overall": usage}


def _results(seed: int, extras: bool = True) -> dict:
    """results.json as `headsteer run` writes it; with `extras`, also `verdict` and `sensitivity`."""
    v = SEEDS[seed]
    doc = {
        "dataset": "fashion_mnist",
        "dense": {"accuracy": v["dense"]},
        "pruned": {"accuracy": v["pruned"], "head_usage": v["usage"], "head_usage_per_layer": [1.0, v["usage"]]},
        "sae": {"mse": v["mse"], "fvu": v["fvu"], "l0": 8.0, "dead_fraction": 0.0}
        | {"reconstruction": {"accuracy_delta": v["rec"], "head_usage_delta": 0.01}},
        "steering": {
            "layer": 5,
            "mode": "pre_topk",
            "alphas": ALPHAS,
            "curves": {
                "true": {
                    "per_class": _curve(v["pruned"], 0.004, 0.8, USAGE_DROP[seed]),
                    "random": _curve(v["pruned"], RANDOM_ACC[seed], 0.8, 0.05),
                }
            },
        },
        "overlap": {"global_vs_per_class_iou": v["iou"], "global_vs_per_class_frac": 0.3},
    }
    if extras:
        doc["verdicts"] = {
            "pre_topk": {
                "true": {
                    "per_class": {
                        "vs_threshold": {"delta": PC_DELTA[seed], "ci": [0.0, 0.04], "call": "beats"},
                        "vs_mean_shift": {"delta": -0.01, "ci": [-0.02, -0.005], "call": "loses"},
                        "low_usage": None,
                        "reach": {"min_usage": {"usage": 0.4 + seed / 100}},
                    },
                    "global": {
                        "vs_threshold": {"delta": 0.01, "ci": [-0.01, 0.02], "call": GLOBAL_CALL[seed]},
                        "vs_mean_shift": None,
                        "low_usage": {"vs_threshold": {"delta": -0.02, "ci": [-0.03, -0.01], "call": "loses"}},
                        "reach": {"min_usage": {"usage": 0.2}},
                    },
                }
            }
        }
        doc["answer"] = {"sentence": f"No, at layer 5: nothing beats{' (seed %d)' % seed}. More."}
        doc["sensitivity"] = {
            "steered_layer": 5,
            "layers": [4, 5],
            "all_kept": [0.89, 0.89],
            "all_dropped": [0.5, 0.886],
        }
        doc["sensitivity"]["range_pts"] = v["sens"]
    return doc


def _make_run(folder: Path, seed: int, extras: bool = True, joint_epochs: int = 2) -> Path:
    config = {"seed": seed, "data": {"name": "fashion_mnist"}, "prune": {"joint_epochs": joint_epochs}, "world_size": 1}
    meta = {"stage": "report", "config": config, "full_config": config | {"out": str(folder)}}
    meta |= {"git_sha": "0123456789abcdef", "command": f"headsteer run demo.yaml seed={seed}", "created": "now"}
    (folder / "report").mkdir(parents=True)
    (folder / "report" / "config.json").write_text(json.dumps(meta))
    (folder / "report" / "results.json").write_text(json.dumps(_results(seed, extras)))
    return folder


@pytest.fixture()
def runs(tmp_path) -> list[Path]:
    """Three seeds, given out of order (the aggregate sorts them by seed)."""
    return [_make_run(tmp_path / f"seed{s}", s) for s in (2, 0, 1)]


def _figure(agg, key):
    return next(f for f in agg.figures if f.key == key)


@pytest.mark.parametrize(
    "key, per_seed",
    [
        ("dense.accuracy", [SEEDS[s]["dense"] for s in range(3)]),
        ("sae.fvu", [SEEDS[s]["fvu"] for s in range(3)]),
        ("sae.reconstruction.accuracy_delta", [SEEDS[s]["rec"] for s in range(3)]),
        ("steering.true.per_class.head_usage_change", [-USAGE_DROP[s] for s in range(3)]),
        ("steering.true.random.accuracy_change", [RANDOM_ACC[s] for s in range(3)]),
        ("verdicts.pre_topk.true.per_class.vs_threshold.delta", [PC_DELTA[s] for s in range(3)]),
        ("verdicts.pre_topk.true.per_class.min_usage", [0.4 + s / 100 for s in range(3)]),
        ("sensitivity.range_pts", [SEEDS[s]["sens"] for s in range(3)]),
    ],
)
def test_mean_and_sample_sd_per_figure(runs, key, per_seed):
    agg = aggregate(runs)
    assert [r.seed for r in agg.runs] == [0, 1, 2]
    fig = _figure(agg, key)
    assert fig.values == pytest.approx(per_seed, abs=1e-12)
    assert fig.mean == pytest.approx(np.mean(per_seed), abs=1e-12)
    assert fig.sd == pytest.approx(np.std(per_seed, ddof=1), abs=1e-12)


def test_conclusions_that_hold_and_that_differ(runs):
    texts = [c.text for c in aggregate(runs).conclusions]
    assert "holds in every seed: per_class (pre_topk, true labels) beats threshold" in texts
    assert "holds in every seed: per_class (pre_topk, true labels) loses to mean-shift" in texts
    assert (
        "differs across seeds: global (pre_topk) vs threshold: beats in 2 of 3 seeds (0, 1), matches in 1 of 3 (2)"
        in texts
    )
    assert "holds in every seed: global (pre_topk) loses to threshold in the low-usage part" in texts
    assert "holds in every seed: the answer is: No, at layer 5" in texts
    assert not any("global" in t and "mean-shift" in t for t in texts)  # null in every seed: nothing to conclude
    holds = [c.holds for c in aggregate(runs).conclusions]
    assert holds == sorted(holds, reverse=True)  # conclusions that hold in every seed lead
    usage = "holds in every seed: steered-layer usage goes down under per_class steering (true labels), α 0 → 1"
    assert usage in texts
    random_acc = "differs across seeds: accuracy under random steering (true labels), α 0 → 1: "
    assert random_acc + "up in 1 of 3 seeds (0), down in 1 of 3 (1), flat in 1 of 3 (2)" in texts


def test_files_written(runs, tmp_path):
    agg = aggregate(runs)
    page = write_aggregate(agg, tmp_path / "out")
    assert page == tmp_path / "out" / "aggregate.html"
    doc = json.loads((tmp_path / "out" / "aggregate.json").read_text())
    assert [r["seed"] for r in doc["runs"]] == [0, 1, 2] and "seed" not in doc["config"]
    dense = next(f for f in doc["figures"] if f["key"] == "dense.accuracy")
    assert dense["mean"] == pytest.approx(np.mean([0.910, 0.905, 0.915]))
    md = (tmp_path / "out" / "aggregate.md").read_text()
    assert "| figure | seeds 0, 1, 2 | mean ± sd |" in md
    assert "| dense accuracy | 91.00, 90.50, 91.50 % | 91.00 ± 0.50 % |" in md
    assert "- holds in every seed: per_class (pre_topk, true labels) beats threshold" in md
    html = page.read_text()
    assert "<style>" in html and "http" not in html and "<link" not in html and "<script" not in html
    assert "differs across seeds: global (pre_topk) vs threshold" in html


def test_results_without_verdict_or_sensitivity(tmp_path):
    """A results.json without `verdicts` or `sensitivity` aggregates; a key only some seeds have shows "—"."""
    old = [_make_run(tmp_path / f"old{s}", s, extras=False) for s in range(3)]
    agg = aggregate(old)
    assert not any(f.key.startswith(("verdicts.", "sensitivity.")) for f in agg.figures)
    assert not any(" vs " in c.subject for c in agg.conclusions)
    assert _figure(agg, "pruned.accuracy").sd == pytest.approx(np.std([0.890, 0.884, 0.893], ddof=1))
    write_aggregate(agg, tmp_path / "out")

    mixed = [_make_run(tmp_path / "new0", 0)] + old[1:]
    agg = aggregate(mixed)
    sens = _figure(agg, "sensitivity.range_pts")
    assert sens.values == [0.3, None, None] and sens.mean == 0.3 and sens.sd is None
    texts = [c.text for c in agg.conclusions]
    assert (
        "differs across seeds: per_class (pre_topk, true labels) vs threshold: "
        "beats in 1 of 3 seeds (0), missing in 2 of 3 (1, 2)" in texts
    )
    write_aggregate(agg, tmp_path / "mixed")
    assert (
        "| steered-layer sensitivity (range_pts) | 0.30, —, — pts | 0.30 pts |"
        in (tmp_path / "mixed" / "aggregate.md").read_text()
    )


def test_cli_writes_next_to_the_runs_and_prints_conclusions(runs, tmp_path, capsys):
    assert default_out(runs) == tmp_path.resolve() / "aggregate"
    assert main(["aggregate", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path.resolve() / "aggregate" / "aggregate.html") in out
    assert "  - holds in every seed: per_class (pre_topk, true labels) beats threshold" in out
    assert main(["aggregate", str(runs[0]), "--out", str(tmp_path / "elsewhere"), *map(str, runs[1:])]) == 0
    assert (tmp_path / "elsewhere" / "aggregate.md").is_file()


def test_cli_bad_inputs(runs, tmp_path, capsys):
    a, b = str(tmp_path / "seed0"), str(tmp_path / "seed1")
    assert "at least 2 run directories" in one_line_error(capsys, ["aggregate"])
    assert "at least 2 run directories" in one_line_error(capsys, ["aggregate", a])
    empty = tmp_path / "never-ran"
    empty.mkdir()
    line = one_line_error(capsys, ["aggregate", a, str(empty)])
    assert str(empty) in line and "run `headsteer run` there first" in line
    other = _make_run(tmp_path / "other", 2, joint_epochs=3)
    line = one_line_error(capsys, ["aggregate", a, b, str(other)])
    assert "differ beyond `seed`" in line and "prune.joint_epochs: 2 -> 3" in line
    assert "both have seed=0" in one_line_error(capsys, ["aggregate", a, b, a])
    twin = _make_run(tmp_path / "twin", 1)
    line = one_line_error(capsys, ["aggregate", a, b, str(twin)])
    assert "both have seed=1" in line and str(twin) in line
    with pytest.raises(HeadsteerError, match="at least 2"):
        aggregate([])


LAYER2_CALL = {0: "matches", 1: "matches", 2: "beats"}


def test_layer_study_is_aggregated_per_layer(tmp_path):
    """`by_layer` (the layer study): each layer's heads' worth and verdicts, across seeds."""
    runs = []
    for s in range(3):
        folder = _make_run(tmp_path / f"seed{s}", s)
        doc = json.loads((folder / "report" / "results.json").read_text())
        doc["by_layer"] = {
            str(layer): {
                "sensitivity": {"range_pts": 2.0 + s + layer},
                "verdicts": {
                    "per_class": {
                        "vs_threshold": {"delta": 0.001 * s, "call": LAYER2_CALL[s] if layer == 2 else "matches"}
                    }
                },
            }
            for layer in (1, 2)
        }
        (folder / "report" / "results.json").write_text(json.dumps(doc))
        runs.append(folder)
    agg = aggregate(runs)
    assert _figure(agg, "by_layer.2.range_pts").values == [4.0, 5.0, 6.0]
    assert _figure(agg, "by_layer.1.per_class.vs_threshold").values == pytest.approx([0.0, 0.001, 0.002])
    texts = [c.text for c in agg.conclusions]
    assert "holds in every seed: layer 1: per_class matches threshold" in texts
    assert (
        "differs across seeds: layer 2: per_class vs threshold: matches in 2 of 3 seeds (0, 1), beats in 1 of 3 (2)"
        in texts
    )


def test_rivals_and_learned_strengths_are_counted_across_seeds(tmp_path):
    """Each strategy's call against each rival, each rival against the threshold where heads matter, and the
    learned strengths' calls, as counts over the seeds; the rivals' gains become figures."""
    gate_call = {0: "beats", 1: "beats", 2: "matches"}
    runs = []
    for seed in (0, 1, 2):
        run = _make_run(tmp_path / f"s{seed}", seed)
        doc = json.loads((run / "report" / "results.json").read_text())
        low = {"usage_max": 0.15, "call": gate_call[seed], "delta": 0.01 * (seed + 1)}
        doc["rivals"] = {"rivals": {"retrained_gate": {"vs_threshold": {"call": "beats"}, "vs_threshold_low": low}}}
        cell = doc["verdicts"]["pre_topk"]["true"]["per_class"]
        cell["vs_rivals"] = {"retrained_gate": {"call": "loses" if seed else "matches"}}
        verdict = {"vs_threshold": {"call": "beats"}, "vs_rivals": {"retrained_gate": {"call": "matches"}}}
        doc["learned"] = {"trained": {"global": {"verdict": verdict}}}
        (run / "report" / "results.json").write_text(json.dumps(doc))
        runs.append(run)
    agg = aggregate(runs)
    texts = [c.text for c in agg.conclusions]
    assert "holds in every seed: retrained_gate beats threshold" in texts
    assert (
        "differs across seeds: retrained_gate vs threshold below usage 0.15: beats in 2 of 3 seeds (0, 1), "
        "matches in 1 of 3 (2)" in texts
    )
    assert (
        "differs across seeds: per_class (pre_topk, true labels) vs retrained_gate: matches in 1 of 3 seeds (0), "
        "loses in 2 of 3 (1, 2)" in texts
    )
    assert "holds in every seed: learned global (trained SAE) matches retrained_gate" in texts
    fig = next(f for f in agg.figures if f.key == "rivals.retrained_gate.vs_threshold_low.delta")
    assert fig.values == pytest.approx([0.01, 0.02, 0.03]) and fig.mean == pytest.approx(0.02)
