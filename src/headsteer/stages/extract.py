"""Stage `extract`: CLS token of the chosen blocks' residual INPUT, with labels, predictions and masks.

One forward pass captures every layer of the study (extract.layer and extract.layers). Each split is
streamed into one activation store per layer (headsteer.artifacts.activations) a chunk at a time, so memory
stays bounded by a chunk; finished chunks are kept and skipped on resume.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from headsteer.artifacts.activations import Activations, ActivationStore, hook_name
from headsteer.artifacts.io import write_json
from headsteer.config import RunConfig
from headsteer.core import distributed
from headsteer.core.runtime import progress, resolve_device
from headsteer.data import ImageSplit
from headsteer.model import AdaViT
from headsteer.model.configured import load_pruned, study_layers


@torch.inference_mode()
def extract_chunk(
    model: AdaViT,
    split: ImageSplit,
    transform,
    layers: list[int],
    lo: int,
    hi: int,
    batch_size: int,
    device: torch.device,
) -> dict[int, Activations]:
    """Rows lo..hi of `split`, per layer: CLS entering it, predictions and masks of the unsteered model
    (one forward pass captures every layer)."""
    cls: dict[int, list] = {i: [] for i in layers}
    preds, masks = [], []
    for start in range(lo, hi, batch_size):
        stop = min(hi, start + batch_size)
        out = model(transform(split.images[start:stop]).to(device), capture=tuple(layers))
        for i in layers:
            cls[i].append(out.captured[i][:, 0].float().cpu())  # (b, d)
        preds.append(out.logits.argmax(1).cpu())
        masks.append(out.masks.to(torch.uint8).cpu())  # (b, L, H)
    labels, preds, masks = split.labels[lo:hi].clone(), torch.cat(preds), torch.cat(masks)
    return {i: Activations(torch.cat(cls[i]), labels, preds, masks) for i in layers}


def extract_split(
    model: AdaViT,
    split: ImageSplit,
    transform,
    stores: dict[int, ActivationStore],
    chunk_size: int,
    batch_size: int,
    device: torch.device,
    desc: str,
) -> dict:
    """Write every chunk of `split` missing from any layer's store, then the stores' indexes."""
    n = len(split)
    n_chunks = math.ceil(n / chunk_size)
    dist = distributed.info()
    mine = [c for c in range(n_chunks) if c % dist.world_size == dist.rank]  # torchrun: chunks shared out by rank
    for c in progress(mine, desc=desc):
        if not all(store.has_chunk(c) for store in stores.values()):  # else finished before an interruption
            lo, hi = c * chunk_size, min(n, (c + 1) * chunk_size)
            parts = extract_chunk(model, split, transform, list(stores), lo, hi, batch_size, device)
            for layer, store in stores.items():
                store.save_chunk(c, parts[layer])
    distributed.barrier()  # every rank's chunks are on disk; chunk names keep the global order
    index = {"rows": n, "chunks": n_chunks, "chunk_size": chunk_size, "d": model.embed_dim}
    if dist.is_main:
        for layer, store in stores.items():
            store.save_index({**index, "layer": layer})
    return index


def run(cfg: RunConfig, folder: Path) -> dict:
    device = resolve_device(cfg.device)
    pm = load_pruned(cfg, device)
    model = pm.model
    headline, layers = study_layers(model, cfg.extract)
    metrics = {
        "layer": headline,
        "layers": layers,
        "hook_name": hook_name(headline),
        "hook_names": {str(i): hook_name(i) for i in layers},
        "d": model.embed_dim,
    }
    for name in ("train", "test"):
        index = extract_split(
            model,
            getattr(pm.data, name),
            pm.test_tf,
            {i: ActivationStore.of_run(cfg.out, name, i) for i in layers},
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
        f"[extract] CLS tokens entering layers {layers} (headline {headline}): {metrics['train_rows']} train, "
        f"{metrics['test_rows']} test rows (d={model.embed_dim}) -> {folder}",
        flush=True,
    )
    return metrics
