"""Everything the steer stage fits on training images for the steered layer, beside the sweep: the rivals
(`practitioner`), learned latent strengths on the trained SAE and on an untrained one (`strongest_case`), the
untrained SAE's frequency sets (a sweep of its own), and the per-latent gate readout (`readout`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from headsteer.steer.alphas import alpha_grid
from headsteer.steer.baselines import Curve
from headsteer.steer.fit_cache import FitCache
from headsteer.steer.fit_data import FitSplit
from headsteer.steer.gate_fit import FitSettings
from headsteer.steer.judge import Judging, judge_all, judge_curve
from headsteer.steer.learned import Codes, gate_directions, is_linear, pushes
from headsteer.steer.learned_fit import LearnedProblem
from headsteer.steer.names import LabelSource, Strategy
from headsteer.steer.practitioner import OnTest, fit_rivals, rival_curves, rival_names, summary
from headsteer.steer.random_sae import control_sae
from headsteer.steer.reach import ReachSettings
from headsteer.steer.rivals import targets as target_grid
from headsteer.steer.stats import IndexSets, latent_sets
from headsteer.steer.strongest_case import PathSettings, fit_paths, focus, score_on_test, summarise, variant_names
from headsteer.steer.summary import curves
from headsteer.steer.sweep import SweepGrid, run_sweep
from headsteer.steer.uncertainty import Bootstrap


@dataclass
class FitContext:
    """What every fit and its scoring on test share."""

    decide: torch.nn.Module
    """The steered layer's (frozen) decision network."""
    split: FitSplit
    side: OnTest
    threshold: Curve
    """The single-threshold baseline on test."""
    boot: Bootstrap
    classes: list[str]
    settings: FitSettings
    cache: FitCache
    label_sources: list[str]
    targets: list[float]
    """Target usages of every fit (`targets`)."""


def targets(decide: torch.nn.Module, split: FitSplit, grid: list[float]) -> list[float]:
    """The configured grid and the unsteered decision network's usage on the fit rows."""
    with torch.no_grad():
        usage = (decide(split.cls.to(next(decide.parameters()).device)) > 0).float().mean().item()
    return target_grid(grid, usage)


def fit_settings(sc, seed: int) -> FitSettings:
    """From a SteerConfig."""
    return FitSettings(sc.fit_steps, sc.fit_lr, sc.fit_usage_weight, seed=seed)


def rivals(ctx: FitContext, names: list[str], ref_acc: float, floor: float, low_max: float) -> tuple[dict, dict]:
    """(the `rivals` record, {rival: Curve on test})."""
    policies = fit_rivals(
        ctx.decide,
        ctx.split,
        ctx.targets,
        rival_names(names, ctx.label_sources),
        ctx.settings,
        len(ctx.classes),
        ctx.cache,
    )
    curves = rival_curves(policies, ctx.side)
    ci = ctx.boot.interval(ctx.boot.means(ctx.threshold.sample_correct.T)).T.tolist()  # (K, 2)
    doc = {
        "fit": fit_record(ctx),
        "threshold": {**ctx.threshold.summary(), "accuracy_ci": ci},
        "rivals": summary(policies, curves, ctx.threshold, ctx.boot, ref_acc, floor, low_max),
    }
    return doc, curves


def fit_record(ctx: FitContext) -> dict:
    """Where and how every policy was fitted (results.json `rivals.fit`)."""
    s = ctx.settings
    return {
        "split": "train",
        "images": len(ctx.split),
        "holdout_images": int(ctx.split.holdout.sum()),
        "targets": ctx.targets,
        "objective": "exact" if ctx.split.table is not None else "gumbel",
        "steps": s.steps,
        "lr": s.lr,
        "usage_weight": s.usage_weight,
        "seed": s.seed,
    }


def learned(
    ctx: FitContext, sae, kind: str, variants: list[str], ps: PathSettings, test_codes: Codes
) -> tuple[dict, dict]:
    """({variant: record}, {variant: Curve of the chosen points}) of learned strengths on `sae` ('trained' or
    'untrained'); test_codes: its codes of the test images."""
    dev = ctx.side.x.device
    at = ctx.split.cls.float().mean(0)
    directions = gate_directions(ctx.decide, sae, at)
    G = directions if is_linear(ctx.decide) else None
    codes = Codes.of(sae, ctx.decide, ctx.split.cls)
    push = pushes(codes, directions)
    docs, curves = {}, {}
    for variant in variant_names(variants, ctx.label_sources):
        source = variant.split(".", 1)[1] if "." in variant else None
        fit_classes = None if source is None else ctx.split.classes(source).to(dev)
        R = 1 if source is None else len(ctx.classes)
        p = LearnedProblem(sae, ctx.decide, ctx.split, codes, fit_classes, R, G, push)
        paths = fit_paths(p, ctx.targets, ctx.settings, ps, ctx.cache, f"learned.{kind}.{variant}")
        test_classes = None if source is None else ctx.side.classes[source].to(dev)
        scores = [[score_on_test(p, q, test_codes, test_classes, ctx.side) for q in path] for path in paths]
        held = int(ctx.split.holdout.sum())
        names = None if source is None else ctx.classes
        docs[variant], curves[variant] = summarise(paths, scores, ctx.targets, ctx.threshold, ctx.boot, held, names)
    return docs, curves


def reference(ctx: FitContext, test_codes: Codes) -> torch.Tensor:
    """(N,) per-image correctness on test of the SAE's plain reconstruction (every strength 0); test_codes: the
    SAE's codes of the test images."""
    return ctx.side.score(test_codes.base).correct


def judge_learned(docs: dict, curves: dict, judging, ref: torch.Tensor) -> None:
    """Add each variant's verdicts (`judge.judge_curve`) to its record, in place."""
    for variant, curve in curves.items():
        source = variant.split(".", 1)[1] if "." in variant else LabelSource.TRUE
        docs[variant]["verdict"] = judge_curve(curve, judging, source, "." in variant, ref)


def fit_all(sc, seed: int, ctx: FitContext, sae, train, base: tuple, ref_acc: float) -> tuple:
    """(rivals and learned strengths (trained and untrained SAE), the Judging every verdict then uses, the
    untrained SAE or None)."""
    threshold, mean_shift = base
    out, on_test, gate = {}, {}, None
    if sc.rivals:
        out["rivals"], on_test = rivals(ctx, sc.rivals, ref_acc, sc.stake_floor_pts, sc.low_usage_max)
        gate = out["rivals"]["rivals"].get("retrained_gate", {}).get("frontier")
    j = Judging(ctx.boot, threshold, mean_shift, sc.stake_floor_pts, sc.low_usage_loss_pts, on_test, gate)
    saes = {"trained": sae}
    if sc.untrained_sae:
        saes["untrained"] = control_sae(sae, train.cls, seed)
    if sc.learned:
        ps = PathSettings(sc.learned_l1, tuple(sc.learned_path), sc.learned_steps, sc.learned_refit_steps)
        docs, learned_curves = {}, {}
        for kind, model in saes.items():
            test_codes = Codes.of(model, ctx.decide, ctx.side.x)
            docs[kind], learned_curves[kind] = learned(ctx, model, kind, sc.learned, ps, test_codes)
            judge_learned(docs[kind], learned_curves[kind], j, reference(ctx, test_codes))
        if "untrained" in docs:
            docs["focus"] = focus(docs["trained"], docs["untrained"], learned_curves, ctx.boot, sc.focus_usage)
        out["learned"] = docs
    return out, j, saes.get("untrained")


def untrained_frequency_sets(sc, seed: int, model, rsae, data: tuple, C: int, scorer, j: Judging, path: Path) -> dict:
    """The frequency strategies on the untrained SAE `rsae` (headline mode, every label source, with reach),
    judged like the trained SAE's; its latent sets saved to `path`. data: (train, test) Activations. Not
    `random`: a random set of a random dictionary is the trained SAE's random band again, at R times the cost."""
    train, test = data
    sets = latent_sets(sc, seed, rsae, train, C, path, {})
    strategies = [s for s in sc.strategies if s != Strategy.RANDOM]
    grid = SweepGrid([sc.mode], sc.label_sources, strategies, alpha_grid(sc))
    rs = ReachSettings.of(sc) if sc.reach else None
    res = run_sweep(model, rsae, scorer, test, sets, grid, sc.batch_size, sc.random_draws, rs)
    return {
        "mode": sc.mode,
        "curves": curves(res, sc.mode, j.boot),
        "verdicts": judge_all(res, j, IndexSets.class_conditioned),
    }
