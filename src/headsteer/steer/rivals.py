"""What a practitioner would do instead of SAE steering to lower the steered layer's head usage, each fitted
on training images (`fit_data.FitSplit`) at a grid of target usages and judged on test:

- `per_head_threshold`: one shift per head of the decision logits (`group_threshold`).
- `retrained_gate`: the steered layer's decision network refit, everything else frozen (`gate_fit`).
- `class_threshold`: one shift per class of the decision logits, for the class-conditioned strategies,
  with the same label source (the true class, an oracle, or the unsteered model's prediction).

The single threshold (one shift for every head and image, `baselines.threshold_curve`) is the rival these
improve on. A policy maps the decision network's input (N, d), and the class of each image, to logits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from headsteer.steer.fit_data import FitSplit
from headsteer.steer.gate_fit import FitRecord, FitSettings, fit
from headsteer.steer.group_threshold import search
from headsteer.steer.holdout import HoldoutCheck
from headsteer.steer.names import LabelSource

RIVALS = ("per_head_threshold", "retrained_gate", "class_threshold")
"""Rival names (`steer.rivals`); `class_threshold` is fitted once per label source."""


@dataclass
class Policy:
    """One fitted rival at one target usage: its parameters, and how it did on the fit rows."""

    name: str
    """A RIVALS name, with the label source for `class_threshold` ('class_threshold.true')."""
    target: float
    """Target head usage it was fitted to."""
    params: dict[str, torch.Tensor]
    """`shifts` (H,) or (C,), or the refit decision network's state dict."""
    record: dict
    """The fit's settings and its accuracy and usage on the fit rows."""


def apply(policy: Policy, decide: torch.nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(N, H) decision logits of `policy` for decision inputs x (N, d) of classes (N,)."""
    with torch.no_grad():
        if policy.name.startswith("retrained_gate"):
            net = copy.deepcopy(decide)
            net.load_state_dict({k: v.to(x.device) for k, v in policy.params.items()})
            return net(x)
        shifts = policy.params["shifts"].to(x.device)
        a = decide(x)
        if policy.name.startswith("class_threshold"):
            return a + shifts[classes.to(x.device)][:, None]
        return a + shifts[None, :]


def _fit_part(split: FitSplit) -> torch.Tensor:
    return (~split.holdout).nonzero().squeeze(1)


def fit_grouped(decide, split: FitSplit, target: float, name: str, source: str | None, C: int) -> Policy:
    """A per-head (source None) or per-class threshold at `target` usage on the fit rows."""
    rows, dev = _fit_part(split), next(decide.parameters()).device
    x = split.cls[rows].to(dev)
    with torch.no_grad():
        logits = decide(x).cpu()  # (r, H)
    H = logits.shape[1]
    if source is None:
        groups, G = torch.arange(H).expand(rows.numel(), H), H
    else:
        groups, G = split.classes(source)[rows][:, None].expand(-1, H), C
    kept = round(target * logits.numel())
    found = search(logits, groups, G, kept, lambda masks, pos: split.correct_rows(masks, rows[pos]))
    record = {"target": target, "moves": found.moves, "kept_pairs": kept}
    policy = Policy(name, target, {"shifts": found.shifts}, record)
    masks = (apply(policy, decide, x, split.classes(source or LabelSource.TRUE)[rows].to(dev)) > 0).float().cpu()
    policy.record |= {"accuracy": split.correct_rows(masks, rows).mean().item(), "usage": masks.mean().item()}
    return policy


def fit_gates(decide: torch.nn.Module, split: FitSplit, targets: list[float], s: FitSettings) -> list[Policy]:
    """The steered layer's decision network refit once per target usage, each starting from the trained one;
    the T copies train together (stacked parameters, `torch.func.vmap`), each toward its own target."""
    params, buffers = torch.func.stack_module_state([copy.deepcopy(decide) for _ in targets])  # (T, ...) each
    for v in params.values():
        v.requires_grad_(True)
    shape = copy.deepcopy(decide).to("meta")

    def one(p, b, x):
        return torch.func.functional_call(shape, (p, b), (x,))

    x = split.cls.to(next(decide.parameters()).device)
    logits = torch.func.vmap(one, in_dims=(0, 0, None))
    check = HoldoutCheck(split, decide)
    recs: list[FitRecord] = fit(
        lambda rows: logits(params, buffers, x[rows.to(x.device)]),
        list(params.values()),
        split,
        targets,
        s,
        None,
        check,
    )
    state = {**params, **buffers}
    return [
        Policy("retrained_gate", t, {k: v[i].detach().cpu().clone() for k, v in state.items()}, rec.as_dict())
        for i, (t, rec) in enumerate(zip(targets, recs, strict=True))
    ]


def fit_rival(name: str, decide, split: FitSplit, targets: list[float], s: FitSettings, C: int) -> list[Policy]:
    """Rival `name` ('per_head_threshold', 'retrained_gate', 'class_threshold.<source>') at every target."""
    if name == "retrained_gate":
        return fit_gates(decide, split, targets, s)
    source = None if name == "per_head_threshold" else name.split(".", 1)[1]
    return [fit_grouped(decide, split, t, name, source, C) for t in targets]


def targets(grid: list[float], unsteered_usage: float) -> list[float]:
    """The target usages: the configured grid and the unsteered model's usage on the fit rows, ascending."""
    return sorted({round(t, 6) for t in grid} | {round(unsteered_usage, 6)})
