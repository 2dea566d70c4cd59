"""Training and evaluation loops for the AdaViT model (used by the prune and extract stages)."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from headsteer import distributed
from headsteer.data import BatchTransform, ImageSplit, batch_indices, iterate
from headsteer.errors import HeadsteerError
from headsteer.model import AdaViT


def resolve_device(name: str) -> torch.device:
    if name in ("auto", "cuda") and torch.cuda.is_available() and distributed.info().enabled:
        return torch.device("cuda", distributed.info().local_rank)  # one GPU per torchrun process
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HeadsteerError(f"device='{name}' but no CUDA GPU is visible; use device=cpu (or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise HeadsteerError(f"device='{name}' is not a torch device; use auto, cpu, cuda or cuda:N") from None


def progress(iterable, **kwargs):
    """tqdm that stays quiet when stderr is not a terminal (CI logs)."""
    return tqdm(iterable, disable=not sys.stderr.isatty(), dynamic_ncols=True, leave=False, **kwargs)


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
        out.append({"params": params, "lr": base, "base_lr": base, "weight_decay": 0.0 if no_decay else weight_decay})
    return out


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


@dataclass
class EpochStats:
    loss: float
    ce: float
    usage_loss: float
    accuracy: float
    """Training accuracy under the training-mode (noisy) masks."""
    usage_noisy: float
    """Mean head usage of the Gumbel-noisy masks used in the forward pass (pruned layers)."""
    usage_deterministic: float
    """Mean head usage of the noise-free decisions on the same batches (what eval would keep)."""
    steps: int


def train_epoch(model: AdaViT, split: ImageSplit, transform: BatchTransform, optimizer: torch.optim.Optimizer,
                *, epoch: int, seed: int, batch_size: int, step0: int, total_steps: int, warmup_steps: int,
                label_smoothing: float, device: torch.device, target_usage: float = 1.0, usage_weight: float = 0.0,
                usage_kind: str = "per_layer", usage_on: str = "deterministic", noise_initial: float = 1.0,
                noise_final: float = 1.0, max_steps: Optional[int] = None, desc: str = "train",
                net: Optional[torch.nn.Module] = None,
                resume: Optional[dict] = None, checkpoint_every: int = 0,
                on_checkpoint: Optional[Callable[[dict], None]] = None) -> EpochStats:
    """One epoch. Every random draw (order, augmentation, Gumbel noise, drop-path) is seeded from
    (seed, epoch, rank), so an epoch restarted from its checkpoint gives the same result.

    `net` is what the forward pass goes through (the DDP wrapper under torchrun; default `model`).
    Under torchrun each global batch of batch_size x world_size images is split by rank.

    Mid-epoch checkpoints: every `checkpoint_every` steps `on_checkpoint(cursor)` receives the batch
    position, the running sums and the RNG states; passing that cursor back as `resume` continues the
    epoch exactly where it stopped (same batches, same noise, same statistics).
    """
    net = net if net is not None else model
    rank, world = distributed.info().rank, distributed.info().world_size
    model.train()
    torch.manual_seed(seed * 1000003 + epoch + 7919 * rank)
    gen = torch.Generator().manual_seed(seed * 7919 + epoch + 104729 * rank)
    batches = batch_indices(len(split), batch_size * world, shuffle=True, seed=seed, epoch=epoch, drop_last=True)
    batches = [b[rank * batch_size:(rank + 1) * batch_size] for b in batches]
    if max_steps is not None:
        batches = batches[:max_steps]
    pruning = model.gating and usage_weight > 0 and len(model.pruned_layers) > 0
    sums = dict(loss=0.0, ce=0.0, ul=0.0, correct=0, n=0, un=0.0, ud=0.0)
    start = 0
    if resume is not None:
        start, sums = resume["batch"], dict(resume["sums"])
        torch.set_rng_state(resume["torch_rng"])
        gen.set_state(resume["gen_rng"])
        if "cuda_rng" in resume and torch.cuda.is_available():
            torch.cuda.set_rng_state(resume["cuda_rng"])
    step = step0 + start
    bar = progress(batches[start:], desc=desc)
    for pos, idx in enumerate(bar, start=start):
        factor = lr_factor(step, total_steps, warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        model.noise_scale = noise_initial + (noise_final - noise_initial) * min(1.0, step / max(1, total_steps - 1))
        x = transform(split.images[idx], gen).to(device, non_blocking=True)
        y = split.labels[idx].to(device, non_blocking=True)
        out = net(x)
        ce = F.cross_entropy(out.logits, y, label_smoothing=label_smoothing)
        loss = ce
        layers = model.pruned_layers
        if pruning:
            m = out.decision_masks if usage_on == "deterministic" else out.masks
            ul = usage_loss(m[:, layers], target_usage, usage_kind)
            loss = ce + usage_weight * ul
        else:
            ul = torch.zeros(())
        if not torch.isfinite(loss):
            raise HeadsteerError(f"loss became {loss.item()} at step {step} ({desc}); the last good checkpoint is kept. "
                                 "Lower the learning rate (prune.dense_lr / prune.joint_lr) and re-run")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        b = y.shape[0]
        sums["loss"] += loss.item() * b
        sums["ce"] += ce.item() * b
        sums["ul"] += ul.item() * b
        sums["correct"] += (out.logits.argmax(1) == y).sum().item()
        sums["n"] += b
        if layers:
            sums["un"] += out.masks[:, layers].detach().mean().item() * b
            sums["ud"] += out.decision_masks[:, layers].detach().mean().item() * b
        bar.set_postfix(loss=f"{loss.item():.3f}", usage=f"{out.masks[:, layers].mean().item():.2f}" if layers else "-")
        if checkpoint_every and on_checkpoint is not None and (pos + 1) % checkpoint_every == 0 and pos + 1 < len(batches):
            cursor = {"batch": pos + 1, "sums": dict(sums), "torch_rng": torch.get_rng_state(), "gen_rng": gen.get_state()}
            if torch.cuda.is_available() and device.type == "cuda":
                cursor["cuda_rng"] = torch.cuda.get_rng_state()
            on_checkpoint(cursor)
    n = max(1, sums["n"])
    return EpochStats(loss=sums["loss"] / n, ce=sums["ce"] / n, usage_loss=sums["ul"] / n, accuracy=sums["correct"] / n,
                      usage_noisy=sums["un"] / n, usage_deterministic=sums["ud"] / n, steps=len(batches))


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


def summarize(predictions: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, pruned_layers: list[int],
              num_classes: int) -> dict:
    """Accuracy and usage statistics from predictions (N,), labels (N,), bool masks (N, L, H)."""
    correct = (predictions == labels).float()
    m = masks.float()
    layers = pruned_layers or list(range(m.shape[1]))
    per_sample_usage = m[:, layers].mean(dim=(1, 2))  # (N,)
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).float()
    per_class_acc = torch.zeros(num_classes).index_add_(0, labels, correct) / counts
    per_class_usage = torch.zeros(num_classes).index_add_(0, labels, per_sample_usage) / counts
    return dict(accuracy=correct.mean().item(), head_usage=per_sample_usage.mean().item(),
                usage_per_layer=m.mean(dim=(0, 2)).tolist(), keep_rate_per_head=m.mean(dim=0).tolist(),
                per_class_accuracy=per_class_acc.tolist(), per_class_usage=per_class_usage.tolist())


@torch.inference_mode()
def evaluate(model: AdaViT, split: ImageSplit, transform: BatchTransform, batch_size: int, device: torch.device,
             num_classes: int, desc: str = "eval") -> EvalResult:
    model.eval()
    preds, masks = [], []
    for images, _ in progress(iterate(split, batch_size), desc=desc, total=math.ceil(len(split) / batch_size)):
        out = model(transform(images).to(device))
        preds.append(out.logits.argmax(1).cpu())
        masks.append(out.masks.bool().cpu())
    predictions, mask_t = torch.cat(preds), torch.cat(masks)
    stats = summarize(predictions, split.labels, mask_t, model.pruned_layers if model.gating else [], num_classes)
    if not model.gating:
        stats["head_usage"] = 1.0
    return EvalResult(predictions=predictions, masks=mask_t, **stats)
