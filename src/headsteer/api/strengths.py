"""Steering with one strength per latent (per class and latent for class-conditioned strengths), and the
strengths the steer stage learned, read back from the run.

A strength alpha_j scales latent j of the SAE code of the steered layer's CLS token: the decision network
reads decode((1 + alpha) * z), the `learned` strategy's reading (`headsteer.steer.learned`). alpha_j = 0
leaves latent j as it is, -1 removes it; strengths below -1 would turn a code negative, which the SAE never
emits, and are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from headsteer.api.inputs import choice
from headsteer.artifacts.activations import load_split
from headsteer.core.errors import HeadsteerError
from headsteer.sae.topk import TopKSAE
from headsteer.steer.alphas import nearest_index
from headsteer.steer.fit_cache import read_entries
from headsteer.steer.names import Strategy
from headsteer.steer.random_sae import control_sae

if TYPE_CHECKING:
    from headsteer.api.run import Run

SAE_KINDS = ("trained", "untrained")


@dataclass(repr=False)
class LearnedStrengths:
    """One learned policy of the steer stage: the strengths chosen for one target usage."""

    variant: str
    """'global', 'per_class.true' or 'per_class.predicted' (the class from the label or the prediction)."""
    sae: str
    """'trained' (the run's SAE) or 'untrained' (the random control of the same shape)."""
    target: float
    """The target head usage the strengths were fitted for (on training images)."""
    m: int
    """Latents free per row of strengths at the chosen path point (0 = every latent)."""
    alpha: torch.Tensor
    """(d_sae,) strengths, or (C, d_sae) one row per class for the per-class variants."""
    test: dict
    """The steer stage's record of the chosen point on the test split (head_usage, accuracy, their CIs,
    gain_vs_threshold, named strengths), as in results.json."""

    @property
    def label_source(self) -> str | None:
        """'true' or 'predicted' for the per-class variants (`labels` to pass to `Run.steer`), else None."""
        return self.variant.split(".", 1)[1] if "." in self.variant else None

    def __repr__(self) -> str:
        nz = int((self.alpha != 0).sum())
        return (
            f"LearnedStrengths({self.sae} SAE, {self.variant}, target usage {self.target:g}: {nz} non-zero "
            f"strengths of shape {tuple(self.alpha.shape)}; test usage {self.test['head_usage']:.4f}, "
            f"accuracy {self.test['accuracy']:.4f})"
        )


def as_strengths(strengths, d_sae: int, num_classes: int) -> torch.Tensor:
    """(d_sae,) or (C, d_sae) float32 strengths on the CPU: finite and >= -1."""
    if isinstance(strengths, LearnedStrengths):
        strengths = strengths.alpha
    try:
        out = torch.as_tensor(strengths)
    except (TypeError, ValueError, RuntimeError):
        raise HeadsteerError(f"strengths of type {type(strengths).__name__}; pass a float tensor (d_sae,)") from None
    if not out.is_floating_point():
        raise HeadsteerError(f"strengths of dtype {out.dtype}; pass float strengths, one per latent")
    shapes = f"({d_sae},) or ({num_classes}, {d_sae})"
    if out.shape not in ((d_sae,), (num_classes, d_sae)):
        raise HeadsteerError(f"strengths of shape {tuple(out.shape)}; pass one per latent, shape {shapes}")
    out = out.detach().float().cpu()
    if not torch.isfinite(out).all():
        raise HeadsteerError("strengths hold NaN or infinite values; pass finite strengths")
    if (out < -1).any():
        raise HeadsteerError(
            f"strengths hold {out.min().item():.4g}, below -1 (which would turn a code negative); -1 removes a latent"
        )
    return out


def steered_cls(sae, alpha: torch.Tensor):
    """fn(cls) (b, d) -> (b, d): the decoded code with each latent j scaled by 1 + alpha[row, j]; alpha (b, d_sae)."""

    def fn(cls: torch.Tensor) -> torch.Tensor:
        values, indices = sae.encode_sparse(cls.float())  # (b, k) each
        scale = 1 + alpha.gather(1, indices)  # (b, k)
        return sae.decode_sparse(values * scale, indices).to(cls.dtype)

    return fn


def learned_strengths(run: Run, variant: str, target: float, sae: str = "trained") -> LearnedStrengths:
    """The strengths the steer stage chose for `variant` at the fitted target nearest `target`."""
    sae = choice(sae, SAE_KINDS, "sae")
    record = run.results.get("learned", {}).get(sae)
    if not record:
        raise HeadsteerError(
            f"this run fitted no learned strengths on the {sae} SAE (steer.learned, steer.untrained_sae)"
        )
    variant = choice(variant, [v for v in record if isinstance(record[v], dict) and "targets" in record[v]], "variant")
    targets = record[variant]["targets"]
    i = nearest_index([t["target"] for t in targets], target)  # targets ascend: a tie goes to the lower one
    t = targets[i]
    point = t["path"][t["chosen"]]
    alpha = _fitted_alpha(run._need("steer") / "fits" / f"learned.{sae}.{variant}.checkpoint.safetensors", t, point)
    return LearnedStrengths(
        variant, sae, t["target"], point["m"], alpha[0] if variant == Strategy.GLOBAL else alpha, point
    )


def _fitted_alpha(path: Path, target: dict, point: dict) -> torch.Tensor:
    """(R, d_sae) the strengths of the fit cache's entry for `target`'s chosen `point`, found by its target
    usage and number of latents m (a results.json record and the fit cache written beside it)."""
    try:
        _, entries = read_entries(path)
    except HeadsteerError:
        raise HeadsteerError(
            f"{path} is missing or unreadable; `headsteer run CONFIG` redoes the steer stage"
        ) from None
    for tensors, rec in entries:
        if rec.get("m") == point["m"] and rec.get("fit", {}).get("target") == target["target"]:
            return tensors["alpha"]
    raise HeadsteerError(
        f"{path} holds no fit at target {target['target']} with m={point['m']}, which results.json names; "
        "`headsteer run CONFIG` redoes the steer stage"
    )


def strength_sae(run: Run, layer: int, strengths) -> TopKSAE:
    """The SAE `strengths` steer through: the run's, or the untrained control for strengths learned on it."""
    sae = run.sae(layer).sae
    if not (isinstance(strengths, LearnedStrengths) and strengths.sae == "untrained"):
        return sae
    if layer != run.layer:
        raise HeadsteerError(f"the untrained control exists at the headline layer {run.layer} only, not layer={layer}")
    return control_sae(sae, load_split(run.path, "train", layer).cls.to(sae.W_dec.device), run.config.seed)


def steer_strengths(run: Run, batch: torch.Tensor, layer: int, strengths, labels, batch_size: int | None):
    """`Run.steer(images, strengths=...)` on `batch` (as_batch): Outputs."""
    sae = strength_sae(run, layer, strengths)
    A = run._rows(batch, as_strengths(strengths, sae.d_sae, len(run.classes)), labels)  # (N, d_sae)

    def run_batch(x: torch.Tensor, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        with run.model.override_decision_input(layer, steered_cls(sae, A[rows].to(run.device))):
            return run._unsteered(x)

    return run._batches(batch, layer, batch_size, run_batch)
