"""One training epoch of the AdaViT model, resumable at any batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from headsteer.config import PruneConfig
from headsteer.core import distributed
from headsteer.core.errors import HeadsteerError
from headsteer.core.finite import diverged
from headsteer.core.runtime import progress
from headsteer.data import BatchTransform, ImageSplit, batch_indices
from headsteer.data.lazy import batches_of
from headsteer.model import AdaViT
from headsteer.prune.schedule import PhaseSchedule, lr_factor, usage_loss


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


@dataclass
class EpochSums:
    """Running sums of an epoch; part of a mid-epoch checkpoint."""

    # sums over the batches so far, each batch's value weighted by its size
    loss: float = 0.0  # total loss
    ce: float = 0.0  # cross-entropy
    ul: float = 0.0  # usage loss
    correct: int = 0  # correct predictions (a count)
    n: int = 0  # samples
    un: float = 0.0  # head usage of the noisy masks
    ud: float = 0.0  # head usage of the noise-free decisions

    def stats(self, steps: int) -> EpochStats:
        n = max(1, self.n)
        return EpochStats(
            loss=self.loss / n,
            ce=self.ce / n,
            usage_loss=self.ul / n,
            accuracy=self.correct / n,
            usage_noisy=self.un / n,
            usage_deterministic=self.ud / n,
            steps=steps,
        )


@dataclass
class EpochContext:
    """Everything one epoch needs besides the model and the data."""

    prune: PruneConfig
    """Batch size, loss settings and checkpoint cadence."""
    schedule: PhaseSchedule
    """The phase's learning-rate, usage-weight and noise schedule."""
    seed: int
    """Run seed; with `epoch` and the rank it seeds every draw of the epoch."""
    epoch: int
    """Global epoch index (distinct across phases)."""
    step0: int
    """Optimizer steps of this phase before the epoch."""
    device: torch.device
    desc: str = "train"
    """Label of the progress output and of errors."""
    net: Optional[torch.nn.Module] = None
    """What the forward pass goes through (the DDP wrapper under torchrun; default the model)."""
    resume: Optional[dict] = None
    """A cursor from `on_checkpoint` to continue the epoch from."""
    on_checkpoint: Optional[Callable[[dict], None]] = None
    """Receives a cursor every `checkpoint_every` steps (single process only)."""
    checkpoint_every: int = 0
    """Steps between mid-epoch cursors; 0 = none."""
    generator: torch.Generator = field(default_factory=torch.Generator)
    scaler: Optional[torch.amp.GradScaler] = None
    """Loss scaler of fp16 training (prune.amp=fp16); None = plain backward."""
    workers: int = 0
    """DataLoader workers decoding batches of a streamed split (data.num_workers; unused in memory)."""
    checkpoint: Optional[Path] = None
    """The run's checkpoint file (a divergence error says whether an earlier one is kept)."""


def divergence(ctx: EpochContext, what: str) -> HeadsteerError:
    """The one-line error of a non-finite loss or weight in this phase: lower its learning rate."""
    name = ctx.schedule.name  # 'dense' or 'joint'
    kept = ctx.checkpoint is not None and ctx.checkpoint.is_file()
    return diverged(f"{what} ({ctx.desc})", f"prune.{name}_lr", getattr(ctx.prune, f"{name}_lr"), kept)


def _epoch_batches(n: int, ctx: EpochContext) -> list[torch.Tensor]:
    """This rank's index batches; each global batch of batch_size x world_size is split by rank."""
    rank, world = distributed.info().rank, distributed.info().world_size
    bs = ctx.prune.batch_size
    batches = batch_indices(n, bs * world, shuffle=True, seed=ctx.seed, epoch=ctx.epoch, drop_last=True)
    batches = [b[rank * bs : (rank + 1) * bs] for b in batches]
    return batches[: ctx.prune.max_steps_per_epoch] if ctx.prune.max_steps_per_epoch is not None else batches


def _seed_epoch(ctx: EpochContext) -> tuple[int, EpochSums]:
    """Seed every draw from (seed, epoch, rank); restore a resume cursor. Returns (first batch, sums)."""
    rank = distributed.info().rank
    torch.manual_seed(ctx.seed * 1000003 + ctx.epoch + 7919 * rank)
    ctx.generator.manual_seed(ctx.seed * 7919 + ctx.epoch + 104729 * rank)
    if ctx.resume is None:
        return 0, EpochSums()
    torch.set_rng_state(ctx.resume["torch_rng"])
    ctx.generator.set_state(ctx.resume["gen_rng"])
    if "cuda_rng" in ctx.resume and torch.cuda.is_available():
        torch.cuda.set_rng_state(ctx.resume["cuda_rng"])
    return ctx.resume["batch"], EpochSums(**ctx.resume["sums"])


def _cursor(pos: int, sums: EpochSums, ctx: EpochContext) -> dict:
    cursor = {
        "batch": pos,
        "sums": dict(sums.__dict__),
        "torch_rng": torch.get_rng_state(),
        "gen_rng": ctx.generator.get_state(),
    }
    if torch.cuda.is_available() and ctx.device.type == "cuda":
        cursor["cuda_rng"] = torch.cuda.get_rng_state()
    return cursor


def _loss(model: AdaViT, out, y: torch.Tensor, ctx: EpochContext, step: int):
    """(total loss, cross-entropy, usage loss) of one batch."""
    p, sched = ctx.prune, ctx.schedule
    ce = F.cross_entropy(out.logits, y, label_smoothing=p.label_smoothing)
    if model.gating and sched.usage_weight > 0 and len(model.pruned_layers) > 0:
        m = out.decision_masks if p.usage_on == "deterministic" else out.masks
        ul = usage_loss(m[:, model.pruned_layers], p.target_usage, p.usage_loss)
        loss = ce + sched.usage_weight * ul
    else:
        loss, ul = ce, torch.zeros(())
    if not torch.isfinite(loss):
        raise divergence(ctx, f"loss became {loss.item()} at step {step}")
    return loss, ce, ul


def _accumulate(sums: EpochSums, model: AdaViT, out, y: torch.Tensor, losses) -> None:
    loss, ce, ul = losses
    b, layers = y.shape[0], model.pruned_layers
    sums.loss += loss.item() * b
    sums.ce += ce.item() * b
    sums.ul += ul.item() * b
    sums.correct += (out.logits.argmax(1) == y).sum().item()
    sums.n += b
    if layers:
        sums.un += out.masks[:, layers].detach().mean().item() * b
        sums.ud += out.decision_masks[:, layers].detach().mean().item() * b


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(ctx: EpochContext) -> torch.autocast:
    """The forward's mixed-precision context (prune.amp); disabled for 'none'."""
    dtype = AMP_DTYPES.get(ctx.prune.amp)
    return torch.autocast(ctx.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def train_epoch(
    model: AdaViT, split: ImageSplit, transform: BatchTransform, optimizer: torch.optim.Optimizer, ctx: EpochContext
) -> EpochStats:
    """One epoch. Every random draw (order, augmentation, Gumbel noise, drop-path) is seeded from
    (seed, epoch, rank), so an epoch restarted from its checkpoint gives the same result: passing a
    cursor that `ctx.on_checkpoint` received back as `ctx.resume` continues the epoch exactly where it
    stopped (same batches, same noise, same statistics)."""
    net = ctx.net if ctx.net is not None else model
    model.train()
    batches = _epoch_batches(len(split), ctx)
    start, sums = _seed_epoch(ctx)
    step = ctx.step0 + start
    sched, layers = ctx.schedule, model.pruned_layers
    bar = progress(batches[start:], desc=ctx.desc)
    raw = batches_of(split.images, batches[start:], ctx.workers, pin=ctx.device.type == "cuda")
    for (pos, idx), images in zip(enumerate(bar, start=start), raw, strict=True):
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_factor(step, sched.total_steps, sched.warmup_steps)
        model.noise_scale = sched.noise_at(step)
        x = transform(images.to(ctx.device, non_blocking=True), ctx.generator)  # uint8 over the bus
        y = split.labels[idx].to(ctx.device, non_blocking=True)
        with autocast(ctx):
            out = net(x)
            losses = _loss(model, out, y, ctx, step)
        optimizer.zero_grad(set_to_none=True)
        if ctx.scaler is None:
            losses[0].backward()
            optimizer.step()
        else:  # fp16: scale the loss so small gradients do not underflow; skip steps with inf/nan
            ctx.scaler.scale(losses[0]).backward()
            ctx.scaler.step(optimizer)
            ctx.scaler.update()
        step += 1
        _accumulate(sums, model, out, y, losses)
        usage = f"{out.masks[:, layers].mean().item():.2f}" if layers else "-"
        bar.set_postfix(loss=f"{losses[0].item():.3f}", usage=usage)
        every = ctx.checkpoint_every
        if every and ctx.on_checkpoint is not None and (pos + 1) % every == 0 and pos + 1 < len(batches):
            ctx.on_checkpoint(_cursor(pos + 1, sums, ctx))
    return sums.stats(len(batches))
