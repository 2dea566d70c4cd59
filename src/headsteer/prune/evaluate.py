"""Evaluation of an AdaViT model: accuracy and head usage, overall, per layer, per head, per class."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from headsteer.core.classwise import class_mean
from headsteer.core.runtime import progress
from headsteer.data import BatchTransform, ImageSplit, iterate
from headsteer.model import AdaViT

TARGET_SLACK = 0.05
"""Final head usage further than this from prune.target_usage is a missed pruning target (logged, flagged
in results.json and at the top of the report: the steering comparison may be void)."""


@dataclass
class EvalResult:
    accuracy: float
    head_usage: float
    """Fraction of heads kept over the pruned layers (deterministic eval masks)."""
    usage_per_layer: list[float]
    """(L,) fraction kept per block (1.0 for blocks without a decision network)."""
    keep_rate_per_head: list[list[float]]
    """(L, H) fraction of samples that keep each head."""
    per_class_accuracy: list[float]
    """(C,) accuracy per true class."""
    per_class_usage: list[float]
    """(C,) head usage over the pruned layers, per true class."""
    predictions: torch.Tensor
    """(N,) predicted classes."""
    masks: torch.Tensor
    """(N, L, H) bool eval masks."""

    def summary(self) -> dict:
        """JSON-able fields (no per-sample tensors)."""
        return {k: v for k, v in self.__dict__.items() if not torch.is_tensor(v)}


def summarize(
    predictions: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, pruned_layers: list[int], num_classes: int
) -> dict:
    """Accuracy and usage statistics from predictions (N,), labels (N,), bool masks (N, L, H)."""
    correct = (predictions == labels).float()
    m = masks.float()
    layers = pruned_layers or list(range(m.shape[1]))
    per_sample_usage = m[:, layers].mean(dim=(1, 2))  # (N,)
    return dict(
        accuracy=correct.mean().item(),
        head_usage=per_sample_usage.mean().item(),
        usage_per_layer=m.mean(dim=(0, 2)).tolist(),
        keep_rate_per_head=m.mean(dim=0).tolist(),
        per_class_accuracy=class_mean(correct, labels, num_classes).tolist(),
        per_class_usage=class_mean(per_sample_usage, labels, num_classes).tolist(),
    )


@torch.inference_mode()
def predict(
    model: AdaViT,
    split: ImageSplit,
    transform: BatchTransform,
    batch_size: int,
    device: torch.device,
    desc: str = "eval",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions (N,) and bool head masks (N, L, H) of `model` as it is set up (eval mode)."""
    model.eval()
    preds, masks = [], []
    for images, _ in progress(iterate(split, batch_size), desc=desc, total=math.ceil(len(split) / batch_size)):
        out = model(transform(images).to(device))
        preds.append(out.logits.argmax(1).cpu())
        masks.append(out.masks.bool().cpu())
    return torch.cat(preds), torch.cat(masks)


def evaluate(
    model: AdaViT,
    split: ImageSplit,
    transform: BatchTransform,
    batch_size: int,
    device: torch.device,
    num_classes: int,
    desc: str = "eval",
) -> EvalResult:
    predictions, mask_t = predict(model, split, transform, batch_size, device, desc)
    stats = summarize(predictions, split.labels, mask_t, model.pruned_layers if model.gating else [], num_classes)
    if not model.gating:
        stats["head_usage"] = 1.0
    return EvalResult(predictions=predictions, masks=mask_t, **stats)
