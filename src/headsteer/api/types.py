"""The named outputs of `headsteer.api`: per-image results, latent statistics, a layer's SAE."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from headsteer.api.inputs import as_labels
from headsteer.sae.topk import TopKSAE


@dataclass
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
        return (self.predictions == as_labels(labels, len(self.predictions))).float().mean().item()


@dataclass
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


@dataclass
class RunSAE:
    """A layer's SAE, and the folder holding it in SAELens layout."""

    sae: TopKSAE
    """The top-k SAE, in eval mode, on the run's device."""
    folder: Path
    """Its SAELens folder (cfg.json + sae_weights.safetensors): `SAE.load_from_disk(folder)` in SAELens."""
    layer: int
    """The block whose residual-input CLS token it encodes."""
