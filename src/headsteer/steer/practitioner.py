"""The rivals of steering, end to end: fit each on the training rows at every target usage (cached per rival),
score the fitted policies on every test image, and summarise their frontiers (`rival_judge.frontier`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headsteer.core.runtime import progress
from headsteer.model import deterministic_mask
from headsteer.steer.baselines import Curve
from headsteer.steer.fit_cache import FitCache
from headsteer.steer.fit_data import FitSplit
from headsteer.steer.gate_fit import FitSettings
from headsteer.steer.names import LabelSource
from headsteer.steer.rival_judge import frontier
from headsteer.steer.rivals import Policy, apply, fit_rival
from headsteer.steer.uncertainty import Bootstrap
from headsteer.steer.verdict import compare


def rival_names(rivals: list[str], label_sources: list[str]) -> list[str]:
    """Configured rivals, `class_threshold` once per label source ('class_threshold.true', ...)."""
    out = []
    for name in rivals:
        out += [f"{name}.{s}" for s in label_sources] if name == "class_threshold" else [name]
    return out


def applies(rival: str, source: str, class_conditioned: bool) -> bool:
    """Whether a strategy (of label source `source`) is judged against `rival`: the class-conditional threshold
    only for class-conditioned strategies, with their own label source."""
    return not rival.startswith("class_threshold") or (class_conditioned and rival == f"class_threshold.{source}")


def fit_rivals(
    decide, split: FitSplit, targets: list[float], names: list[str], s: FitSettings, C: int, cache: FitCache
) -> dict[str, list[Policy]]:
    """{rival: one fitted Policy per target}, from the cache where a rival was fitted already."""
    out = {}
    for name in progress(names, desc="fitting rivals"):
        entries = cache.load(name)
        if entries is None or [e[1]["target"] for e in entries] != targets:
            policies = fit_rival(name, decide, split, targets, s, C)
            cache.save(name, [(p.params, {**p.record, "target": p.target}) for p in policies])
        else:
            policies = [Policy(name, rec["target"], ts, rec) for ts, rec in entries]
        out[name] = policies
    return out


@dataclass
class OnTest:
    """What scoring on test needs: the decision network, its inputs, the classes per label source, a scorer."""

    decide: torch.nn.Module
    x: torch.Tensor
    """(N, d) test CLS entering the steered layer (on the model's device)."""
    classes: dict[str, torch.Tensor]
    """{'true': labels, 'predicted': unsteered predictions}, (N,) each."""
    scorer: object
    """sweep.Scorer of the steered layer."""

    def score(self, logits: torch.Tensor):
        return self.scorer(deterministic_mask(logits))


def rival_curves(policies: dict[str, list[Policy]], t: OnTest) -> dict[str, Curve]:
    """{rival: its policies scored on every test image, as a Curve over target usage}."""
    out = {}
    for name, ps in policies.items():
        classes = t.classes[name.split(".", 1)[1]] if "." in name else t.classes[LabelSource.TRUE]
        scores = [t.score(apply(p, t.decide, t.x, classes)) for p in ps]
        out[name] = Curve.of("target", [p.target for p in ps], scores)
    return out


def summary(
    policies: dict[str, list[Policy]],
    curves: dict[str, Curve],
    threshold: Curve,
    boot: Bootstrap,
    ref_acc: float,
    floor: float,
    check_usage: float,
) -> dict:
    """Per rival: the fit records, the test frontier, its verdict against the threshold over the whole range
    and below `check_usage` (where heads matter)."""
    out = {}
    thr = (threshold.sample_correct.T, threshold.sample_usage.T)
    for name, curve in curves.items():
        pts = (curve.sample_correct.T, curve.sample_usage.T)
        low = compare(boot, pts, thr, ref_acc, floor, within=(0.0, check_usage)).as_dict()
        out[name] = {
            "fit": [p.record for p in policies[name]],
            "frontier": frontier(curve, threshold, boot),
            "vs_threshold": compare(boot, pts, thr, ref_acc, floor).as_dict(),
            "vs_threshold_low": {"usage_max": check_usage, **low},
        }
    return out
