"""Stage `prune`: dense training (or pretrained weights), then joint ViT + decision-network training.

Writes `model.safetensors` and `metrics.json` (dense accuracy, pruned accuracy, head usage overall /
per layer / per head / per class, training history). `checkpoint.safetensors` is rewritten after
every epoch; a killed run resumes from it.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from headsteer import distributed
from headsteer.config import RunConfig
from headsteer.data import BatchTransform, ImageDataset, batch_indices, load_dataset
from headsteer.engine import evaluate, param_groups, resolve_device, train_epoch
from headsteer.io import (checkpoint_extra, checkpoint_state, load_checkpoint, save_checkpoint, write_json,
                          write_tensors)
from headsteer.model import AdaViT, build_model, normalization

PHASES = ("dense", "joint", "done")


def build_for(cfg: RunConfig, ds: ImageDataset, device: torch.device) -> tuple[AdaViT, BatchTransform, BatchTransform]:
    """The configured model on `device`, and its train / eval batch transforms."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, len(ds.classes), ds.in_chans).to(device)
    img_size = model.vit.patch_embed.img_size[0]
    mean, std = normalization(model, cfg.model, ds.mean, ds.std)
    return model, BatchTransform(img_size, mean, std, augment=cfg.data.augment), BatchTransform(img_size, mean, std)


def _optimizer(cfg: RunConfig, model: AdaViT, phase: str) -> torch.optim.Optimizer:
    p = cfg.prune
    if phase == "dense":
        groups = param_groups(model, p.dense_lr, p.weight_decay, decision_lr=None)
    else:
        groups = param_groups(model, p.joint_lr, p.weight_decay, decision_lr=p.joint_lr * p.decision_lr_scale)
    return torch.optim.AdamW(groups, betas=(0.9, 0.999))


def _for_phase(model: AdaViT, phase: str, device: torch.device) -> torch.nn.Module:
    """Freeze the decision networks in the dense phase; wrap in DDP under torchrun."""
    for p in model.decision_parameters():
        p.requires_grad_(phase == "joint")
    if not distributed.info().enabled:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def run(cfg: RunConfig, folder: Path) -> dict:
    device = resolve_device(cfg.device)
    ds = load_dataset(cfg.data)
    model, train_tf, test_tf = build_for(cfg, ds, device)
    p = cfg.prune
    ckpt = folder / "checkpoint.safetensors"
    state = {"phase": "dense", "epoch": 0, "step": 0, "history": [], "dense": None, "seconds": 0.0}
    if ckpt.is_file():
        state = checkpoint_state(ckpt)
        print(f"[prune] resuming from {ckpt}: phase {state['phase']}, epoch {state['epoch']}")
    started = time.time() - state["seconds"]
    finished_before = state["phase"] == "done"  # killed after training, before the final files
    main = distributed.info().is_main
    world = distributed.info().world_size
    steps_per_epoch = len(batch_indices(len(ds.train), p.batch_size * world, shuffle=False, drop_last=True))
    if p.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, p.max_steps_per_epoch)
    nc = len(ds.classes)

    for phase_index, phase in enumerate(PHASES[:2]):
        if PHASES.index(state["phase"]) > phase_index:
            continue
        epochs = p.dense_epochs if phase == "dense" else p.joint_epochs
        model.gating = phase == "joint"
        net = _for_phase(model, phase, device)
        optimizer = _optimizer(cfg, model, phase)
        if ckpt.is_file():
            load_checkpoint(ckpt, model, optimizer if state["epoch"] > 0 or state.get("cursor") else None)
        total = max(1, epochs * steps_per_epoch)
        for epoch in range(state["epoch"], epochs):
            t0 = time.time()
            resume = None
            if state.get("cursor"):  # killed inside this epoch: continue from the saved batch
                resume = {**state["cursor"], **checkpoint_extra(ckpt)}
                print(f"[prune] resuming {phase} epoch {epoch + 1} at batch {resume['batch']}")

            def mid_epoch(cursor: dict, epoch_state=dict(state)) -> None:
                rng = {k: cursor.pop(k) for k in ("torch_rng", "gen_rng", "cuda_rng") if k in cursor}
                save_checkpoint(ckpt, model, optimizer, {**epoch_state, "cursor": cursor,
                                                         "seconds": time.time() - started}, extra=rng)

            stats = train_epoch(
                model, ds.train, train_tf, optimizer, epoch=epoch + 1000 * phase_index, seed=cfg.seed,
                batch_size=p.batch_size, step0=state["step"], total_steps=total, warmup_steps=int(p.warmup_frac * total),
                label_smoothing=p.label_smoothing, device=device, target_usage=p.target_usage,
                usage_weight=p.usage_weight if phase == "joint" else 0.0, usage_kind=p.usage_loss, usage_on=p.usage_on,
                noise_initial=p.noise_initial if phase == "joint" else 1.0,
                noise_final=p.noise_final if phase == "joint" else 1.0, max_steps=p.max_steps_per_epoch,
                desc=f"{phase} {epoch + 1}/{epochs}", net=net, resume=resume,
                checkpoint_every=p.checkpoint_every if world == 1 else 0, on_checkpoint=mid_epoch)
            state.update(epoch=epoch + 1, step=state["step"] + stats.steps, seconds=time.time() - started, cursor=None)
            if not main:  # rank 0 evaluates and writes the checkpoint; the others wait
                distributed.barrier()
                continue
            ev = evaluate(model, ds.test, test_tf, p.eval_batch_size, device, nc, desc=f"eval {phase}")
            record = {"phase": phase, "epoch": epoch + 1, "train": stats.__dict__, "test_accuracy": ev.accuracy,
                      "test_head_usage": ev.head_usage, "seconds": round(time.time() - t0, 1)}
            state["history"].append(record)
            save_checkpoint(ckpt, model, optimizer, state)
            distributed.barrier()
            usage = f", usage {ev.head_usage:.3f} (train noisy {stats.usage_noisy:.3f}, noise-free {stats.usage_deterministic:.3f})" \
                if phase == "joint" else ""
            print(f"[prune] {phase} epoch {epoch + 1}/{epochs}: loss {stats.loss:.4f}, train acc {stats.accuracy:.4f}, "
                  f"test acc {ev.accuracy:.4f}{usage} ({record['seconds']:.0f}s)", flush=True)
        if phase == "dense" and main:
            model.gating = False
            dense = evaluate(model, ds.test, test_tf, p.eval_batch_size, device, nc, desc="eval dense")
            state["dense"] = {"accuracy": dense.accuracy, "per_class_accuracy": dense.per_class_accuracy}
            print(f"[prune] dense test accuracy {dense.accuracy:.4f}", flush=True)
        state.update(phase=PHASES[phase_index + 1], epoch=0, step=0, seconds=time.time() - started, cursor=None)
        if main:
            save_checkpoint(ckpt, model, None, state)
        distributed.barrier()

    if finished_before:  # the phase loop loaded nothing: take the trained weights from the checkpoint
        load_checkpoint(ckpt, model, None)
    identical = distributed.ranks_identical(model)  # collective: every rank takes part
    if not main:
        return {}
    model.gating = True
    final = evaluate(model, ds.test, test_tf, p.eval_batch_size, device, nc, desc="eval pruned")
    write_tensors(folder / "model.safetensors", model.state_dict())
    last_joint = [h for h in state["history"] if h["phase"] == "joint"]
    metrics = {
        "dataset": ds.name, "model": cfg.model.arch, "classes": ds.classes,
        "num_layers": model.depth, "num_heads": model.num_heads, "embed_dim": model.embed_dim,
        "pruned_layers": model.pruned_layers, "target_usage": p.target_usage,
        "dense": state["dense"],
        "pruned": {"accuracy": final.accuracy, "head_usage": final.head_usage,
                   "head_usage_final_layer": final.usage_per_layer[-1],
                   "head_usage_per_layer": final.usage_per_layer, "keep_rate_per_head": final.keep_rate_per_head,
                   "per_class_accuracy": final.per_class_accuracy, "per_class_usage": final.per_class_usage,
                   "train_usage_noisy": last_joint[-1]["train"]["usage_noisy"] if last_joint else None,
                   "train_usage_deterministic": last_joint[-1]["train"]["usage_deterministic"] if last_joint else None},
        "history": state["history"], "seconds": round(time.time() - started, 1), "device": str(device),
        "threads": torch.get_num_threads(), "ddp": {"world_size": world, "ranks_identical": identical},
    }
    write_json(folder / "metrics.json", metrics)
    print(f"[prune] dense acc {state['dense']['accuracy']:.4f} -> pruned acc {final.accuracy:.4f}, head usage "
          f"{final.head_usage:.3f} (final layer {final.usage_per_layer[-1]:.3f}, target {p.target_usage})", flush=True)
    return metrics
