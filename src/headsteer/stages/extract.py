"""Stage `extract`: CLS token of the chosen block's residual INPUT, with labels, predictions and masks.

Streams each split into an activation store (headsteer.activations) one chunk at a time, so memory
stays bounded by a chunk; finished chunks are kept and skipped on resume.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from headsteer import distributed
from headsteer.activations import Activations, ActivationStore
from headsteer.config import RunConfig
from headsteer.data import ImageSplit
from headsteer.io import write_json
from headsteer.model import AdaViT
from headsteer.model.configured import load_pruned
from headsteer.runtime import progress, resolve_device


@torch.inference_mode()
def extract_chunk(
    model: AdaViT, split: ImageSplit, transform, layer: int, lo: int, hi: int, batch_size: int, device: torch.device
) -> Activations:
    """Rows lo..hi of `split`: CLS entering `layer`, predictions and masks of the unsteered model."""
    parts: dict[str, list] = {"cls": [], "predictions": [], "masks": []}
    for start in range(lo, hi, batch_size):
        stop = min(hi, start + batch_size)
        out = model(transform(split.images[start:stop]).to(device), capture=(layer,))
        parts["cls"].append(out.captured[layer][:, 0].float().cpu())  # (b, d)
        parts["predictions"].append(out.logits.argmax(1).cpu())
        parts["masks"].append(out.masks.to(torch.uint8).cpu())  # (b, L, H)
    return Activations(labels=split.labels[lo:hi].clone(), **{k: torch.cat(v) for k, v in parts.items()})


def extract_split(
    model: AdaViT,
    split: ImageSplit,
    transform,
    layer: int,
    folder: Path,
    chunk_size: int,
    batch_size: int,
    device: torch.device,
    desc: str,
) -> dict:
    """Write every chunk of `split` missing from the store in `folder`, then its index."""
    store = ActivationStore(folder)
    n = len(split)
    n_chunks = math.ceil(n / chunk_size)
    dist = distributed.info()
    mine = [c for c in range(n_chunks) if c % dist.world_size == dist.rank]  # torchrun: chunks shared out by rank
    for c in progress(mine, desc=desc):
        if not store.has_chunk(c):  # else finished before an interruption
            lo, hi = c * chunk_size, min(n, (c + 1) * chunk_size)
            store.save_chunk(c, extract_chunk(model, split, transform, layer, lo, hi, batch_size, device))
    index = {"rows": n, "chunks": n_chunks, "chunk_size": chunk_size, "layer": layer, "d": model.embed_dim}
    distributed.barrier()  # every rank's chunks are on disk; chunk names keep the global order
    if dist.is_main:
        store.save_index(index)
    return index


def run(cfg: RunConfig, folder: Path) -> dict:
    device = resolve_device(cfg.device)
    pm = load_pruned(cfg, device)
    model = pm.model
    layer = model.resolve_layer(cfg.extract.layer, "extract.layer")
    metrics = {"layer": layer, "hook_name": f"blocks.{layer}.hook_resid_pre.cls", "d": model.embed_dim}
    for name in ("train", "test"):
        index = extract_split(
            model,
            getattr(pm.data, name),
            pm.test_tf,
            layer,
            folder / name,
            cfg.extract.chunk_size,
            cfg.extract.batch_size,
            device,
            desc=f"extract {name}",
        )
        metrics[f"{name}_rows"] = index["rows"]
    if not distributed.info().is_main:
        return metrics
    write_json(folder / "metrics.json", metrics)
    print(
        f"[extract] layer {layer} CLS tokens: {metrics['train_rows']} train, {metrics['test_rows']} test rows "
        f"(d={model.embed_dim}) -> {folder}",
        flush=True,
    )
    return metrics
