"""Shared benchmark helpers: timm's protocol (warm-up, timed iterations, median), machine info, JSON."""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from headsteer.config import ModelConfig  # noqa: E402
from headsteer.io import git_sha, write_json  # noqa: E402
from headsteer.model import build_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
GEOMETRIES = {
    "demo": dict(arch="vit_tiny_patch16_224", img_size=28, patch_size=7, embed_dim=192, depth=6, num_heads=6,
                 mlp_ratio=2.0, in_chans=1, num_classes=10),
    "vit_s16_224": dict(arch="vit_small_patch16_224", img_size=224, in_chans=3, num_classes=100),
}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="fewer iterations (smoke-check the script)")
    return p


def build(name: str, device: str, **overrides):
    g = dict(GEOMETRIES[name])
    in_chans, num_classes = g.pop("in_chans"), g.pop("num_classes")
    torch.manual_seed(0)
    model = build_model(ModelConfig(**g, **overrides), num_classes, in_chans).to(device).eval()
    return model, in_chans, g.get("img_size", 224), num_classes


def autocast(device: str):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else nullcontext()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_fn(fn, device: str, warmup: int, iters: int) -> dict:
    """Median / min seconds per call after warm-up."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "iters": iters}


def time_interleaved(fns: dict, device: str, warmup: int, iters: int) -> dict:
    """Median seconds per call of each function, timed round-robin (one call of each per round).

    The CPU machines here drift by up to 20 % in speed over minutes; interleaving makes the drift hit
    every variant alike, so ratios against the baseline stay meaningful."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times: dict = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def machine(device: str) -> dict:
    info = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "git_sha": git_sha(),
            "date": time.strftime("%Y-%m-%d %H:%M")}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def save(name: str, device: str, payload: dict, quick: bool = False) -> Path | None:
    """Write bench/results/<name>_<cpu|gpu>.json; a --quick smoke run is too noisy to keep."""
    if quick:
        print("--quick run: results not saved")
        return None
    path = RESULTS / f"{name}_{'gpu' if device.startswith('cuda') else 'cpu'}.json"
    write_json(path, {"machine": machine(device), **payload})
    print(f"wrote {path}")
    return path


def table(rows: list[dict], cols: list[str]) -> None:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(cols, widths)))
    sys.stdout.flush()
