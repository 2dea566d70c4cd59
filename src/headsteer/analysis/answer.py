"""The one answer a report leads with, generated from results.json's verdicts (never typed by hand).

The question: does any SAE steering strategy beat a constant shift of the steered layer's decision
threshold at equal head usage, and where does each strategy's usage saturate? Every (mode, label
source, strategy) comparison counts once; class-free strategies (global, random, custom sets) do not
depend on the label source and count once per mode. The paper's own method (per-class sets, the
headline mode, true labels) is named with its CI as the pre-specified comparison: no best-of-many
figure is quoted.
"""

from __future__ import annotations

from collections import Counter

from headsteer.analysis.rival_answer import learned_clause, rival_clause
from headsteer.steer.names import Call, LabelSource, Strategy
from headsteer.steer.stats import IndexSets
from headsteer.steer.verdict import MIN_RANGE

class_conditioned = IndexSets.class_conditioned


def comparisons(verdicts: dict) -> list[tuple[str, str, str, dict]]:
    """(mode, label source, strategy, record) of every distinct comparison (class-free ones once per mode)."""
    out = []
    for mode, by_source in verdicts.items():
        seen = set()
        for source, by_strategy in by_source.items():
            for strategy, rec in by_strategy.items():
                if not class_conditioned(strategy):
                    if strategy in seen:
                        continue
                    seen.add(strategy)
                out.append((mode, source, strategy, rec))
    return out


def label(mode: str, source: str, strategy: str) -> str:
    """'per_class (additive, true labels)'; class-free strategies carry no label source."""
    if class_conditioned(strategy):
        return f"{strategy} ({mode}, {'true labels' if source == LabelSource.TRUE else 'predicted class'})"
    return f"{strategy} ({mode})"


def _pts(x: float) -> str:
    return f"{100 * x:+.2f}"


def _ci(c: dict) -> str:
    return f"{_pts(c['delta'])} pts [95 % CI {_pts(c['ci'][0])}, {_pts(c['ci'][1])}]"


_PLURAL = {Call.BEATS: "beat", Call.MATCHES: "match", Call.LOSES: "lose"}
"""Calls whose word follows a count ('2 beat'); the others read as their name."""


def _counts(calls: list[str]) -> str:
    n = Counter(calls)
    order = (Call.BEATS, Call.MATCHES, Call.LOSES, Call.INCONCLUSIVE, Call.BORDERLINE)
    parts = [f"{n[c]} {_PLURAL.get(c, c.value)}" for c in order if n[c]]
    if n[Call.RANGE_TOO_NARROW]:
        parts.append(f"{n[Call.RANGE_TOO_NARROW]} share too narrow a usage range (< {MIN_RANGE}) to compare")
    return ", ".join(parts)


def headline(results: dict) -> str:
    """The answer in one sentence (with the paper method's CI), then where usage saturates."""
    st, verdicts = results["steering"], results["verdicts"]
    rows = comparisons(verdicts)
    full = [(m, s, k, r["vs_threshold"]) for m, s, k, r in rows]
    low = [(m, s, k, r["low_usage"]["vs_threshold"]) for m, s, k, r in rows if r["low_usage"]]
    winners = [(m, s, k, c) for m, s, k, c in full + low if c["call"] == Call.BEATS]
    where = f"at layer {st['layer']}"
    if winners:
        named = "; ".join(f"{label(m, s, k)} {_ci(c)}" for m, s, k, c in winners)
        answer = (
            f"Yes, {where}: {len(winners)} comparison(s) beat a constant threshold shift at equal head usage: {named}."
        )
    elif all(c["call"] == Call.RANGE_TOO_NARROW for *_, c in full):
        answer = (
            f"No answer {where}: no SAE steering strategy moves the steered layer's head usage over a range it shares "
            f"with a constant threshold shift (>= {MIN_RANGE}), so none can be compared with it."
        )
    else:
        answer = (
            f"No, {where}: no SAE frequency-set strategy beats a constant shift of the decision threshold at equal "
            f"head usage ({len(full)} strategy × mode × label-source comparisons over the whole usage range each "
            f"reaches: {_counts([c['call'] for *_, c in full])})."
        )
    clauses = (answer, rival_clause(results, rows), _paper_method(results), _low_part(rows), _saturation(rows))
    return " ".join(x for x in (*clauses, learned_clause(results)) if x)


def _paper_method(results: dict) -> str:
    mode = results["steering"]["mode"]
    rec = results["verdicts"].get(mode, {}).get(LabelSource.TRUE, {}).get(Strategy.PER_CLASS)
    if rec is None:
        return ""
    c, paper = rec["vs_threshold"], label(mode, LabelSource.TRUE, Strategy.PER_CLASS)
    if c["delta"] is None:
        return f"The paper's method, {paper}, moves usage too little to compare."
    lo, hi = c["usage_range"]
    return (
        f"The paper's method, {paper}: {_ci(c)} over usage {lo:.2f}–{hi:.2f}, where the "
        f"threshold moves {c['stake_pts']:.2f} pts ({c['call']})."
    )


def _low_part(rows: list) -> str:
    low = [r["low_usage"] for *_, r in rows if r["low_usage"]]
    if not low:
        return "No strategy reaches the usage at which the threshold baseline has lost a point of accuracy."
    calls = [x["vs_threshold"]["call"] for x in low]
    return (
        f"Where heads matter (usage below {low[0]['usage_limit']:.2f}, where the threshold has lost at least "
        f"{low[0]['loss_pts']:g} pt), {len(low)} of the {len(rows)} comparisons reach; there: {_counts(calls)}."
    )


def _saturation(rows: list) -> str:
    by_min = sorted(rows, key=lambda r: r[3]["reach"]["min_usage"]["usage"])
    (m, s, k, r), (m2, s2, k2, r2) = by_min[0], by_min[-1]
    lo, hi = r["reach"]["min_usage"], r2["reach"]["min_usage"]
    top = max(rec["reach"]["max_usage"]["usage"] for *_, rec in rows)
    if top - lo["usage"] < MIN_RANGE:
        return f"Steering does not move usage: every strategy stays at {lo['usage']:.2f}."
    moving = sum(not r["reach"]["saturated"].get("positive", True) for *_, r in rows)
    return (
        f"The lowest usage any strategy reaches ranges from {lo['usage']:.2f} ({label(m, s, k)}, α = {lo['alpha']:g}, "
        f"accuracy {100 * lo['accuracy']:.2f} % [{100 * lo['accuracy_ci'][0]:.2f}, {100 * lo['accuracy_ci'][1]:.2f}]) "
        f"to {hi['usage']:.2f} ({label(m2, s2, k2)})"
        + (f"; {moving} still moving at the α cap." if moving else ", each saturated before the α cap.")
    )


def table(results: dict) -> list[dict]:
    """The compact table: per comparison, its reach, its calls and what was at stake."""
    out = []
    for m, s, k, r in comparisons(results["verdicts"]):
        c, reach = r["vs_threshold"], r["reach"]
        low = r["low_usage"]["vs_threshold"] if r["low_usage"] else None
        ms = r.get("vs_mean_shift")
        out.append(
            {
                "strategy": k,
                "mode": m,
                "label_source": s if class_conditioned(k) else None,
                "usage_range": [reach["min_usage"]["usage"], reach["max_usage"]["usage"]],
                "alpha_at_min_usage": reach["min_usage"]["alpha"],
                "saturated": reach["saturated"],
                "vs_threshold": c["call"],
                "delta_pts": None if c["delta"] is None else 100 * c["delta"],
                "ci_pts": None if c["ci"] is None else [100 * x for x in c["ci"]],
                "stake_pts": c["stake_pts"],
                "low_usage": None if low is None else low["call"],
                "vs_mean_shift": None if ms is None else ms["call"],
            }
        )
    return out
