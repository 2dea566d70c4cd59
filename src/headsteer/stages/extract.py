"""Stage `extract`: CLS token of the chosen block's residual INPUT, with labels, predictions and masks.

Streams to `RUN/extract/{train,test}/chunk_NNNNN.safetensors` (keys `cls` (n, d) float32, `labels`
(n,), `predictions` (n,), `masks` (n, L, H) uint8), one chunk at a time, so memory stays bounded by
a chunk; finished chunks are kept and skipped on resume. `index.json` per split is written last.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from headsteer import distributed
from headsteer.config import RunConfig
from headsteer.data import ImageSplit, load_dataset
from headsteer.engine import progress, resolve_device
from headsteer.errors import HeadsteerError
from headsteer.io import read_json, read_tensors, write_json, write_tensors
from headsteer.model import AdaViT, load_weights
from headsteer.stages.prune import build_for


def load_pruned(cfg: RunConfig, device: torch.device):
    """The dataset, the trained model from RUN/prune (eval mode) and the eval transform."""
    ds = load_dataset(cfg.data)
    model, _, test_tf = build_for(cfg, ds, device)
    load_weights(model, Path(cfg.out) / "prune" / "model.safetensors")
    return ds, model.eval(), test_tf


@torch.inference_mode()
def extract_split(model: AdaViT, split: ImageSplit, transform, layer: int, folder: Path, chunk_size: int,
                  batch_size: int, device: torch.device, desc: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    n = len(split)
    n_chunks = math.ceil(n / chunk_size)
    dist = distributed.info()
    mine = [c for c in range(n_chunks) if c % dist.world_size == dist.rank]  # torchrun: chunks shared out by rank
    for c in progress(mine, desc=desc):
        path = folder / f"chunk_{c:05d}.safetensors"
        if path.is_file():
            continue  # finished before an interruption
        lo, hi = c * chunk_size, min(n, (c + 1) * chunk_size)
        parts: dict[str, list] = {"cls": [], "predictions": [], "masks": []}
        for start in range(lo, hi, batch_size):
            stop = min(hi, start + batch_size)
            out = model(transform(split.images[start:stop]).to(device), capture=(layer,))
            parts["cls"].append(out.captured[layer][:, 0].float().cpu())  # (b, d)
            parts["predictions"].append(out.logits.argmax(1).cpu())
            parts["masks"].append(out.masks.to(torch.uint8).cpu())  # (b, L, H)
        tensors = {k: torch.cat(v) for k, v in parts.items()}
        tensors["labels"] = split.labels[lo:hi].clone()
        write_tensors(path, tensors)
    index = {"rows": n, "chunks": n_chunks, "chunk_size": chunk_size, "layer": layer, "d": model.embed_dim}
    distributed.barrier()  # every rank's chunks are on disk; chunk names keep the global order
    if dist.is_main:
        write_json(folder / "index.json", index)
    return index


def run(cfg: RunConfig, folder: Path) -> dict:
    device = resolve_device(cfg.device)
    ds, model, test_tf = load_pruned(cfg, device)
    layer = model.resolve_layer(cfg.extract.layer)
    metrics = {"layer": layer, "hook_name": f"blocks.{layer}.hook_resid_pre.cls", "d": model.embed_dim}
    for name in ("train", "test"):
        split = getattr(ds, name)
        index = extract_split(model, split, test_tf, layer, folder / name, cfg.extract.chunk_size,
                              cfg.extract.batch_size, device, desc=f"extract {name}")
        metrics[f"{name}_rows"] = index["rows"]
    if not distributed.info().is_main:
        return metrics
    write_json(folder / "metrics.json", metrics)
    print(f"[extract] layer {layer} CLS tokens: {metrics['train_rows']} train, {metrics['test_rows']} test rows "
          f"(d={model.embed_dim}) -> {folder}")
    return metrics


def load_activations(run_dir: str | Path, split: str) -> dict[str, torch.Tensor]:
    """All chunks of one split concatenated: cls (N, d), labels, predictions (N,), masks (N, L, H)."""
    folder = Path(run_dir) / "extract" / split
    index_path = folder / "index.json"
    if not index_path.is_file():
        raise HeadsteerError(f"{index_path} not found; run `headsteer extract` first")
    index = read_json(index_path)
    chunks = [read_tensors(folder / f"chunk_{c:05d}.safetensors") for c in range(index["chunks"])]
    out = {key: torch.cat([ch[key] for ch in chunks]) for key in chunks[0]}
    if out["cls"].shape[0] != index["rows"]:
        raise HeadsteerError(f"{folder} holds {out['cls'].shape[0]} rows, index.json says {index['rows']}; "
                             "delete the folder and re-run `headsteer extract`")
    return out
