"""What SAE steering is compared with: the simplest things that could do the same.

- `threshold`: no SAE, no class. The steered layer keeps head h when a_h + b > 0 for a constant shift b
  of its decision logits; shifts are chosen so the kept fraction spans 0..1 evenly.
- `mean_shift`: activation steering without the SAE, x~ = x + alpha (mu_c - mu), with mu_c the mean
  CLS of class c and mu the overall mean at the steered layer (TRAIN split), fed to the same decision
  network, for the true or the predicted class.
- random sets are drawn R times (`stats.draw_random_sets`), so their curve is a band, not one draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headsteer.core.classwise import class_mean
from headsteer.model import deterministic_mask
from headsteer.steer.reach import ReachSettings, reach


def shifted_forward(model, x: torch.Tensor, layer: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, C), masks (B, L, H)) of the model on input `x` when `layer` keeps head h where a_h + shift > 0:
    blocks before `layer` as usual, `layer` with shifted decision logits, then the rest from its tokens."""
    first = model(x, capture=(layer,))
    tokens = first.captured[layer]  # (B, T, d) entering `layer`
    keep = threshold_masks(model.decisions[str(layer)](tokens[:, 0]), shift)  # (B, H)
    tail = model.forward_from(tokens, start=layer, force={layer: keep})
    return tail.logits, torch.cat([first.masks[:, :layer], tail.masks[:, layer:]], 1)


def threshold_shifts(logits: torch.Tensor, levels: int = 41) -> list[float]:
    """Shifts b such that 1[a + b > 0] keeps about 0, 1/(levels-1), ..., 1 of the (image, head) pairs
    of logits (N, H); b = 0 (the unsteered model) is always included."""
    a = logits.flatten().double().sort().values
    n = a.numel()
    shifts = {0.0}
    for j in range(levels):
        keep = round(j * n / (levels - 1))  # pairs to keep: the `keep` largest logits
        if keep == 0:
            shifts.add(float(-a[-1].item()))  # a + b <= 0 everywhere
        elif keep == n:
            shifts.add(float(-a[0].item() + 1e-6 * max(1.0, abs(a[0].item()))))
        else:
            lo, hi = a[n - keep - 1].item(), a[n - keep].item()  # b in (-hi, -lo] keeps exactly `keep`
            shifts.add(float(-(lo + hi) / 2))
    return sorted(shifts)


def threshold_masks(logits: torch.Tensor, shift: float) -> torch.Tensor:
    """(N, H) 0/1 masks of the steered layer with its decision logits shifted by `shift`."""
    return (logits + shift > 0).to(logits.dtype)


@dataclass
class MeanShift:
    """Class-mean directions of the steered layer's CLS (TRAIN split)."""

    class_means: torch.Tensor
    """(C, d) mean CLS of each class."""
    mean: torch.Tensor
    """(d,) mean CLS over all training images."""

    @classmethod
    def fit(cls, x: torch.Tensor, labels: torch.Tensor, num_classes: int) -> "MeanShift":
        return cls(class_mean(x, labels, num_classes), x.float().mean(0))

    def steer(self, x: torch.Tensor, classes: torch.Tensor, alpha: float) -> torch.Tensor:
        """x~ = x + alpha (mu_c - mu) for inputs x (N, d) of classes (N,)."""
        direction = (self.class_means - self.mean).to(x.device)[classes.to(x.device)]  # (N, d)
        return x + alpha * direction


@dataclass
class Curve:
    """A baseline's points, one per value of its knob, scored on every test image."""

    knob: str
    """What varies along the curve: 'shift' (threshold) or 'alpha' (mean shift)."""
    values: list[float]
    """The knob's values, one per point."""
    sample_correct: torch.Tensor
    """(K, N) per-image correctness."""
    sample_usage: torch.Tensor
    """(K, N) per-image steered-layer usage."""
    sample_usage_overall: torch.Tensor
    """(K, N) per-image usage over all pruned layers."""

    @classmethod
    def of(cls, knob: str, values: list[float], scores: list) -> "Curve":
        """From one `sweep.PointScores` per knob value."""
        return cls(
            knob,
            list(values),
            *(torch.stack([getattr(s, f) for s in scores]) for f in ("correct", "usage", "usage_overall")),
        )

    def summary(self) -> dict:
        return {
            "knob": self.knob,
            "values": self.values,
            "accuracy": self.sample_correct.mean(1).tolist(),
            "head_usage": self.sample_usage.mean(1).tolist(),
            "head_usage_overall": self.sample_usage_overall.mean(1).tolist(),
        }


def threshold_curve(scorer, logits: torch.Tensor, levels: int) -> Curve:
    """The threshold baseline through a `sweep.Scorer`; logits (N, H) of the unsteered decision input."""
    shifts = threshold_shifts(logits, levels)
    return Curve.of("shift", shifts, [scorer(threshold_masks(logits, b)) for b in shifts])


def mean_shift_curve(
    scorer,
    decide,
    x: torch.Tensor,
    classes: torch.Tensor,
    shift: MeanShift,
    alphas: list[float],
    reach_settings: ReachSettings | None = None,
) -> Curve:
    """The mean-shift baseline: decision network `decide` on x + alpha (mu_c - mu), classes (N,), over
    `alphas` (ascending) and, with `reach_settings`, past both ends until usage saturates."""

    def score(alpha: float):
        return scorer(deterministic_mask(decide(shift.steer(x, classes, alpha))))

    scores = [score(a) for a in alphas]
    values = list(alphas)
    if reach_settings is not None:
        walked = reach(score, values, [s.usage.mean().item() for s in scores], reach_settings)
        values, scores = values + walked.alphas, scores + walked.scores
    order = sorted(range(len(values)), key=lambda i: values[i])
    return Curve.of("alpha", [values[i] for i in order], [scores[i] for i in order])
