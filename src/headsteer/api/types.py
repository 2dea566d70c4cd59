"""The named outputs of `headsteer.api`: per-image results, latent statistics, a layer's SAE. Their reprs
are one short line (shapes and means, never whole tensors); scalar summaries are Python floats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from headsteer.api.inputs import as_labels
from headsteer.sae.topk import TopKSAE


@dataclass(repr=False)
class Outputs:
    """What `Run.forward`, `Run.steer` and `Run.threshold` return, per image, on the CPU."""

    logits: torch.Tensor
    """(B, C) class logits."""
    predictions: torch.Tensor
    """(B,) predicted classes (argmax of the logits)."""
    masks: torch.Tensor
    """(B, L, H) head masks of every block, 1 = kept (all ones in blocks without a decision network)."""
    layer: int
    """The steered layer (for `forward`, the layer whose usage `usage` reports)."""
    usage: torch.Tensor
    """(B,) fraction of `layer`'s heads kept."""
    usage_overall: torch.Tensor
    """(B,) fraction of heads kept over all pruned layers."""

    def accuracy(self, labels: Sequence[int] | torch.Tensor) -> float:
        """Fraction of images whose prediction equals `labels` (B,)."""
        labels = as_labels(labels, len(self.predictions), self.logits.shape[1])
        return (self.predictions == labels).float().mean().item()

    def summary(self, labels: Sequence[int] | torch.Tensor | None = None) -> dict[str, float]:
        """Python numbers, keyed as results.json's curves: images, head_usage (mean of `usage`),
        head_usage_overall, and accuracy when `labels` are given."""
        out = {
            "images": len(self.predictions),
            "head_usage": self.usage.mean().item(),
            "head_usage_overall": self.usage_overall.mean().item(),
        }
        return out if labels is None else {**out, "accuracy": self.accuracy(labels)}

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"Outputs({s['images']} images, {self.logits.shape[1]} classes, layer {self.layer}: mean usage "
            f"{s['head_usage']:.4f}, overall {s['head_usage_overall']:.4f})"
        )


@dataclass(repr=False)
class LatentStats:
    """Firing statistics of one layer's SAE latents on the TRAIN split, and their head effects."""

    freq_per_class: torch.Tensor
    """(C, n) fraction of class-c training images on which latent i fires."""
    freq_overall: torch.Tensor
    """(n,) fraction of all training images on which latent i fires."""
    lift: torch.Tensor
    """(C, n) class specificity: freq_per_class / freq_overall (0 where a latent never fires)."""
    head_effect: Optional[torch.Tensor]
    """(A, H) change in each head's keep rate of the layer when latent `head_effect_latents[a]` alone is
    amplified by `steer.alpha_max` (in `steer.mode`) against alpha = 0; None for layer-study layers."""
    head_effect_latents: Optional[torch.Tensor]
    """(A,) the latents of `head_effect` (those that fire on TRAIN); None for layer-study layers."""

    def __repr__(self) -> str:
        C, n = self.freq_per_class.shape
        alive = int((self.freq_overall > 0).sum())
        effects = "no head effects" if self.head_effect is None else f"head effects of {self.head_effect.shape[0]}"
        return f"LatentStats({n} latents, {alive} fire on TRAIN, {C} classes, {effects})"


@dataclass(repr=False)
class RunSAE:
    """A layer's SAE, and the folder holding it in SAELens layout."""

    sae: TopKSAE
    """The top-k SAE, in eval mode, on the run's device."""
    folder: Path
    """Its SAELens folder (cfg.json + sae_weights.safetensors): `SAE.load_from_disk(folder)` in SAELens."""
    layer: int
    """The block whose residual-input CLS token it encodes."""

    def __repr__(self) -> str:
        s = self.sae
        return f"RunSAE(layer {self.layer}: {s.d_in} -> {s.d_sae} latents, k={s.k}, folder='{self.folder}')"
