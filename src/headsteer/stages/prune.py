"""Stage `prune`: dense training (or pretrained weights), then joint ViT + decision-network training.

Writes `model.safetensors` and `metrics.json` (dense accuracy, pruned accuracy, head usage overall /
per layer / per head / per class, training history). `checkpoint.safetensors` is rewritten after
every epoch; a killed run resumes from it (headsteer.prune.train).
"""

from __future__ import annotations

from pathlib import Path

import torch

from headsteer.artifacts.io import write_json, write_tensors
from headsteer.config import RunConfig
from headsteer.core import distributed
from headsteer.core.runtime import resolve_device
from headsteer.data import load_dataset
from headsteer.model.configured import build_for
from headsteer.prune.evaluate import TARGET_SLACK, EvalResult, evaluate
from headsteer.prune.train import PruneRun, train_phases


def _metrics(cfg: RunConfig, run: PruneRun, state: dict, final: EvalResult, identical: bool) -> dict:
    model, p = run.model, cfg.prune
    last_joint = [h for h in state["history"] if h["phase"] == "joint"]
    pruned = {
        "accuracy": final.accuracy,
        "head_usage": final.head_usage,
        "head_usage_final_layer": final.usage_per_layer[-1],
        "head_usage_per_layer": final.usage_per_layer,
        "keep_rate_per_head": final.keep_rate_per_head,
        "per_class_accuracy": final.per_class_accuracy,
        "per_class_usage": final.per_class_usage,
        "train_usage_noisy": last_joint[-1]["train"]["usage_noisy"] if last_joint else None,
        "train_usage_deterministic": last_joint[-1]["train"]["usage_deterministic"] if last_joint else None,
    }
    return {
        "dataset": run.data.name,
        "model": cfg.model.arch,
        "classes": run.data.classes,
        "num_layers": model.depth,
        "num_heads": model.num_heads,
        "embed_dim": model.embed_dim,
        "pruned_layers": model.pruned_layers,
        "target_usage": p.target_usage,
        "dense": state["dense"],
        "pruned": pruned,
        "history": state["history"],
        "seconds": round(state["seconds"], 1),
        "device": str(run.device),
        "threads": torch.get_num_threads(),
        "ddp": {"world_size": distributed.info().world_size, "ranks_identical": identical},
    }


def run(cfg: RunConfig, folder: Path) -> dict:
    device = resolve_device(cfg.device)
    ds = load_dataset(cfg.data)
    built = build_for(cfg, ds, device)
    run = PruneRun(
        built.model,
        ds,
        built.train_tf,
        built.test_tf,
        cfg.prune,
        cfg.seed,
        device,
        folder / "checkpoint.safetensors",
        workers=cfg.data.num_workers,
    )
    state = train_phases(run)
    identical = distributed.ranks_identical(run.model)  # collective: every rank takes part
    if not distributed.info().is_main:
        return {}
    model, p = run.model, cfg.prune
    model.gating = True
    final = evaluate(model, ds.test, built.test_tf, p.eval_batch_size, device, len(ds.classes), desc="eval pruned")
    write_tensors(folder / "model.safetensors", model.state_dict())
    metrics = _metrics(cfg, run, state, final, identical)
    write_json(folder / "metrics.json", metrics)
    print(
        f"[prune] dense acc {state['dense']['accuracy']:.4f} -> pruned acc {final.accuracy:.4f}, head usage "
        f"{final.head_usage:.3f} (final layer {final.usage_per_layer[-1]:.3f}, target {p.target_usage})",
        flush=True,
    )
    if abs(final.head_usage - p.target_usage) > TARGET_SLACK:
        print(
            f"[prune] warning: head usage {final.head_usage:.3f} misses prune.target_usage {p.target_usage} by more "
            f"than {TARGET_SLACK}; the steering comparison may be void (train longer or raise prune.usage_weight)",
            flush=True,
        )
    return metrics
