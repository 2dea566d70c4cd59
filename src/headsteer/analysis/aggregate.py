"""Seeds (`headsteer aggregate RUN_DIR ...`): runs of one config that differ only in `seed=`, combined into
each headline figure's mean ± sample sd (n − 1) and the conclusions (verdicts against the baselines, signs of
steering changes, the layer study's verdicts) checked in every seed. A key a results.json lacks shows "—"
for that seed. The files it writes: `aggregate_files`."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from headsteer.analysis.aggregate_calls import calls as _calls
from headsteer.analysis.aggregate_calls import rival_readings
from headsteer.analysis.answer import comparisons, label
from headsteer.artifacts.io import read_json
from headsteer.config.loader import config_diff
from headsteer.core.errors import HeadsteerError
from headsteer.steer.alphas import nearest_index
from headsteer.steer.verdict import VERBS

# (dotted path in results.json, label, kind); the kind picks the formatting (KINDS)
HEADLINE = [
    ("dense.accuracy", "dense accuracy", "acc"),
    ("pruned.accuracy", "pruned accuracy", "acc"),
    ("pruned.head_usage", "pruned head usage", "usage"),
    ("sae.fvu", "SAE FVU", "plain"),
    ("sae.mse", "SAE MSE", "plain"),
    ("sae.reconstruction.accuracy_delta", "SAE reconstruction: accuracy change", "acc_delta"),
    ("sae.reconstruction.head_usage_delta", "SAE reconstruction: steered-layer usage change", "usage_delta"),
    ("overlap.global_vs_per_class_iou", "global vs per-class latent sets: IoU", "plain"),
    ("sensitivity.range_pts", "steered-layer sensitivity (range_pts)", "pts"),
]
# kind -> (scale, decimals, sign, suffix): accuracies are fractions in results.json, printed in % and points
KINDS = {"acc": (100, 2, "", " %"), "acc_delta": (100, 2, "+", " pts"), "usage": (1, 3, "", "")}
KINDS |= {"usage_delta": (1, 3, "+", ""), "plain": (1, 4, "", ""), "pts": (1, 2, "", " pts")}
# steering figures: (curve in results.json, what it measures, kind)
STEERED = [("head_usage", "steered-layer usage", "usage_delta"), ("accuracy", "accuracy", "acc_delta")]
BASELINES = {"vs_threshold": "threshold", "vs_mean_shift": "mean-shift"}
SIGNS = {"down": "goes down", "up": "goes up", "flat": "shows no clear change"}
EPS = 1e-9  # without a CI (older results.json), a change smaller than this is "flat"


@dataclass
class Run:
    """One run directory that went into the aggregate."""

    path: str
    """The run directory, as given."""
    seed: int
    """Its `seed` (from RUN/report/config.json)."""
    git_sha: str
    """The commit its report was made with."""


@dataclass
class Figure:
    """One headline figure across seeds."""

    key: str
    """Dotted id: a results.json path (`pruned.accuracy`) or a derived one (`steering.true.per_class.usage_change`)."""
    label: str
    """What it is, in words."""
    kind: str
    """How it is printed: a key of KINDS (accuracies are fractions printed in %, their changes in points)."""
    values: list[float | None]
    """One value per seed, in the order of `Aggregate.runs`; None where that run's results.json lacks it."""
    mean: float | None
    """Mean over the seeds that have the figure."""
    sd: float | None
    """Sample standard deviation (n − 1) over those seeds; None with fewer than two."""


@dataclass
class Conclusion:
    """A categorical outcome per seed, and whether all seeds agree on it."""

    subject: str
    """What is concluded about, e.g. `per_class vs threshold`."""
    per_seed: list[str | None]
    """The outcome in each seed (`beats`, `down`, ...), in the order of `Aggregate.runs`; None where missing."""
    holds: bool
    """True when every seed has the same outcome."""
    text: str
    """In words: `holds in every seed: ...` or `differs across seeds: ...`."""


@dataclass
class Aggregate:
    """Runs of one config with different seeds, combined."""

    runs: list[Run]
    """The runs, sorted by seed."""
    config: dict
    """The config they share: the report stage's config sections, without `seed`."""
    figures: list[Figure]
    """Headline figures: per-seed values, mean and sd."""
    conclusions: list[Conclusion]
    """Verdicts against the baselines and signs of the steering changes, each checked across seeds."""


def default_out(run_dirs: list[str | Path]) -> Path:
    """The run directories' common parent + `/aggregate` (runs/demo-seed0, runs/demo-seed1 -> runs/aggregate)."""
    return Path(os.path.commonpath([str(Path(d).resolve().parent) for d in run_dirs])) / "aggregate"


def _meta(run_dir: Path) -> dict:
    """RUN/report/config.json: its "config" holds the sections the report depends on, `seed` included."""
    if not (run_dir / "report" / "results.json").is_file():
        raise HeadsteerError(f"{run_dir} has no report/results.json; run `headsteer run` there first")
    meta = read_json(run_dir / "report" / "config.json")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta["config"].get("seed"), int):
        raise HeadsteerError(f"{run_dir}/report/config.json has no config with a seed; run `headsteer run` there again")
    return meta


def _runs(run_dirs: list[Path]) -> list[Run]:
    """The runs, sorted by seed; refused where configs differ beyond `seed` or a seed repeats."""
    metas, seen, first = [_meta(d) for d in run_dirs], {}, run_dirs[0]
    for path, meta in zip(run_dirs, metas, strict=True):
        diffs = config_diff(_shared(metas[0]), _shared(meta))
        more = f" and {len(diffs) - 1} more" if len(diffs) > 1 else ""
        if diffs:
            raise HeadsteerError(f"{first} and {path} differ beyond `seed` ({diffs[0]}{more}); aggregate one config")
        if (seed := meta["config"]["seed"]) in seen:
            raise HeadsteerError(f"{seen[seed]} and {path} both have seed={seed}; aggregate runs with different seeds")
        seen[seed] = path
    runs = [
        Run(str(p), m["config"]["seed"], str(m.get("git_sha") or "?")) for p, m in zip(run_dirs, metas, strict=True)
    ]
    return sorted(runs, key=lambda r: r.seed)


def _shared(meta: dict) -> dict:
    """The config without `seed`."""
    return {k: v for k, v in meta["config"].items() if k != "seed"}


def _get(doc: object, dotted: str) -> float | None:
    for part in dotted.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return float(doc) if isinstance(doc, (int, float)) and not isinstance(doc, bool) else None


def _one(key: str, label: str, kind: str, value: float | None) -> Figure:
    """A figure in one seed."""
    return Figure(key, label, kind, [value], value, None)


def _steering(results: dict) -> list[Figure]:
    """Per label source and strategy: steered-layer usage and accuracy change from α = 0 to the largest α."""
    st = results.get("steering") or {}
    alphas, out = st.get("alphas") or [], []
    for source, strategies in (st.get("curves") or {}).items() if alphas else []:
        i0, i1 = nearest_index(alphas, 0.0), alphas.index(max(alphas))
        for strategy, curve in strategies.items():
            for metric, what, kind in STEERED:
                ys = curve.get(metric) or []
                label = f"{strategy} steering ({source} labels): {what} change, α 0 → {alphas[i1]:g}"
                if len(ys) == len(alphas):
                    out.append(_one(f"steering.{source}.{strategy}.{metric}_change", label, kind, ys[i1] - ys[i0]))
    return out


def _readings(results: dict) -> dict[str, Figure]:
    """Every headline figure one results.json has, by key."""
    out = [_one(key, label, kind, _get(results, key)) for key, label, kind in HEADLINE] + _steering(results)
    out += _layer_readings(results) + [_one(*reading) for reading in rival_readings(results)]
    for mode, source, strategy, rec in comparisons(results.get("verdicts") or {}):
        who, key = label(mode, source, strategy), f"verdicts.{mode}.{source}.{strategy}"
        reach = rec.get("reach") or {}
        out.append(_one(f"{key}.min_usage", f"{who}: lowest usage reached", "usage", _get(reach, "min_usage.usage")))
        for base, name in BASELINES.items():
            text = f"{who} vs {name}: accuracy change at equal usage"
            out.append(_one(f"{key}.{base}.delta", text, "acc_delta", _get(rec, f"{base}.delta")))
    return {f.key: f for f in out if f.mean is not None}


def _layer_readings(results: dict) -> list[Figure]:
    """Per layer of the layer study (`by_layer`): its heads' worth, and each strategy against the threshold."""
    out = []
    for layer, rec in (results.get("by_layer") or {}).items():
        label = f"layer {layer}: heads worth (all kept − all dropped)"
        out.append(_one(f"by_layer.{layer}.range_pts", label, "pts", _get(rec, "sensitivity.range_pts")))
        for strategy, v in (rec.get("verdicts") or {}).items():
            label = f"layer {layer}: {strategy} vs threshold: accuracy change at equal usage"
            out.append(
                _one(f"by_layer.{layer}.{strategy}.vs_threshold", label, "acc_delta", _get(v, "vs_threshold.delta"))
            )
    return out


def _layer_conclusions(results: list[dict], seeds: list[int]) -> list[Conclusion]:
    """Each layer's verdict against the threshold, per strategy, checked across seeds."""
    out = []
    studies = [r.get("by_layer") or {} for r in results]
    for layer in dict.fromkeys(layer for s in studies for layer in s):
        verdicts = [(s.get(layer) or {}).get("verdicts") or {} for s in studies]
        for strategy in dict.fromkeys(k for v in verdicts for k in v):
            calls = [((v.get(strategy) or {}).get("vs_threshold") or {}).get("call") for v in verdicts]
            words = VERBS | {c: c for c in calls if c and c not in VERBS}
            who = f"layer {layer}: {strategy}"
            out.append(_conclude(f"{who} vs threshold", f"{who} {{}} threshold", calls, seeds, words))
    return out


def _figures(readings: list[dict[str, Figure]]) -> list[Figure]:
    figures = []
    for key in dict.fromkeys(k for r in readings for k in r):  # every key any seed has, first-seen order
        first = next(r[key] for r in readings if key in r)
        values = [r[key].mean if key in r else None for r in readings]
        have = [v for v in values if v is not None]
        sd = statistics.stdev(have) if len(have) > 1 else None
        figures.append(Figure(key, first.label, first.kind, values, statistics.fmean(have), sd))
    return figures


def _conclude(subject: str, template: str, outcomes: list[str | None], seeds: list[int], words: dict) -> Conclusion:
    """`holds in every seed: <template filled>`, or as counts: `differs across seeds: <subject>: a in 2 of 3 seeds
    (0, 1), b in 1 of 3 (2)`."""
    if None not in outcomes and len(set(outcomes)) == 1:
        return Conclusion(subject, outcomes, True, "holds in every seed: " + template.format(words[outcomes[0]]))
    groups: dict[str, list[str]] = {}
    for seed, outcome in zip(seeds, outcomes, strict=True):
        groups.setdefault(outcome or "missing", []).append(str(seed))
    n = len(seeds)
    parts = [
        f"{o} in {len(s)} of {n}{' seeds' if i == 0 else ''} ({', '.join(s)})"
        for i, (o, s) in enumerate(groups.items())
    ]
    return Conclusion(subject, outcomes, False, f"differs across seeds: {subject}: " + ", ".join(parts))


def _sign(results: dict, key: str, value: float | None) -> str | None:
    """'down' / 'up' when the change's 95 % CI (curves[...][metric_delta_ci] at the largest α) excludes 0,
    else 'flat'; from the bare value only when the run has no CI."""
    if value is None:
        return None
    _, source, strategy, metric = key.split(".")
    st = results.get("steering") or {}
    ci = (st.get("curves") or {}).get(source, {}).get(strategy, {}).get(metric.removesuffix("_change") + "_delta_ci")
    if ci:
        lo, hi = ci[st["alphas"].index(max(st["alphas"]))]
        return "down" if hi < 0 else "up" if lo > 0 else "flat"
    return "down" if value < -EPS else "up" if value > EPS else "flat"


def _conclusions(results: list[dict], figures: list[Figure], seeds: list[int]) -> list[Conclusion]:
    out = []
    answers = [((r.get("answer") or {}).get("sentence") or "").split(":")[0] or None for r in results]
    if any(answers):
        out.append(_conclude("the answer", "the answer is: {}", answers, seeds, {a: a for a in answers if a}))
    for subject, calls in _calls(results).items():
        who, name = subject.split(" vs ", 1)
        words = VERBS | {c: c for c in calls if c and c not in VERBS}
        out.append(_conclude(subject, f"{who} {{}} {name}", calls, seeds, words))
    for fig in figures:
        if fig.key.startswith("steering."):
            who, what = fig.label.split(": ", 1)  # "per_class steering (true labels)", "accuracy change, α 0 → 1.5"
            what, alpha = what.split(" change, ")
            where = f"under {who}, {alpha}"
            signs = [_sign(r, fig.key, v) for r, v in zip(results, fig.values, strict=True)]
            out.append(_conclude(f"{what} {where}", f"{what} {{}} {where}", signs, seeds, SIGNS))
    out += _layer_conclusions(results, seeds)
    return sorted(out, key=lambda c: not c.holds)  # conclusions that hold in every seed lead


def aggregate(run_dirs: list[Path]) -> Aggregate:
    """Combine runs of one config with different seeds (refused: fewer than 2, other differences, a seed twice)."""
    if len(run_dirs) < 2:
        raise HeadsteerError(f"aggregate needs at least 2 run directories (seeds of one config), got {len(run_dirs)}")
    runs = _runs([Path(d) for d in run_dirs])
    results = [read_json(Path(r.path) / "report" / "results.json") for r in runs]
    figures = _figures([_readings(r) for r in results])
    conclusions = _conclusions(results, figures, [r.seed for r in runs])
    config = _shared(_meta(Path(runs[0].path)))
    return Aggregate(runs=runs, config=config, figures=figures, conclusions=conclusions)
