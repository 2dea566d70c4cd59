"""The answer's clauses about the rivals and the learned strengths, generated from results.json.

- The strongest rival: of the rivals that need no label (per-head threshold, retrained gate), the one with
  the largest gain over the single threshold where heads matter (below `rivals.low_usage_max`, else over its
  whole range); whether it beats the threshold there, with its CI, or why not on this run.
- What the frequency sets (the paper's) reach against it: their calls, counted over every strategy x mode x
  label source, and the lowest usage any of them reaches.
- Learned strengths: the calls of each variant against that rival, and at the pre-set focus usage, the
  trained SAE against the untrained control: latents used and the paired accuracy difference.
"""

from __future__ import annotations

from collections import Counter

from headsteer.steer.names import Call
from headsteer.steer.verdict import VERBS

LABEL_FREE = ("per_head_threshold", "retrained_gate")
NAMES = {
    "per_head_threshold": "a per-head threshold",
    "retrained_gate": "a retrained gate",
    "class_threshold.true": "a per-class threshold (true labels)",
    "class_threshold.predicted": "a per-class threshold (predicted class)",
}


def _pts(x: float) -> str:
    return f"{100 * x:+.2f}"


def _ci(c: dict) -> str:
    return f"{_pts(c['delta'])} pts [95 % CI {_pts(c['ci'][0])}, {_pts(c['ci'][1])}]"


def strongest(results: dict) -> str | None:
    """The label-free rival with the largest gain over the threshold where heads matter (None without rivals)."""
    rivals = results.get("rivals", {}).get("rivals", {})

    def gain(name: str) -> float:
        r = rivals[name]
        c = r["vs_threshold_low"] if r["vs_threshold_low"]["delta"] is not None else r["vs_threshold"]
        return c["delta"] if c["delta"] is not None else float("-inf")

    names = [n for n in LABEL_FREE if n in rivals]
    return max(names, key=gain) if names else None


def rival_clause(results: dict, cells: list) -> str:
    """Where the strongest rival stands against the threshold, and the frequency sets against it; cells: every
    (mode, source, strategy, record) comparison of the sweep (`answer.comparisons`)."""
    name = strongest(results)
    if name is None:
        return ""
    r = results["rivals"]["rivals"][name]
    low, limit = r["vs_threshold_low"], r["vs_threshold_low"]["usage_max"]
    who = f"The strongest rival fitted on training images, {NAMES[name]},"
    if low["call"] == Call.BEATS:
        head = f"{who} beats the threshold where heads matter (usage below {limit:g}): {_ci(low)}."
    elif low["delta"] is None:
        head = f"{who} does not reach usage below {limit:g} on this run, so where heads matter is untested."
    else:
        head = (
            f"{who} does not beat the threshold below usage {limit:g} on this run ({low['call']}: {_ci(low)}, "
            f"with {low['stake_pts']:.2f} pts at stake there)."
        )
    calls = [rec.get("vs_rivals", {}).get(name, {}).get("call") for *_, rec in cells]
    calls = [c for c in calls if c]
    if not calls:
        return head
    reach = min(rec["reach"]["min_usage"]["usage"] for *_, rec in cells)
    return (
        f"{head} Against it, the frequency sets: {_counts(calls)} of {len(calls)} comparisons; the lowest usage any "
        f"reaches is {reach:.2f}."
    )


def learned_clause(results: dict) -> str:
    """The learned strengths against the strongest rival, and the trained SAE against the untrained one."""
    learned, name = results.get("learned"), strongest(results)
    if not learned or "trained" not in learned:
        return ""
    parts = []
    for variant, rec in learned["trained"].items():
        c = rec["verdict"].get("vs_rivals", {}).get(name) if name else None
        c = c or rec["verdict"]["vs_threshold"]
        against = NAMES.get(name, "the threshold") if rec["verdict"].get("vs_rivals") else "the threshold"
        parts.append(f"{variant} {VERBS[c['call']]} {against}" + (f" ({_ci(c)})" if c["delta"] is not None else ""))
    text = "Learned latent strengths on the trained SAE: " + "; ".join(parts) + "."
    return " ".join(x for x in (text, _focus(learned.get("focus", {}))) if x)


def _focus(focus: dict) -> str:
    bits = []
    for variant, f in focus.items():
        t, u = f["trained"], f["untrained"]
        lo, hi = f["accuracy_delta_ci"]
        bits.append(
            f"{variant}: {t['latents']} vs {u['latents']} latents, accuracy {_pts(f['accuracy_delta'])} pts "
            f"[{_pts(lo)}, {_pts(hi)}] (trained − untrained)"
        )
    if not bits:
        return ""
    return (
        f"At target usage {next(iter(focus.values()))['target']:g}, trained against untrained SAE: "
        + "; ".join(bits)
        + "."
    )


def _counts(calls: list[str]) -> str:
    n = Counter(calls)
    order = (Call.BEATS, Call.MATCHES, Call.LOSES, Call.INCONCLUSIVE, Call.BORDERLINE, Call.RANGE_TOO_NARROW)
    return ", ".join(f"{n[c]} {c}" for c in order if n[c])
