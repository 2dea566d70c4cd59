"""What each latent can do to each head: the decision network reads a latent through its decoder direction.

For a linear decision network W, amplifying latent j by alpha (`post_topk`) moves head h's logit by
alpha z_j (W d_j)_h, so W d_j (`learned.gate_directions`; the Jacobian at the training mean for another
network) says which heads a latent can push and how hard. Beside it: how often the latent fires, how large it
is when it does, the predicted push alpha * mean activation * W d_j, and how the push relates to the keep-rate
change measured when the latent alone is steered (`latent_effects`). Per strategy, the same quantities over
its set's latents say why a set moves usage or does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from headsteer.artifacts.io import read_tensors, write_tensors
from headsteer.steer.learned import Codes, gate_directions, is_linear, mean_activation
from headsteer.steer.names import Strategy


@dataclass
class GateReadout:
    """Per latent of the SAE (n = d_sae)."""

    direction: torch.Tensor
    """(n, H) logit change per unit of the latent (W d_j)."""
    firing_rate: torch.Tensor
    """(n,) fraction of training images on which it fires."""
    mean_activation: torch.Tensor
    """(n,) its mean value where it fires (training rows of the fits; 0 where it never does)."""
    alpha: float
    """The strength of the predicted push."""

    @property
    def push(self) -> torch.Tensor:
        """(n, H) predicted logit push alpha * mean activation * W d_j."""
        return self.alpha * self.mean_activation[:, None] * self.direction

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "gate_direction": self.direction,
            "mean_activation": self.mean_activation,
            "predicted_push": self.push,
        }


def gate_readout(decide, sae, codes: Codes, firing_rate: torch.Tensor, at: torch.Tensor, alpha: float) -> GateReadout:
    """The readout from the codes of training rows and the latents' firing rates (n,); at: the training mean."""
    with torch.no_grad():
        direction = gate_directions(decide, sae, at).cpu()
    return GateReadout(direction, firing_rate.float(), mean_activation(codes, sae.d_sae).cpu(), alpha)


def _quartiles(x: torch.Tensor) -> list[float]:
    return torch.quantile(x.float(), torch.tensor([0.25, 0.5, 0.75])).tolist() if x.numel() else []


def set_profile(r: GateReadout, members: torch.Tensor) -> dict:
    """Quartiles over a set's latents (members: latent ids, repeats allowed) of firing rate, mean activation,
    |W d_j| and |push|."""
    m = members.flatten().cpu()
    return {
        "latents": int(m.unique().numel()),
        "firing_rate": _quartiles(r.firing_rate[m]),
        "mean_activation": _quartiles(r.mean_activation[m]),
        "direction_norm": _quartiles(r.direction[m].norm(dim=1)),
        "push_norm": _quartiles(r.push[m].norm(dim=1)),
    }


def push_vs_effect(r: GateReadout, effect: torch.Tensor, latents: torch.Tensor) -> dict:
    """How the predicted logit push explains the measured keep-rate change `effect` (L, H) of `latents` (L,):
    the Pearson and Spearman correlations over every (latent, head)."""
    p, e = r.push[latents.cpu()].flatten(), effect.flatten().float()
    if p.numel() < 3 or p.std() == 0 or e.std() == 0:
        return {"pairs": int(p.numel()), "pearson": None, "spearman": None}

    def corr(a, b):
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    rank = lambda v: torch.argsort(torch.argsort(v)).float()  # noqa: E731
    return {"pairs": int(p.numel()), "pearson": corr(p, e), "spearman": corr(rank(p), rank(e))}


def readout_record(ctx, sae, sets, alpha: float, path: Path) -> dict:
    """The per-latent gate readout of the fit context `ctx` (added to the latents file `path`), each strategy's
    set profile (`sets`: stats.IndexSets), and how the predicted push relates to the measured head effect."""
    lat = read_tensors(path)
    codes = Codes.of(sae, ctx.decide, ctx.split.cls)
    r = gate_readout(ctx.decide, sae, codes, lat["freq_overall"], ctx.split.cls.float().mean(0), alpha)
    write_tensors(path, {**lat, **r.tensors()})
    members = {Strategy.PER_CLASS: sets.per_class, Strategy.GLOBAL: sets.global_, Strategy.RANDOM: sets.random_draws}
    members |= {Strategy.PER_CLASS_SPECIFIC: sets.per_class_specific, **sets.custom}
    return {
        "alpha": r.alpha,
        "linear": is_linear(ctx.decide),
        "sets": {name: set_profile(r, m) for name, m in members.items()},
        "all_latents": set_profile(r, (lat["freq_overall"] > 0).nonzero().squeeze(1)),
        "push_vs_effect": push_vs_effect(r, lat["head_effect"], lat["head_effect_latents"]),
    }
