"""Pruning training: a dense phase, then joint training of the ViT and its decision networks.

The loop is resumable at any point: `checkpoint.safetensors` is rewritten after every epoch (and every
`prune.checkpoint_every` steps inside one); it holds the weights, the optimizer and a JSON state
(phase, epoch, step, history, mid-epoch cursor).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from headsteer.artifacts.io import checkpoint_extra, checkpoint_state, load_checkpoint, save_checkpoint
from headsteer.config import PruneConfig
from headsteer.core import distributed
from headsteer.core.finite import first_nonfinite
from headsteer.data import BatchTransform, ImageDataset, batch_indices
from headsteer.model import AdaViT
from headsteer.prune.epoch import EpochContext, divergence, train_epoch
from headsteer.prune.evaluate import evaluate
from headsteer.prune.schedule import PHASES, PhaseSchedule, make_optimizer, phase_schedule


@dataclass
class PruneRun:
    """What the phase loop trains, on what, and where it checkpoints."""

    model: AdaViT
    data: ImageDataset
    train_tf: BatchTransform
    test_tf: BatchTransform
    prune: PruneConfig
    seed: int
    device: torch.device
    checkpoint: Path
    """`checkpoint.safetensors` of the run; resumed from when it exists."""
    workers: int = 0
    """DataLoader workers for a streamed training split (data.num_workers)."""
    scaler: torch.amp.GradScaler | None = None
    """fp16 loss scaler, kept across epochs and checkpointed with the JSON state."""

    def __post_init__(self) -> None:
        if self.prune.amp == "fp16":
            self.scaler = torch.amp.GradScaler(self.device.type)


def scaler_state(run: PruneRun) -> dict:
    """{"scaler": the fp16 loss scaler's state} for the checkpoint (JSON numbers); {} without one."""
    return {"scaler": run.scaler.state_dict()} if run.scaler is not None else {}


def fresh_state() -> dict:
    return {"phase": "dense", "epoch": 0, "step": 0, "history": [], "dense": None, "seconds": 0.0}


def steps_per_epoch(run: PruneRun) -> int:
    p, world = run.prune, distributed.info().world_size
    steps = len(batch_indices(len(run.data.train), p.batch_size * world, shuffle=False, drop_last=True))
    return min(steps, p.max_steps_per_epoch) if p.max_steps_per_epoch is not None else steps


def _for_phase(model: AdaViT, phase: str, device: torch.device) -> torch.nn.Module:
    """Freeze the decision networks in the dense phase; wrap in DDP under torchrun."""
    for p in model.decision_parameters():
        p.requires_grad_(phase == "joint")
    if not distributed.info().enabled:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def check_weights(run: PruneRun, ctx: EpochContext, where: str) -> None:
    """Stop before a checkpoint would save a NaN or an infinity among the weights (a diverged run)."""
    bad = first_nonfinite(run.model.named_parameters())
    if bad is not None:
        raise divergence(ctx, f"weight {bad} became non-finite {where}")


def _save_cursor(run: PruneRun, optimizer, epoch_state: dict, started: float, ctx: EpochContext, cursor: dict) -> None:
    """Mid-epoch checkpoint: the state at the epoch's start plus the cursor (RNG states as tensors)."""
    check_weights(run, ctx, f"by batch {cursor['batch']}")
    rng = {k: cursor.pop(k) for k in ("torch_rng", "gen_rng", "cuda_rng") if k in cursor}
    state = {**epoch_state, "cursor": cursor, "seconds": time.time() - started, **scaler_state(run)}
    save_checkpoint(run.checkpoint, run.model, optimizer, state, extra=rng)


def _run_epoch(run: PruneRun, sched: PhaseSchedule, net, optimizer, epoch: int, state: dict, started: float) -> None:
    t0, p, main = time.time(), run.prune, distributed.info().is_main
    resume = None
    if state.get("cursor"):  # killed inside this epoch: continue from the saved batch
        resume = {**state["cursor"], **checkpoint_extra(run.checkpoint)}
        print(f"[prune] resuming {sched.name} epoch {epoch + 1} at batch {resume['batch']}", flush=True)
    ctx = EpochContext(
        prune=p,
        schedule=sched,
        seed=run.seed,
        epoch=epoch + 1000 * sched.index,
        step0=state["step"],
        device=run.device,
        desc=f"{sched.name} {epoch + 1}/{sched.epochs}",
        net=net,
        resume=resume,
        checkpoint_every=p.checkpoint_every if distributed.info().world_size == 1 else 0,
        scaler=run.scaler,
        workers=run.workers,
        checkpoint=run.checkpoint,
    )
    ctx.on_checkpoint = functools.partial(_save_cursor, run, optimizer, dict(state), started, ctx)
    stats = train_epoch(run.model, run.data.train, run.train_tf, optimizer, ctx)
    check_weights(run, ctx, "during the epoch")
    state.update(epoch=epoch + 1, step=state["step"] + stats.steps, seconds=time.time() - started, cursor=None)
    if not main:  # rank 0 evaluates and writes the checkpoint; the others wait
        distributed.barrier()
        return
    nc = len(run.data.classes)
    ev = evaluate(run.model, run.data.test, run.test_tf, p.eval_batch_size, run.device, nc, desc=f"eval {sched.name}")
    record = {
        "phase": sched.name,
        "epoch": epoch + 1,
        "train": stats.__dict__,
        "test_accuracy": ev.accuracy,
        "test_head_usage": ev.head_usage,
        "seconds": round(time.time() - t0, 1),
    }
    state["history"].append(record)
    save_checkpoint(run.checkpoint, run.model, optimizer, {**state, **scaler_state(run)})
    distributed.barrier()
    usage = ""
    if sched.name == "joint":
        usage = (
            f", usage {ev.head_usage:.3f} (train noisy {stats.usage_noisy:.3f}, "
            f"noise-free {stats.usage_deterministic:.3f})"
        )
    print(
        f"[prune] {sched.name} epoch {epoch + 1}/{sched.epochs}: loss {stats.loss:.4f}, train acc "
        f"{stats.accuracy:.4f}, test acc {ev.accuracy:.4f}{usage} ({record['seconds']:.0f}s)",
        flush=True,
    )


def _run_phase(run: PruneRun, phase: str, state: dict, started: float) -> None:
    model, main = run.model, distributed.info().is_main
    sched = phase_schedule(run.prune, phase, steps_per_epoch(run))
    model.gating = phase == "joint"
    net = _for_phase(model, phase, run.device)
    optimizer = make_optimizer(run.prune, model, phase)
    if run.checkpoint.is_file():
        load_checkpoint(run.checkpoint, model, optimizer if state["epoch"] > 0 or state.get("cursor") else None)
    for epoch in range(state["epoch"], sched.epochs):
        _run_epoch(run, sched, net, optimizer, epoch, state, started)
    if phase == "dense" and main:
        model.gating = False
        nc = len(run.data.classes)
        dense = evaluate(model, run.data.test, run.test_tf, run.prune.eval_batch_size, run.device, nc, "eval dense")
        state["dense"] = {"accuracy": dense.accuracy, "per_class_accuracy": dense.per_class_accuracy}
        print(f"[prune] dense test accuracy {dense.accuracy:.4f}", flush=True)
    state.update(phase=PHASES[sched.index + 1], epoch=0, step=0, seconds=time.time() - started, cursor=None)
    if main:
        save_checkpoint(run.checkpoint, model, None, {**state, **scaler_state(run)})
    distributed.barrier()


def resume_state(run: PruneRun) -> dict:
    """The checkpoint's JSON state (fresh without one); restores the fp16 loss scaler's scale."""
    if not run.checkpoint.is_file():
        return fresh_state()
    state = checkpoint_state(run.checkpoint)
    done = "training done" if state["phase"] == "done" else f"{state['epoch']} {state['phase']} epoch(s) done"
    print(f"[prune] resuming from {run.checkpoint}: {done}", flush=True)
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    return state


def train_phases(run: PruneRun) -> dict:
    """Train (or resume) both phases; returns the final state (history, dense accuracy, seconds)."""
    state = resume_state(run)
    started = time.time() - state["seconds"]
    finished_before = state["phase"] == "done"  # killed after training, before the final files
    for phase in PHASES[:2]:
        if PHASES.index(state["phase"]) <= PHASES.index(phase):
            _run_phase(run, phase, state, started)
    if finished_before:  # the phase loop loaded nothing: take the trained weights from the checkpoint
        load_checkpoint(run.checkpoint, run.model, None)
    state["seconds"] = time.time() - started
    return state
