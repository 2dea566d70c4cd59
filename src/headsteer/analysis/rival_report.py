"""The report's HTML for the rivals, the learned strengths and the gate readout (tables from results.json)."""

from __future__ import annotations

import html

from headsteer.analysis.rival_answer import NAMES


def _pts(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.2f}"


def _gain(value: float, ci: list[float]) -> str:
    text = f"{_pts(value)} ({_pts(ci[0])}..{_pts(ci[1])})"
    return f"<b>{text}</b>" if ci[0] > 0 or ci[1] < 0 else text


def rivals_html(results: dict) -> str:
    """One table: per rival and target usage, the usage and accuracy reached on test and the gain over the
    single threshold at that usage, with its paired 95 % CI; then each rival's verdict where heads matter."""
    rv = results.get("rivals")
    if not rv:
        return ""
    fit = rv["fit"]
    rows, calls = "", []
    for name, r in rv["rivals"].items():
        f = r["frontier"]
        for i, target in enumerate(f["targets"]):
            gain = _gain(f["gain_vs_threshold"][i], f["gain_vs_threshold_ci"][i])
            rows += (
                f"<tr><td>{html.escape(NAMES.get(name, name))}</td><td>{target:.3f}</td>"
                f"<td>{f['head_usage'][i]:.3f}</td><td>{100 * f['accuracy'][i]:.2f}</td><td>{gain}</td></tr>"
            )
        low = r["vs_threshold_low"]
        calls.append(f"{NAMES.get(name, name)}: {low['call']} below usage {low['usage_max']:g}")
    return (
        '<h2 id="rivals">Rivals fitted on training images</h2>'
        f'<p class="sub">{fit["images"]} training images ({fit["holdout_images"]} held out), objective '
        f"{fit['objective']} ({fit['steps']} Adam steps for the gate), judged on every test image. Bold: the CI of "
        f"the gain excludes 0. {html.escape('; '.join(calls))}.</p>"
        "<table><tr><th>rival</th><th>target usage</th><th>usage (test)</th><th>accuracy (%)</th>"
        f"<th>gain over the threshold, pts (95 % CI)</th></tr>{rows}</table>"
    )


def learned_html(results: dict) -> str:
    """Per learned variant on each SAE, at the focus target: the sparsity path (latents, held-out and test
    accuracy, gain over the threshold) with the held-out choice marked."""
    learned = results.get("learned")
    if not learned or "trained" not in learned:
        return ""
    focus = learned.get("focus", {})
    rows = ""
    for kind in ("trained", "untrained"):
        for variant, rec in learned.get(kind, {}).items():
            want = focus.get(variant, {}).get("target", rec["targets"][0]["target"])
            t = min(rec["targets"], key=lambda x: abs(x["target"] - want))
            for i, r in enumerate(t["path"]):
                mark = " ◀ chosen on held-out" if i == t["chosen"] else ""
                rows += (
                    f"<tr><td>{html.escape(variant)}</td><td>{kind}</td><td>{t['target']:g}</td>"
                    f"<td>{r['m'] or 'all'}</td><td>{r['latents']}</td><td>{100 * r['holdout_accuracy']:.2f}</td>"
                    f"<td>{r['head_usage']:.3f}</td><td>{100 * r['accuracy']:.2f}</td>"
                    f"<td>{_gain(r['gain_vs_threshold'], r['gain_vs_threshold_ci'])}{mark}</td></tr>"
                )
    return (
        '<h2 id="learned">Learned latent strengths: the sparsity path</h2><p class="sub">One strength per latent '
        "(per class and latent for per_class), fitted on training images at each target usage; m: latents free per "
        "row of strengths (refits with the m of largest logit push); the held-out training images choose m (the "
        "fewest within one standard error of the best). The untrained SAE has the trained one's shape, random "
        "unit-norm decoder rows and a tied encoder.</p><table><tr><th>variant</th><th>SAE</th><th>target</th>"
        "<th>m</th><th>strengths ≠ 0</th><th>held-out acc. (%)</th><th>usage (test)</th><th>accuracy (%)</th>"
        f"<th>gain over the threshold, pts (95 % CI)</th></tr>{rows}</table>"
    )


def readout_html(results: dict) -> str:
    """Per strategy's set: quartiles of its latents' firing rate, |W d_j| and predicted push, and how the push
    predicts the measured head effect."""
    g = results.get("gate_readout")
    if not g:
        return ""

    def q(v: list[float]) -> str:
        return "—" if not v else f"{v[1]:.3g} [{v[0]:.3g}, {v[2]:.3g}]"

    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{p['latents']}</td><td>{q(p['firing_rate'])}</td>"
        f"<td>{q(p['mean_activation'])}</td><td>{q(p['direction_norm'])}</td><td>{q(p['push_norm'])}</td></tr>"
        for name, p in {**g["sets"], "every latent that fires": g["all_latents"]}.items()
    )
    pv = g["push_vs_effect"]
    corr = "—" if pv["pearson"] is None else f"Pearson {pv['pearson']:.2f}, Spearman {pv['spearman']:.2f}"
    return (
        '<h2 id="readout">What each latent can do to each head</h2><p class="sub">The decision network reads latent '
        "j through W d_j (its decoder row seen by the gate"
        + ("" if g["linear"] else "; the Jacobian at the training mean for this non-linear gate")
        + f"); predicted push = α · mean activation · |W d_j| at α = {g['alpha']:g}. Median [quartiles] over each "
        f"set's latents. Predicted push against the measured keep-rate change, over every (latent, head): {corr} "
        f"({pv['pairs']} pairs).</p><table><tr><th>set</th><th>latents</th><th>firing rate</th><th>mean activation"
        f"</th><th>|W d_j|</th><th>|push|</th></tr>{rows}</table>"
    )
