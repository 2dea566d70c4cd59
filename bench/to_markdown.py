"""Print bench/results/*.json as Markdown tables (what docs/performance.md shows).

Usage: python bench/to_markdown.py [--device cpu|cuda] [--results DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness import device_kind, parse_result_name

RESULTS = Path(__file__).resolve().parent / "results"


def markdown(path: Path) -> str:
    """One result file -> a heading line (what, where, when) and a Markdown table of its rows."""
    bench, subset, kind = parse_result_name(path.name)
    data = json.loads(path.read_text())
    m, rows = data["machine"], data["rows"]
    where = "" if not subset else " (" + ", ".join(f"{k} {v.replace('+', ' ')}" for k, v in subset.items()) + ")"
    lines = [
        (
            f"**{bench}{where}, {kind}** ({path.name}) — {m.get('gpu', m['platform'])}, {m['threads']} threads, "
            f"torch {m['torch']}, git {m['git_sha'][:8]}, {m['date']}"
        ),
        "",
    ]
    cols = list(rows[0])
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of result files (default: %(default)s)")
    p.add_argument("--device", help="only the results of this kind of device (cpu, cuda); default: all")
    p.add_argument("--quick", action="store_true", help="accepted for the bench scripts' command line; no effect")
    args = p.parse_args(argv)
    paths = sorted(args.results.glob("*.json"))
    if args.device:
        paths = [path for path in paths if parse_result_name(path.name)[2] == device_kind(args.device)]
    for path in paths:
        print(markdown(path))


if __name__ == "__main__":
    main()
