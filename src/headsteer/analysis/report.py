"""The report files: results.md and a self-contained report.html (figures embedded, no network)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from headsteer.analysis import explorer as analysis_explorer
from headsteer.analysis.paper_table import paper_table
from headsteer.analysis.results import opening, study_rows
from headsteer.analysis.rival_report import learned_html, readout_html, rivals_html
from headsteer.artifacts.io import write_text
from headsteer.steer.names import LabelSource


def write_markdown(path: Path, results: dict, steer: dict, lines: list[str], command: str) -> None:
    """A missed pruning target and the answer first, then `lines`: the verdict, then the other findings."""
    rows = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in paper_table(results, steer))
    text = (
        f"# headsteer results — {results['dataset']}\n\n"
        + "\n".join(f"- {ln}" for ln in [*opening(results), *lines])
        + f"\n\n| | paper | this run |\n|---|---|---|\n{rows}\n\nReproduce: `{command}`\n"
    )
    write_text(path, text)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


CSS = (Path(__file__).parent / "report.css").read_text(encoding="utf-8")
JS = (Path(__file__).parent / "explorer.js").read_text(encoding="utf-8")


def explorer_html(doc: dict | None, sidecar: bool = False) -> str:
    """The interactive explorer (steering and latents): markup, the data as JSON, the inline script
    (`sidecar`: the per-class tables are in explorer.SIDECAR beside the page, loaded first)."""
    if not doc:
        return ""
    side = f'<script src="{analysis_explorer.SIDECAR}"></script>' if sidecar else ""
    # no "<" at all inside the script element ("</script>", "<!--"): JSON reads "\u003c" as the same "<"
    data = json.dumps(doc, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return f"""<h2 id="explore">Explore steering</h2><div class="explorer">
<div class="controls"><label>mode <select id="hs-mode"></select></label>
<label>strategy <select id="hs-strategy"></select></label><label>class from <select id="hs-source"></select></label>
<label>class <select id="hs-class"></select></label>
<label><input type="range" id="hs-alpha" min="0" max="0" step="1" value="0"> <b id="hs-alpha-value"></b></label>
<span class="sub" id="hs-note"></span></div>
<div class="readout"><div>accuracy<div class="big" id="hs-acc"></div><div class="sub" id="hs-acc-ci"></div></div>
<div>head usage, steered layer<div class="big" id="hs-usage"></div><div class="sub" id="hs-usage-ci"></div></div></div>
<h4>keep rate of each head of the steered layer</h4><div id="hs-heads"></div><div id="hs-frontier"></div></div>
<h2 id="latents">Latent browser</h2><div class="explorer"><div class="controls">
<label>sort by <select id="lb-sort"><option value="freq">frequency</option><option value="mean">mean activation</option>
<option value="lift">class specificity (lift)</option>
<option value="effect">head effect (sum of |change|)</option></select></label>
<label>most specific to <select id="lb-class"></select></label>
<button id="lb-prev">◀</button><span id="lb-page"></span><button id="lb-next">▶</button></div>
<table><thead><tr><th>latent</th><th>frequency (train)</th><th>mean activation</th><th>lift (class)</th>
<th>head effect</th></tr></thead><tbody id="lb-rows"></tbody></table><div id="lb-detail"></div>
<p>Your set, ready for the config (sweeps it beside the built-in strategies): <code id="lb-set"></code>
<button id="lb-copy">copy</button> <button id="lb-clear">clear</button></p></div>
{side}<script type="application/json" id="hs-data">{data}</script><script>{JS}</script>"""


def sensitivity_table(results: dict) -> str:
    """Accuracy (%) of each pruned layer with its heads kept / dropped / one dropped, as an HTML table."""
    s = results["sensitivity"]
    H = len(s["table"][0]["head_dropped"]) if s["table"] else 0
    head = "".join(f"<th>h{i} dropped</th>" for i in range(H))

    def some(t: dict) -> str:  # a label-peeking count, not a ceiling
        o = t.get("oracle")
        return f"{100 * o['any_pattern_right']:.2f}" if o else "—"

    rows = "".join(
        f"<tr><td>layer {t['layer']}{' (steered)' if t['layer'] == s['steered_layer'] else ''}</td>"
        f"<td>{t['images']}</td>"
        f"<td>{100 * t['all_kept']:.2f}</td><td>{100 * t['all_dropped']:.2f}</td><td><b>{t['range_pts']:.2f}</b></td>"
        + "".join(f"<td>{100 * a:.2f}</td>" for a in t["head_dropped"])
        + f"<td>{some(t)}</td></tr>"
        for t in s["table"]
    )
    return (
        f"<table><tr><th>layer</th><th>images</th><th>all kept</th><th>all dropped</th><th>range (pts)</th>{head}"
        f"<th>share of images some pattern gets right (%)</th></tr>{rows}</table>"
    )


def _ci_cell(delta: float, ci: list[float], scale: float, fmt: str) -> str:
    lo, hi = ci
    strong = lo > 0 or hi < 0
    text = f"{scale * delta:{fmt}} ({scale * lo:{fmt}}..{scale * hi:{fmt}})"
    return f"<td><b>{text}</b></td>" if strong else f"<td>{text}</td>"


def layer_study_table(results: dict) -> str:
    """The layer study as an HTML table: per layer and strategy, the change at alpha (CI) and the verdict."""
    rows = study_rows(results)
    if not rows:
        return ""
    body = ""
    for r in rows:
        for i, (strategy, v) in enumerate(r["strategies"].items()):
            lead = (
                f"<td rowspan={len(r['strategies'])}>layer {r['layer']}</td><td rowspan={len(r['strategies'])}>"
                f"{r['images']}</td><td rowspan={len(r['strategies'])}><b>{r['range_pts']:.2f}</b></td>"
                if i == 0
                else ""
            )
            c = v["vs_threshold"]
            call = c["call"] if c["delta"] is None else f"{c['call']} ({100 * c['delta']:+.2f} pts)"
            usage_delta = v["usage"][1] - v["usage"][0]
            body += (
                f"<tr>{lead}<td>{html.escape(strategy)}</td><td>{v['usage'][0]:.3f} → {v['usage'][1]:.3f}</td>"
                + _ci_cell(usage_delta, v["usage_delta_ci"], 1, "+.3f")
                + _ci_cell(v["accuracy_delta"], v["accuracy_delta_ci"], 100, "+.2f")
                + f"<td>{html.escape(call)}</td></tr>"
            )
    alpha = rows[0]["alpha"]
    return (
        f"<table><tr><th>layer</th><th>images</th><th>heads kept − dropped (pts)</th><th>strategy</th>"
        f"<th>usage α=0 → α={alpha:g}</th><th>Δ usage (95 % CI)</th><th>Δ accuracy, pts (95 % CI)</th>"
        f"<th>vs threshold at equal usage</th></tr>{body}</table>"
    )


def _range(lo: float, hi: float) -> str:
    return f"{lo:.2f}–{hi:.2f}"


def answer_html(results: dict) -> str:
    """The generated answer and the compact table (strategy x mode -> reach, verdict, power), and a warning
    first when pruning missed its usage target."""
    h = html.escape
    warn = results["pruned"].get("target_missed")
    rows = ""
    for t in results["answer"]["table"]:
        who = t["strategy"] + (
            f" ({LabelSource.TRUE if t['label_source'] == LabelSource.TRUE else 'pred.'})" if t["label_source"] else ""
        )
        sat = "" if all(t["saturated"].values()) else " (still moving)"
        delta = (
            "—" if t["delta_pts"] is None else f"{t['delta_pts']:+.2f} ({t['ci_pts'][0]:+.2f}..{t['ci_pts'][1]:+.2f})"
        )
        stake = "—" if t["stake_pts"] is None else f"{t['stake_pts']:.2f}"
        cells = [who, t["mode"], _range(*t["usage_range"]) + sat, f"{t['alpha_at_min_usage']:g}", t["vs_threshold"]]
        cells += [delta, stake, t["low_usage"] or "—", t["vs_mean_shift"] or "—"]
        rows += "<tr>" + "".join(f"<td>{h(str(c))}</td>" for c in cells) + "</tr>"
    return (
        (f'<p class="warn">{h(warn)}</p>' if warn else "")
        + f'<h2 id="answer">The answer</h2><p class="answer">{h(results["answer"]["sentence"])}</p>'
        + "<table><tr><th>strategy (labels)</th><th>mode</th><th>usage reached</th><th>α at lowest usage</th>"
        "<th>vs threshold</th><th>Δ accuracy, pts (95 % CI)</th><th>at stake, pts</th><th>low-usage part</th>"
        f"<th>vs mean-shift</th></tr>{rows}</table>"
        '<p class="sub">Each row: every α of the grid and of the walk past it until usage saturates. At stake: '
        "how far the threshold baseline's accuracy moves over the shared usage range; a CI containing 0 where "
        "little is at stake is inconclusive, not a match. Borderline: a CI bound within its Monte Carlo error of 0."
        "</p>"
    )


def _cards_html(r: dict) -> str:
    return "".join(
        f'<div class="card">{html.escape(k)}<b>{html.escape(v)}</b></div>'
        for k, v in [
            ("dense accuracy", f"{100 * r['dense']['accuracy']:.2f} %"),
            ("pruned accuracy", f"{100 * r['pruned']['accuracy']:.2f} %"),
            ("head usage (target)", f"{r['pruned']['head_usage']:.3f} ({r['pruned']['target_usage']})"),
            ("SAE FVU / L0", f"{r['sae']['fvu']:.3f} / {r['sae']['l0']:.0f}"),
            ("reconstruction Δacc", f"{100 * r['sae']['reconstruction']['accuracy_delta']:+.2f} pts"),
        ]
    )


def _study_html(r: dict) -> str:
    study = layer_study_table(r)
    if not study:
        return ""
    return (
        f'<h2>Layer study</h2><p class="sub">Every steered layer in mode <code>{html.escape(r["steering"]["mode"])}'
        "</code> with true-label class sets, at the largest α on every layer's grid; bold: the CI excludes 0. "
        f"The verdict uses every α of the layer's grid and of its reach.</p>{study}"
    )


def write_html(
    path: Path,
    results: dict,
    steer: dict,
    lines: list[str],
    verdict: list[str],
    figures: list[tuple[str, Path, str]],
    cards: list[Path],
    meta: dict,
    explorer: dict | None = None,
    lead: list[tuple[str, Path, str]] | None = None,
) -> None:
    """`lead`: the figures that go right under the answer (the frontier first); `figures`: the rest."""
    r = results
    h = html.escape
    lead_html = "".join(
        f"<figure>{_img(p)}<figcaption>{h(caption)}</figcaption></figure>" for _, p, caption in lead or []
    )
    sidecar = explorer is not None and analysis_explorer.place_tables(explorer, path.parent)
    figs = "".join(
        f"<h2>{h(title)}</h2><figure>{_img(p)}<figcaption>{h(caption)}</figcaption></figure>"
        for title, p, caption in figures
    )
    latent = "".join(f"<figure>{_img(p)}</figure>" for p in cards)
    table = "".join(f"<tr><td>{h(a)}</td><td>{h(b)}</td><td>{h(c)}</td></tr>" for a, b, c in paper_table(r, steer))
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>headsteer report — {h(r["dataset"])}</title>
<style>{CSS}</style></head><body>
<h1>Steering head pruning through SAE latents</h1>
<p class="sub">{h(r["dataset"])} · {h(r["model"])} · steered layer {r["steering"]["layer"]}
 · mode <code>{h(r["steering"]["mode"])}</code> · git {h(meta.get("git_sha", "?")[:12])}</p>
<div class="cards">{_cards_html(r)}</div>
{answer_html(r)}
{lead_html}
{rivals_html(r)}
{learned_html(r)}
<h2>Verdict</h2><p class="sub">95 % CIs from a paired bootstrap over test images; a strategy beats a baseline
only when the whole CI of its accuracy gain at equal usage is above 0, by more than the bound's Monte Carlo
error; a CI containing 0 is a match only where the baseline's accuracy moves enough to tell.</p>
<ul class="find">{"".join(f"<li>{h(x)}</li>" for x in verdict)}</ul>
{sensitivity_table(r)}
{_study_html(r)}
{readout_html(r)}
{explorer_html(explorer, sidecar)}
<h2>What else came out</h2><ul class="find">{"".join(f"<li>{h(x)}</li>" for x in lines)}</ul>
<h2>Our numbers beside the paper's</h2>
<table><tr><th></th><th>paper (arXiv 2603.26743)</th><th>this run</th></tr>{table}</table>
{figs}
<h2>Latent cards</h2><p>Latents that drive the top classes: the most class-specific latents (by lift) of each top
class's per-class set.</p>{latent}
<h2>Reproduce</h2><pre>{h(meta.get("command", ""))}</pre>
<p class="sub">Generated {h(meta.get("created", ""))}. Numbers: <code>results.json</code>; every stage's config
and metrics are in the run folder.</p>
</body></html>"""
    write_text(path, doc)
