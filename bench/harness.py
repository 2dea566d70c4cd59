"""The shared benchmark protocol used by the scripts in `bench/`.

Timing follows timm's benchmark: warm-up calls, then timed iterations, the median reported; variants
that are compared with each other are timed round-robin (`time_interleaved`). Models come from named
geometries (`GEOMETRIES`; "tiny" is what `--quick` runs, so a smoke check never builds a large model).
Results go to one JSON file per benchmark, named by `result_name`:

    <bench>_<cpu|gpu>.json                                  a full run
    <bench>_<key>-<value>[_<key>-<value>...]_<cpu|gpu>.json  a run restricted to a subset of its rows

e.g. `inference_cpu.json`, `inference_models-vit_s16_224_batches-64_cpu.json`; several values of one
option are joined by "+" (`batches-1+64`). `parse_result_name` reads a name back.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import timm
import torch

from headsteer.artifacts.io import git_sha, write_json
from headsteer.config import ModelConfig
from headsteer.model import build_model

GEOMETRIES: dict[str, dict[str, Any]] = {
    "tiny": {
        "arch": "vit_tiny_patch16_224",
        "img_size": 28,
        "patch_size": 7,
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 4,
        "mlp_ratio": 2.0,
        "in_chans": 1,
        "num_classes": 10,
    },
    "demo": {
        "arch": "vit_tiny_patch16_224",
        "img_size": 28,
        "patch_size": 7,
        "embed_dim": 192,
        "depth": 6,
        "num_heads": 6,
        "mlp_ratio": 2.0,
        "in_chans": 1,
        "num_classes": 10,
    },
    "demo3": {
        "arch": "vit_tiny_patch16_224",
        "img_size": 28,
        "patch_size": 7,
        "embed_dim": 192,
        "depth": 3,
        "num_heads": 6,
        "mlp_ratio": 2.0,
        "in_chans": 1,
        "num_classes": 10,
    },
    "vit_s16_224": {"arch": "vit_small_patch16_224", "img_size": 224, "in_chans": 3, "num_classes": 100},
}
"""Model geometries by name: a timm arch and the overrides of its defaults, plus input channels and classes.
"demo" is the 6-block geometry the demo used until the layer study (issue 8/10), kept so that earlier
results stay comparable; "demo3" is today's demo (configs/demo.yaml)."""

FULL_GEOMETRIES = ("demo", "vit_s16_224")
"""What a full (not --quick) run measures; "tiny" exists for smoke checks only."""

SAE_GEOMETRIES: dict[str, tuple[int, int, int]] = {
    "tiny": (32, 128, 8),
    "demo": (192, 1536, 32),
    "demo3": (192, 1536, 32),
    "vit_s16_224": (384, 3072, 64),
}
"""(d_in, d_sae, k) of the SAE that goes with each model geometry."""

QUICK_WARMUP, QUICK_ITERS = 1, 2
"""Warm-up calls and timed iterations of a --quick run (a smoke check, not a measurement)."""

_BENCH = r"[a-z0-9]+(?:_[a-z0-9]+)*"  # lower-case words joined by "_"
_VALUE = r"[A-Za-z0-9.+]+(?:_[A-Za-z0-9.+]+)*"  # no "-", so "_<key>-" always starts the next pair


# ------------------------------------------------------------------------------------------------
# command line
def parser(description: str, out_dir: Path) -> argparse.ArgumentParser:
    """The options every bench script shares; `out_dir` is where full runs write their JSON."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    p.add_argument("--iters", type=int, default=5, help="timed iterations (scripts scale it per case)")
    p.add_argument(
        "--quick", action="store_true", help=f"smoke check: tiny geometry, {QUICK_ITERS} iterations, nothing saved"
    )
    p.add_argument("--out", type=Path, default=out_dir, help="results folder (default: %(default)s)")
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None = None, **quick: Any) -> argparse.Namespace:
    """Parse argv; with --quick, use QUICK_WARMUP / QUICK_ITERS, one thread, and the given overrides
    (the tiny cases). One thread: tiny ops gain nothing from more, and on a loaded 2-core machine
    two spinning threads made a tiny layer 100x slower (12 ms instead of 0.1 ms a call)."""
    args = p.parse_args(argv)
    device_kind(args.device)  # an unsupported device fails now, not after the run
    if args.quick:
        args.warmup, args.iters = QUICK_WARMUP, QUICK_ITERS
        torch.set_num_threads(1)
        for key, value in quick.items():
            setattr(args, key, value)
    return args


# ------------------------------------------------------------------------------------------------
# models
def build(name: str, device: str, **overrides: Any) -> tuple[torch.nn.Module, int, int, int]:
    """Our gated model of geometry `name` (seed 0, eval mode) -> (model, in_chans, img_size, num_classes)."""
    g = dict(GEOMETRIES[name])
    in_chans, num_classes = g.pop("in_chans"), g.pop("num_classes")
    torch.manual_seed(0)
    model = build_model(ModelConfig(**g, **overrides), num_classes, in_chans).to(device).eval()
    return model, in_chans, g.get("img_size", 224), num_classes


def timm_reference(name: str, device: str) -> torch.nn.Module:
    """timm's unmodified model of geometry `name` (seed 0, eval mode): the dense baseline."""
    g = dict(GEOMETRIES[name])
    arch = g.pop("arch")
    torch.manual_seed(0)
    return timm.create_model(arch, **g).to(device).eval()


def forced_masks(B: int, L: int, H: int, usage: float, seed: int = 0) -> torch.Tensor:
    """(B, L, H) head masks: each (image, layer) keeps round(usage * H) random heads, the remainders
    spread so the mean over the batch equals `usage` as closely as whole heads allow."""
    g = torch.Generator().manual_seed(seed)
    total = usage * H
    base = int(total)
    extra = torch.rand(B, L, generator=g) < (total - base)
    counts = base + extra.long()  # (B, L)
    ranks = torch.rand(B, L, H, generator=g).argsort(-1).argsort(-1)  # (B, L, H) a random permutation
    return (ranks < counts[..., None]).float()


# ------------------------------------------------------------------------------------------------
# timing
def autocast(device: str):
    """bf16 autocast on CUDA (how the GPU numbers are taken), nothing on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else nullcontext()


def sync(device: str) -> None:
    """Wait for queued GPU work, so a timer measures the work and not its launch."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], Any], device: str, warmup: int, iters: int) -> dict:
    """Median / min seconds per call of fn after `warmup` untimed calls."""
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


# ------------------------------------------------------------------------------------------------
# results
def device_kind(device: str) -> str:
    """The device part of a result-file name: `gpu` for CUDA ("cuda", "cuda:1"), `cpu` for the CPU."""
    kind = torch.device(device).type
    if kind not in ("cuda", "cpu"):
        raise ValueError(f"--device {device}: results are kept for cuda and cpu devices only")
    return "gpu" if kind == "cuda" else "cpu"


def result_name(bench: str, device: str, subset: dict[str, Any] | None = None) -> str:
    """The file name of a benchmark's results: `<bench>_<cpu|gpu>.json` for a full run, with
    `_<key>-<value>` inserted per option that restricts the run to a subset of its rows."""
    if not re.fullmatch(_BENCH, bench):
        raise ValueError(f"bench name {bench!r}: lower-case words joined by '_'")
    parts = [bench]
    for key, value in (subset or {}).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        text = "+".join(str(v) for v in values)
        if not re.fullmatch(r"[a-z]+", key) or not re.fullmatch(_VALUE, text):
            raise ValueError(f"subset {key}={value!r} cannot go into a file name")
        parts.append(f"{key}-{text}")
    parts.append(device_kind(device))
    return "_".join(parts) + ".json"


def parse_result_name(name: str) -> tuple[str, dict[str, str], str]:
    """Inverse of `result_name`: file name -> (bench, {key: value text}, "cpu" | "gpu")."""
    # the bench part matches lazily, so "_<key>-<value>" pairs and the device are left to the groups after it
    m = re.fullmatch(rf"(?P<bench>{_BENCH}?)(?P<subset>(?:_[a-z]+-{_VALUE})*)_(?P<kind>cpu|gpu)\.json", name)
    if m is None:
        raise ValueError(f"{name!r} is not <bench>[_<key>-<value>...]_<cpu|gpu>.json")
    pairs = re.split(r"_(?=[a-z]+-)", m["subset"])[1:]  # "_k1-v1_k2-v2" -> ["k1-v1", "k2-v2"]
    return m["bench"], dict(p.split("-", 1) for p in pairs), m["kind"]


def machine(device: str) -> dict:
    """Where the numbers were taken: device, torch, threads, platform, git commit, date."""
    info = {
        "device": device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "git_sha": git_sha(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def save(bench: str, args: argparse.Namespace, payload: dict, full: dict[str, Any] | None = None) -> Path | None:
    """Write args.out/<result_name> with machine info and the options; a --quick run is not kept.

    full: option -> its default, for the options that select rows; those that differ name the subset."""
    if args.quick:
        print("--quick run: results not saved")
        return None
    subset = {key: getattr(args, key) for key, default in (full or {}).items() if getattr(args, key) != default}
    path = Path(args.out) / result_name(bench, args.device, subset)
    options = {key: str(v) if isinstance(v, Path) else v for key, v in vars(args).items()}
    write_json(path, {"machine": machine(args.device), "options": options, **payload})
    print(f"wrote {path}")
    return path


def table(rows: list[dict], cols: list[str]) -> None:
    """Print rows as a plain-text table with a header line of `cols`."""
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(cols, widths, strict=True)))
    sys.stdout.flush()
