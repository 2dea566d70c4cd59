"""The optimisation schedule of pruning training: phases, learning rate, optimizer groups, usage loss."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from headsteer.config import PruneConfig
from headsteer.core import distributed
from headsteer.model import AdaViT

PHASES = ("dense", "joint", "done")
"""Training phases in order; 'done' marks a finished run in the checkpoint."""


@dataclass(frozen=True)
class PhaseSchedule:
    """What differs between the dense and the joint phase of one training run."""

    name: str
    """'dense' (decision networks off) or 'joint' (ViT + decision networks)."""
    epochs: int
    """Epochs of this phase."""
    total_steps: int
    """Optimizer steps of the whole phase (the cosine schedule's length)."""
    warmup_steps: int
    """Linear warm-up steps at the start of the phase."""
    usage_weight: float
    """Weight lambda of the usage loss (0 in the dense phase)."""
    noise_initial: float
    """Gumbel noise scale at the first step of the phase."""
    noise_final: float
    """Gumbel noise scale at the last step (annealed linearly)."""

    @property
    def index(self) -> int:
        return PHASES.index(self.name)

    def noise_at(self, step: int) -> float:
        return self.noise_initial + (self.noise_final - self.noise_initial) * min(
            1.0, step / max(1, self.total_steps - 1)
        )


def phase_schedule(p: PruneConfig, phase: str, steps_per_epoch: int) -> PhaseSchedule:
    """The schedule of `phase` under config `p`, for epochs of `steps_per_epoch` steps."""
    joint = phase == "joint"
    epochs = p.joint_epochs if joint else p.dense_epochs
    total = max(1, epochs * steps_per_epoch)
    return PhaseSchedule(
        name=phase,
        epochs=epochs,
        total_steps=total,
        warmup_steps=int(p.warmup_frac * total),
        usage_weight=p.usage_weight if joint else 0.0,
        noise_initial=p.noise_initial if joint else 1.0,
        noise_final=p.noise_final if joint else 1.0,
    )


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def param_groups(model: AdaViT, lr: float, weight_decay: float, decision_lr: Optional[float]) -> list[dict]:
    """AdamW groups: no decay on biases, norms, tokens and position embeddings; decision nets apart."""
    decision_ids = {id(p) for p in model.decision_parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_decision = id(p) in decision_ids
        if is_decision and decision_lr is None:
            continue
        no_decay = p.ndim <= 1 or name.endswith(("cls_token", "pos_embed", "reg_token"))
        groups.setdefault((is_decision, no_decay), []).append(p)
    out = []
    for (is_decision, no_decay), params in sorted(groups.items()):
        base = decision_lr if is_decision else lr
        wd = 0.0 if no_decay else weight_decay
        out.append({"params": params, "lr": base, "base_lr": base, "weight_decay": wd})
    return out


def make_optimizer(p: PruneConfig, model: AdaViT, phase: str) -> torch.optim.Optimizer:
    """AdamW for `phase`: the backbone alone (dense), or backbone + decision networks (joint)."""
    if phase == "dense":
        groups = param_groups(model, p.dense_lr, p.weight_decay, decision_lr=None)
    else:
        groups = param_groups(model, p.joint_lr, p.weight_decay, decision_lr=p.joint_lr * p.decision_lr_scale)
    return torch.optim.AdamW(groups, betas=(0.9, 0.999))


def usage_loss(masks: torch.Tensor, target: float, kind: str) -> torch.Tensor:
    """masks: (B, L_pruned, H). 'per_layer': mean_l |u_l - target|; 'global': |mean_l u_l - target|.

    Under torchrun the usage u_l is measured on the GLOBAL batch (sum all-reduced with autograd), so
    N processes optimise the same objective as one process on the whole batch.
    """
    world = distributed.info().world_size
    per_layer_sum = distributed.all_reduce_sum_autograd(masks.sum(dim=(0, 2)))  # (L_pruned,)
    per_layer = per_layer_sum / (masks.shape[0] * masks.shape[2] * world)
    if kind == "per_layer":
        return (per_layer - target).abs().mean()
    return (per_layer.mean() - target).abs()
