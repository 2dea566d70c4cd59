"""The files of `headsteer aggregate`: aggregate.json, aggregate.md and a self-contained aggregate.html."""

from __future__ import annotations

import html
from dataclasses import asdict
from pathlib import Path

from headsteer.analysis.aggregate import KINDS, Aggregate
from headsteer.artifacts.io import write_json, write_text


def _num(value: float | None, kind: str, sign: str | None = None) -> str:
    scale, decimals, kind_sign, _ = KINDS[kind]
    return "—" if value is None else f"{value * scale:{kind_sign if sign is None else sign}.{decimals}f}"


def _rows(agg: Aggregate) -> list[list[str]]:
    """The table: figure | value in each seed | mean ± sd."""
    rows = [["figure", "seeds " + ", ".join(str(r.seed) for r in agg.runs), "mean ± sd"]]
    for fig in agg.figures:
        suffix = KINDS[fig.kind][3]
        spread = f" ± {_num(fig.sd, fig.kind, sign='')}" if fig.sd is not None else ""
        values = ", ".join(_num(v, fig.kind) for v in fig.values)
        rows.append([fig.label, values + suffix, f"{_num(fig.mean, fig.kind)}{spread}{suffix}"])
    return rows


def _header(agg: Aggregate) -> list[str]:
    """Title and the line explaining the table."""
    dataset = (agg.config.get("data") or {}).get("name", "")
    seeds = ", ".join(str(r.seed) for r in agg.runs)
    return [
        f"headsteer aggregate — {dataset}, {len(agg.runs)} seeds ({seeds})",
        "Runs of one config that differ only in `seed`. Each figure: its value in each seed, then mean ± sample sd "
        "(n − 1). Accuracies in %, their changes in points (pts); usage is the fraction of heads kept.",
    ]


def _markdown(agg: Aggregate) -> str:
    title, intro = _header(agg)
    head, *rows = _rows(agg)
    table = "\n".join(f"| {' | '.join(row)} |" for row in rows)
    found = "".join(f"- {c.text}\n" for c in agg.conclusions)
    runs = "".join(f"- seed {r.seed}: `{r.path}` (git {r.git_sha[:12]})\n" for r in agg.runs)
    head_md = f"| {' | '.join(head)} |\n|---|---|---|"
    return f"# {title}\n\n{intro}\n\n{head_md}\n{table}\n\n## Conclusions\n\n{found}\n## Runs\n\n{runs}"


CSS = (Path(__file__).parent / "report.css").read_text(encoding="utf-8") + ".holds{color:#1f6f3a}.differs{color:#a33}"


def _html(agg: Aggregate) -> str:
    h, (title, intro) = html.escape, _header(agg)
    head, *rows = _rows(agg)
    table = "<tr>" + "".join(f"<th>{h(c)}</th>" for c in head) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{h(c)}</td>" for c in row) + "</tr>" for row in rows)
    found = "".join(f'<li class="{"holds" if c.holds else "differs"}">{h(c.text)}</li>' for c in agg.conclusions)
    runs = "".join(f"<li>seed {r.seed}: <code>{h(r.path)}</code> (git {h(r.git_sha[:12])})</li>" for r in agg.runs)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{h(title)}</title>
<style>{CSS}</style></head><body>
<h1>{h(title)}</h1><p class="sub">{h(intro)}</p><table>{table}</table>
<h2>Conclusions</h2><ul class="find">{found or "<li>none: no verdicts or steering curves</li>"}</ul>
<h2>Runs</h2><ul>{runs}</ul>
</body></html>
"""


def write_aggregate(agg: Aggregate, out_dir: str | Path) -> Path:
    """aggregate.json (the `Aggregate`), aggregate.md, a self-contained aggregate.html; returns the HTML's path."""
    out = Path(out_dir)
    write_json(out / "aggregate.json", asdict(agg))
    write_text(out / "aggregate.md", _markdown(agg))
    write_text(out / "aggregate.html", _html(agg))
    return out / "aggregate.html"
