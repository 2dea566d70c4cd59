"""Fitting a head policy of the steered layer on training images, toward a target head usage.

A policy is any differentiable map from a fit row to the steered layer's decision logits a (b, H): a
retrained decision network, learned SAE latent strengths. Heads are kept independently with probability
sigmoid(a_h) while fitting; the deterministic gate (a_h > 0) is what gets judged.
- H <= MAX_EXACT_HEADS: the exact expected accuracy over the 2^H head patterns, from the outcome of every
  pattern on every fit image (`FitSplit.table`): E[acc] = mean_n sum_p P(p | a_n) right(n, p), with
  P(p | a) = prod_h sigmoid(a_h)^p_h (1 - sigmoid(a_h))^(1 - p_h). Loss: -E[acc] + w (E[usage] - t)^2.
  Full batch, Adam; no sampling noise, so a fit repeats bitwise. Images that every pattern gets right, or
  none, do not depend on the logits and are left out of the sum.
- More heads: masks drawn by Gumbel-Sigmoid with a straight-through gradient, through the frozen network
  after the mask, with the prune stage's loss: cross-entropy + w |usage - t|, the usage that of the noise-free
  gate (the prune stage's `usage_on: deterministic`), seeded minibatches.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from headsteer.model import deterministic_mask, gumbel_sigmoid_mask
from headsteer.steer.fit_data import FitSplit, pattern_bits
from headsteer.steer.holdout import BestSteps, HoldoutCheck
from headsteer.steer.tails import trainable


@dataclass(frozen=True)
class FitSettings:
    """How every policy is fitted (the `steer.fit_*` settings)."""

    steps: int
    """Optimizer steps per fit."""
    lr: float
    """Adam learning rate."""
    usage_weight: float
    """w: weight of the usage term (squared in the exact objective, absolute in the Gumbel one)."""
    tau: float = 5.0
    """Gumbel-Sigmoid temperature (more than MAX_EXACT_HEADS heads only)."""
    batch_size: int = 256
    """Minibatch of the Gumbel-Sigmoid fits (more than MAX_EXACT_HEADS heads only)."""
    seed: int = 0
    """Seeds the Gumbel-Sigmoid fits' minibatches and noise."""
    check_every: int = 25
    """Steps between held-out checks (fits given a `holdout.HoldoutCheck` keep their best checked step)."""


@dataclass
class FitRecord:
    """One fit's outcome on the fit rows (the deterministic gate)."""

    target: float
    """Target head usage of the steered layer."""
    objective: str
    """'exact' (expected accuracy over every head pattern) or 'gumbel'."""
    steps: int
    """Optimizer steps run."""
    step: int
    """The step whose parameters were kept (the best held-out check near the target; `steps` without checks)."""
    accuracy: float
    """Accuracy on the fit rows."""
    usage: float
    """Head usage of the steered layer on the fit rows."""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def pattern_log_probs(logits: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """(..., N, 2^H) log P(pattern | logits (..., N, H)) under independent Bernoulli(sigmoid(a_h)) heads;
    bits (2^H, H)."""
    return F.logsigmoid(logits) @ bits.T + F.logsigmoid(-logits) @ (1 - bits).T


def expected_accuracy(logits: torch.Tensor, table: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """(..., N) expected correctness of each image under logits (..., N, H); table (N, 2^H) 1 where a pattern
    gets the image right."""
    return (pattern_log_probs(logits, bits).exp() * table).sum(-1)


@contextmanager
def frozen(module: torch.nn.Module):
    """No parameter of `module` gathers a gradient inside; restored in `finally`."""
    flags = [p.requires_grad for p in module.parameters()]
    try:
        for p in module.parameters():
            p.requires_grad_(False)
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def fit(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    params: list[torch.Tensor],
    split: FitSplit,
    targets: list[float],
    s: FitSettings,
    penalty: Callable[[], torch.Tensor] | None = None,
    check: HoldoutCheck | None = None,
) -> list[FitRecord]:
    """Fit T policies at once, one per target usage: `logits_fn(rows) -> (T, r, H)` gives each policy's logits
    of fit rows `rows`; `params` (leaf tensors, leading dim T) hold all T policies, which share no parameter, so
    the summed loss fits each to its own target. `penalty()` is added to the loss (e.g. an L1 term). With
    `check`, every `s.check_every` steps the held-out rows score each policy, and each keeps its best step."""
    rows = (~split.holdout).nonzero().squeeze(1)
    opt = torch.optim.Adam(params, lr=s.lr)
    goal = torch.tensor(targets, device=params[0].device)
    step = _exact_step(split, rows, params[0].device) if split.table is not None else _gumbel_step(split, s)
    best = BestSteps(params, targets) if check is not None else None
    with torch.random.fork_rng(devices=[]):  # the Gumbel noise is seeded; the caller's generator is untouched
        torch.manual_seed(s.seed)
        for i in range(1, s.steps + 1):
            opt.zero_grad(set_to_none=True)
            loss = step(logits_fn, rows, goal, s)
            if penalty is not None:
                loss = loss + penalty()
            loss.backward()
            opt.step()
            if best is not None and (i % s.check_every == 0 or i == s.steps):
                with torch.no_grad():
                    best.check(i, check.scores(deterministic_mask(logits_fn(check.rows))))
    kept = best.restore(s.steps) if best is not None else [s.steps] * len(targets)
    return records(logits_fn, split, rows, targets, s, kept)


def records(logits_fn, split: FitSplit, rows, targets: list[float], s: FitSettings, kept: list[int]) -> list[FitRecord]:
    """Each policy's accuracy and usage on the rows `rows` of the split (deterministic gate); kept: its step."""
    objective = "exact" if split.table is not None else "gumbel"
    with torch.no_grad():
        masks = deterministic_mask(logits_fn(rows)).cpu()  # (T, r, H)
    out = []
    for t, target in enumerate(targets):
        right = split.correct(_scatter_rows(masks[t], rows, len(split)))[rows]
        out.append(FitRecord(target, objective, s.steps, kept[t], right.mean().item(), masks[t].mean().item()))
    return out


def _scatter_rows(masks: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
    """(n, H) masks holding `masks` (r, H) at `rows` and every head kept elsewhere."""
    full = torch.ones(n, masks.shape[1], dtype=masks.dtype)
    full[rows] = masks.cpu()
    return full


def _exact_step(split: FitSplit, rows: torch.Tensor, device: torch.device):
    """The exact expected-accuracy step. An image that every head pattern gets right (or none does) has the same
    expected accuracy whatever the logits: only the others ("mixed" rows) enter the costly 2^H sum; the usage
    term reads every row."""
    table = split.table[rows]
    mixed = (table.min(1).values != table.max(1).values).nonzero().squeeze(1)  # positions within `rows`
    constant = float(table.min(1).values.sum())  # rows every pattern gets right
    table, mixed, bits = table[mixed].to(device), mixed.to(device), pattern_bits(split.num_heads).to(device)

    def step(logits_fn, rows, goal: torch.Tensor, s: FitSettings) -> torch.Tensor:
        logits = logits_fn(rows)  # (T, r, H)
        acc = (expected_accuracy(logits[:, mixed], table, bits).sum(-1) + constant) / rows.numel()  # (T,)
        usage = torch.sigmoid(logits).mean(dim=(1, 2))  # (T,)
        return (-acc + s.usage_weight * (usage - goal) ** 2).sum()

    return step


def _gumbel_step(split: FitSplit, s: FitSettings):
    """The Gumbel-Sigmoid step through the frozen network after the mask (minibatches seeded by s.seed)."""
    tail = trainable(split.outcomes.tail)
    g = torch.Generator().manual_seed(s.seed)

    def step(logits_fn, rows, goal: torch.Tensor, s: FitSettings) -> torch.Tensor:
        batch = rows[torch.randperm(rows.numel(), generator=g)[: s.batch_size]]
        a = logits_fn(batch)  # (T, b, H)
        mask = gumbel_sigmoid_mask(a, s.tau)  # 0/1 with a straight-through gradient
        T, b, H = mask.shape
        with frozen(tail.model):
            logits = tail.differentiable_logits(mask.reshape(T * b, H), batch.repeat(T).to(mask.device))
        ce = F.cross_entropy(logits, split.labels[batch].repeat(T).to(logits.device), reduction="none")
        usage = deterministic_mask(a, s.tau).mean(dim=(1, 2))  # the noise-free gate's usage (prune: usage_on)
        return (ce.view(T, b).mean(1) + s.usage_weight * (usage - goal).abs()).sum()

    return step
