"""What `headsteer aggregate` reads of each seed's rivals and learned strengths, and every call a results.json
makes (threshold, mean-shift, low-usage part, each rival; the rivals themselves; the learned strengths)."""

from __future__ import annotations

from headsteer.analysis.answer import comparisons, label


def calls(results: list[dict]) -> dict[str, list[str | None]]:
    """{subject: the call in each seed} of every comparison any seed has (full range, mean-shift, low usage, every
    rival; the rivals against the threshold; the learned strengths)."""
    out: dict[str, list[str | None]] = {}
    for i, r in enumerate(results):
        for subject, c in _subjects(r):
            if c:
                out.setdefault(subject, [None] * len(results))[i] = c["call"]
    return out


def _subjects(r: dict) -> list[tuple[str, dict | None]]:
    """(subject, comparison record) of every call one results.json makes."""
    out = []
    for mode, source, strategy, rec in comparisons(r.get("verdicts") or {}):
        out += _record_calls(label(mode, source, strategy), rec)
    for name, rec in ((r.get("rivals") or {}).get("rivals") or {}).items():
        low = rec.get("vs_threshold_low") or {}
        out += [(f"{name} vs threshold", rec.get("vs_threshold"))]
        out += [(f"{name} vs threshold below usage {low.get('usage_max', '?')}", low or None)]
    for kind in ("trained", "untrained"):
        for variant, rec in ((r.get("learned") or {}).get(kind) or {}).items():
            out += _record_calls(f"learned {variant} ({kind} SAE)", rec.get("verdict") or {})
    return out


def _record_calls(who: str, rec: dict) -> list[tuple[str, dict | None]]:
    out = [
        (f"{who} vs threshold", rec.get("vs_threshold")),
        (f"{who} vs mean-shift", rec.get("vs_mean_shift")),
        (f"{who} vs threshold in the low-usage part", (rec.get("low_usage") or {}).get("vs_threshold")),
    ]
    return out + [(f"{who} vs {name}", c) for name, c in (rec.get("vs_rivals") or {}).items()]


def rival_readings(r: dict) -> list[tuple[str, str, str, float | None]]:
    """(key, label, kind, value): each rival's gain over the threshold where heads matter, and the trained minus
    untrained SAE accuracy of the learned strengths at the focus usage."""
    out = []
    for name, rec in ((r.get("rivals") or {}).get("rivals") or {}).items():
        low = rec.get("vs_threshold_low") or {}
        text = f"{name} vs threshold below usage {low.get('usage_max', '?')}: accuracy change at equal usage"
        out.append((f"rivals.{name}.vs_threshold_low.delta", text, "acc_delta", low.get("delta")))
    for variant, f in ((r.get("learned") or {}).get("focus") or {}).items():
        text = f"learned {variant} at target usage {f['target']:g}: trained − untrained SAE accuracy"
        out.append((f"learned.focus.{variant}.accuracy_delta", text, "acc_delta", f.get("accuracy_delta")))
    return out
