"""Print the per-seed tables of docs/demo.md from the runs of `make demo-seeds` (Markdown on stdout).

    python scripts/demo_tables.py runs/demo runs/demo-seed1 runs/demo-seed2 runs/demo-seed3 runs/demo-seed4

Every number is read from the runs' report/results.json; nothing is typed by hand. Calls are abbreviated
(inconcl., too narrow); a dash is a comparison a seed does not make.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SHORT = {"inconclusive": "inconcl.", "range too narrow": "too narrow"}
RIVALS = ["per_head_threshold", "retrained_gate", "class_threshold.true", "class_threshold.predicted"]


def _call(c: dict | None) -> str:
    return "—" if not c else SHORT.get(c["call"], c["call"])


def _pts(c: dict | None) -> str:
    if not c or c.get("delta") is None:
        return "—"
    return f"{100 * c['delta']:+.2f} [{100 * c['ci'][0]:+.2f}, {100 * c['ci'][1]:+.2f}]"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def rivals_table(results: list[dict]) -> list[str]:
    """Per rival: its gain over the threshold below the low-usage limit, per seed, with the call."""
    limit = results[0]["rivals"]["rivals"]["retrained_gate"]["vs_threshold_low"]["usage_max"]
    out = [_row(["rival", f"vs threshold below usage {limit:g}: Δ pts [95 % CI], call, per seed"]), "|---|---|"]
    for name in RIVALS:
        per = [r["rivals"]["rivals"].get(name, {}).get("vs_threshold_low") for r in results]
        out.append(_row([name, " · ".join(f"{_pts(c)} {_call(c)}" for c in per)]))
    return out


def _cells(r: dict) -> list[tuple[str, str, str, dict]]:
    out, seen = [], set()
    for mode, by_source in r["verdicts"].items():
        for source, by_strategy in by_source.items():
            for strategy, rec in by_strategy.items():
                cc = strategy in ("per_class", "per_class_specific")
                if not cc and (mode, strategy) in seen:
                    continue
                seen.add((mode, strategy))
                out.append((strategy, mode, source if cc else "—", rec))
    return out


def strategy_table(results: list[dict]) -> list[str]:
    """Per strategy x mode x label source: lowest usage, and the calls against the threshold and the gate."""
    head = ["strategy", "mode", "labels", "lowest usage", "vs threshold", "vs retrained gate"]
    out = [_row(head), "|---|---|---|---|---|---|"]
    cells = [_cells(r) for r in results]
    for i, (strategy, mode, source, _) in enumerate(cells[0]):
        recs = [c[i][3] for c in cells]
        usage = " / ".join(f"{rec['reach']['min_usage']['usage']:.2f}" for rec in recs)
        thr = " / ".join(_call(rec["vs_threshold"]) for rec in recs)
        gate = " / ".join(_call((rec.get("vs_rivals") or {}).get("retrained_gate")) for rec in recs)
        out.append(_row([strategy.replace("_", " "), f"`{mode}`", source, usage, thr, gate]))
    return out


def learned_table(results: list[dict]) -> list[str]:
    """Per learned variant on each SAE: the calls against the threshold and the gate; at the focus usage the
    latents chosen on the trained and the untrained SAE and the paired accuracy difference."""
    head = ["learned strengths", "SAE", "vs threshold", "vs threshold, low usage", "vs retrained gate"]
    out = [_row(head + ["vs class threshold (same labels)"]), "|---|---|---|---|---|---|"]
    for kind in ("trained", "untrained"):
        for variant in results[0]["learned"][kind]:
            recs = [r["learned"][kind][variant]["verdict"] for r in results]
            thr = " / ".join(_call(v["vs_threshold"]) for v in recs)
            low = " / ".join(_call((v.get("low_usage") or {}).get("vs_threshold")) for v in recs)
            gate = " / ".join(_call((v.get("vs_rivals") or {}).get("retrained_gate")) for v in recs)
            source = variant.split(".", 1)[1] if "." in variant else None
            cls = " / ".join(_call((v.get("vs_rivals") or {}).get(f"class_threshold.{source}")) for v in recs)
            out.append(_row([variant, kind, thr, low, gate, cls if source else "—"]))
    focus = [r["learned"].get("focus", {}) for r in results]
    out += ["", _row(["at the focus usage", "latents, trained / untrained SAE", "Δ accuracy (trained − untrained)"])]
    out.append("|---|---|---|")
    for variant in focus[0]:
        lat = " · ".join(f"{f[variant]['trained']['latents']} / {f[variant]['untrained']['latents']}" for f in focus)
        delta = " · ".join(
            _pts({"delta": f[variant]["accuracy_delta"], "ci": f[variant]["accuracy_delta_ci"]}) for f in focus
        )
        out.append(_row([f"{variant} (target {focus[0][variant]['target']:g})", lat, delta]))
    return out


def main(run_dirs: list[str]) -> None:
    results = [json.loads((Path(d) / "report" / "results.json").read_text()) for d in run_dirs]
    print(f"Seeds in order: {', '.join(run_dirs)}\n")
    for table in (rivals_table, strategy_table, learned_table):
        print("\n".join(table(results)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
