"""Print bench/results/*.json as Markdown tables (what the README's "Performance" section shows)."""
import json
from pathlib import Path

here = Path(__file__).resolve().parent / "results"
for path in sorted(here.glob("*.json")):
    data = json.loads(path.read_text())
    m = data["machine"]
    print(f"**{path.stem}** — {m.get('gpu', m['platform'])}, {m['threads']} threads, torch {m['torch']}, "
          f"git {m['git_sha'][:8]}, {m['date']}\n")
    rows = data["rows"]
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print()
