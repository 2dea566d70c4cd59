"""Learned latent strengths end to end, on the trained SAE and on the untrained control: fit the sparsity path
at every target usage (cached per variant), score every path point on the test images, and pick each target's
point by the held-out rule (`learned_fit.choose`), never by test accuracy."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from headsteer.steer.alphas import nearest_index
from headsteer.steer.baselines import Curve
from headsteer.steer.fit_cache import FitCache
from headsteer.steer.gate_fit import FitSettings
from headsteer.steer.learned import Codes, named, strength_logits
from headsteer.steer.learned_fit import LearnedProblem, PathPoint, choose, sparsity_paths
from headsteer.steer.names import Strategy
from headsteer.steer.practitioner import OnTest
from headsteer.steer.rival_judge import frontier
from headsteer.steer.uncertainty import Bootstrap


@dataclass(frozen=True)
class PathSettings:
    """The `steer.learned_*` settings of a sparsity path."""

    l1: float
    """Weight of the L1 term of the unrestricted fit (sum of |alpha|)."""
    path: tuple[int, ...]
    """m: latents free per row of strengths, one refit each."""
    steps: int
    """Adam steps of the unrestricted fit."""
    refit_steps: int
    """Adam steps of each refit."""


def variant_names(learned: list[str], label_sources: list[str]) -> list[str]:
    """'global' and 'per_class.<source>' for each label source, as configured."""
    out = []
    for name in learned:
        out += [f"per_class.{s}" for s in label_sources] if name == Strategy.PER_CLASS else [name]
    return out


def fit_paths(p: LearnedProblem, targets: list[float], s: FitSettings, ps: PathSettings, cache: FitCache, family: str):
    """[target][path point] of a variant, from the cache where it was fitted already."""
    entries = cache.load(family)
    per = 1 + len(ps.path)
    if entries is not None and len(entries) == per * len(targets):
        pts = [
            PathPoint(
                rec["m"], ts["alpha"], rec["holdout_accuracy"], rec["holdout_usage"], rec["holdout_gain"], rec["fit"]
            )
            for ts, rec in entries
        ]
        return [pts[i * per : (i + 1) * per] for i in range(len(targets))]
    print(f"[steer] fitting learned strengths: {family} ({len(targets)} targets x {per} path points)", flush=True)
    t0 = time.time()
    s = dataclasses.replace(s, steps=ps.steps)
    out = sparsity_paths(p, targets, s, ps.l1, list(ps.path), ps.refit_steps)
    print(f"[steer] fitted {family} in {time.time() - t0:.1f}s", flush=True)
    cache.save(
        family,
        [
            (
                {"alpha": q.alpha},
                {
                    "m": q.m,
                    "holdout_accuracy": q.holdout_accuracy,
                    "holdout_usage": q.holdout_usage,
                    "holdout_gain": q.holdout_gain,
                    "fit": q.fit,
                },  # fmt: skip
            )
            for path in out
            for q in path
        ],
    )
    return out


def score_on_test(p: LearnedProblem, point: PathPoint, test_codes: Codes, classes: torch.Tensor | None, t: OnTest):
    """A path point's strengths applied to every test image, scored (sweep.PointScores)."""
    dev = test_codes.values.device
    rows = torch.arange(test_codes.values.shape[0], device=dev)
    with torch.no_grad():
        logits = strength_logits(point.alpha[None].to(dev), test_codes, rows, classes, p.G, p.decide, p.sae)[0]
    return t.score(logits)


def summarise(paths, scores, targets, threshold: Curve, boot: Bootstrap, holdout_rows: int, classes: list[str] | None):
    """The variant's record: per target, its path (m, latents, held-out and test accuracy, named strengths) and
    the chosen point; and the chosen points' curve over the targets (returned beside the record)."""
    chosen_scores, record = [], {"targets": []}
    for target, path, sc in zip(targets, paths, scores, strict=True):
        pick = path.index(choose(path, holdout_rows, target))
        curve = Curve.of("m", [q.m for q in path], sc)
        front = frontier(curve, threshold, boot)
        rows = [
            {
                "m": q.m,
                "latents": q.latents,
                "holdout_accuracy": q.holdout_accuracy,
                "holdout_usage": q.holdout_usage,
                "holdout_gain": q.holdout_gain,
                **{
                    k: front[k][i]
                    for k in ("head_usage", "accuracy", "accuracy_ci", "gain_vs_threshold", "gain_vs_threshold_ci")
                },
                "strengths": _names(named(q.alpha), classes),
            }
            for i, q in enumerate(path)
        ]
        record["targets"].append({"target": target, "chosen": pick, "path": rows, "fit": path[pick].fit})
        chosen_scores.append(sc[pick])
    return record, Curve.of("target", list(targets), chosen_scores)


def _names(entries: list[dict], classes: list[str] | None) -> list[dict]:
    if classes is None:
        return [{"latent": e["latent"], "alpha": e["alpha"]} for e in entries]
    return [{"class": classes[e["row"]], "latent": e["latent"], "alpha": e["alpha"]} for e in entries]


def focus(trained: dict, untrained: dict, curves: dict, boot: Bootstrap, usage: float) -> dict:
    """Per variant, at the fitted target nearest `usage`: the chosen point on the trained and on the untrained
    SAE (latents, test accuracy with CI) and the paired CI of the accuracy difference (trained - untrained)."""
    out = {}
    for variant, rec in trained.items():
        if variant not in untrained:
            continue
        ts = [t["target"] for t in rec["targets"]]
        i = nearest_index(ts, usage)  # targets ascend: a tie goes to the lower one
        pick = {"trained": rec["targets"][i], "untrained": untrained[variant]["targets"][i]}
        a = curves["trained"][variant].sample_correct[i]
        b = curves["untrained"][variant].sample_correct[i]
        out[variant] = {
            "target": ts[i],
            **{kind: p["path"][p["chosen"]] for kind, p in pick.items()},
            "accuracy_delta": float(a.float().mean() - b.float().mean()),
            "accuracy_delta_ci": boot.delta_ci(a.float()[:, None], b.float())[:, 0].tolist(),
        }
    return out
