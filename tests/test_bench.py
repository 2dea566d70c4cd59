"""bench/: every script runs with --quick (tiny geometry, seconds) so none can rot, and leaves
bench/results alone; plus the shared protocol in `harness` (file names, timer, masks)."""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness import forced_masks, parse_result_name, result_name, save, time_interleaved

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BENCHES = {
    "inference",
    "skip_methods",
    "train_step",
    "sweep",
    "sae_extract",
    "sae_train",
    "threads",
    "classes",
    "api_sweep",
}
HEADERS = {  # script -> the header line(s) its output must contain
    "bench_inference": ["model  batch  variant  usage  img_s  time_ratio  mac_ratio  realised_over_theory"],
    "bench_skip_methods": ["layer  masks  usage  patterns  dense_ms  per_head  grouped"],
    "bench_train_step": ["model  batch  variant  step_ms  img_s  overhead_pct"],
    "bench_sweep": ["model  layer  tail            images  full_ms  cached_ms  speedup  warm_ms  warm_speedup"],
    "bench_sae_extract": ["what  batch  per_s  unit"],
    "bench_sae_train": ["trainer  cpu_s  fvu_test  dead_test_pct  cpu_ratio  fvu_ratio  dead_ratio"],
    "bench_threads": ["model  batch  busy_processes  threads  step_ms"],
    "bench_classes": [
        "classes  train  test  steer_s  report_s  steer_rss_mb  report_rss_mb  results_json_mb  report_html_mb  "
        "steer_time_ratio  report_time_ratio  rss_ratio"
    ],
    "to_markdown": ["| model | batch | variant | usage | img_s | time_ratio | mac_ratio | realised_over_theory |"],
}
HEADERS["run_all"] = [h for name, hs in HEADERS.items() if name.startswith("bench_") for h in hs]


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Relative path -> (mtime in ns, sha256) of every file under folder."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_quick(script: str, *extra: str, timeout: int = 120) -> str:
    """stdout of `bench/<script>.py --quick --device cpu [extra]`, which must succeed."""
    cmd = [sys.executable, f"bench/{script}.py", "--quick", "--device", "cpu", *extra]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


TIMEOUTS = {"bench_classes": 400, "run_all": 800}
"""Seconds a --quick run may take where 120 is too few (bench_classes runs the pipeline twice)."""


@pytest.mark.parametrize("script", list(HEADERS))
def test_script_runs_quick(script: str) -> None:
    before = snapshot(RESULTS)
    out = run_quick(script, timeout=TIMEOUTS.get(script, 120))
    lines = [" ".join(line.split()) for line in out.splitlines()]
    for header in HEADERS[script]:
        assert " ".join(header.split()) in lines, f"{script}: no table header {header!r} in\n{out}"
    if script != "to_markdown":
        assert "--quick run: results not saved" in out
        assert "vit_s16_224" not in out and "demo" not in out  # the tiny geometry only
    assert snapshot(RESULTS) == before, "a --quick run modified bench/results"


def test_result_name_round_trip() -> None:
    assert result_name("inference", "cpu") == "inference_cpu.json"
    assert result_name("train_step", "cuda:1") == "train_step_gpu.json"
    name = result_name("inference", "cuda", {"models": ["vit_s16_224"], "batches": [1, 64]})
    assert name == "inference_models-vit_s16_224_batches-1+64_gpu.json"
    assert parse_result_name(name) == ("inference", {"models": "vit_s16_224", "batches": "1+64"}, "gpu")
    assert parse_result_name("skip_methods_cpu.json") == ("skip_methods", {}, "cpu")
    for bad in ("inference.json", "inference_tpu.json", "Inference_cpu.json"):
        with pytest.raises(ValueError):
            parse_result_name(bad)
    with pytest.raises(ValueError):
        result_name("inference", "cpu", {"models": ["a-b"]})  # a "-" in a value would make the name ambiguous


def test_committed_results_follow_the_scheme() -> None:
    for path in RESULTS.glob("*.json"):
        bench, subset, kind = parse_result_name(path.name)
        assert bench in BENCHES, path.name
        assert result_name(bench, "cuda" if kind == "gpu" else "cpu", subset) == path.name


def test_save_names_the_subset(tmp_path: Path) -> None:
    args = argparse.Namespace(device="cpu", quick=False, out=tmp_path, models=["demo"], batches=[1, 64], iters=5)
    path = save("inference", args, {"rows": []}, full={"models": ["demo", "vit_s16_224"], "batches": [1, 64]})
    assert path == tmp_path / "inference_models-demo_cpu.json" and path.is_file()
    args.quick = True
    assert save("sweep", args, {"rows": []}) is None
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_time_interleaved_round_robin_and_medians() -> None:
    calls: list[str] = []

    def sleeper(name: str, seconds: float):
        def fn():
            calls.append(name)
            time.sleep(seconds)

        return fn

    t = time_interleaved({"short": sleeper("short", 0.002), "long": sleeper("long", 0.006)}, "cpu", 1, 7)
    assert calls[2:] == ["short", "long"] * 7  # one call of each per round, after the warm-up calls
    assert t["long"] / t["short"] > 1.5
    assert 0.002 <= t["short"] < 0.006


def test_forced_masks_usage() -> None:
    m = forced_masks(64, 3, 6, 0.5)  # (B, L, H)
    assert m.shape == (64, 3, 6)
    assert torch.equal(m.sum(-1), torch.full((64, 3), 3.0))  # exactly 3 of 6 heads everywhere
    counts = forced_masks(256, 2, 6, 0.7).sum(-1)  # 4.2 heads on average: 4 or 5 each
    assert set(counts.unique().tolist()) <= {4.0, 5.0} and abs(counts.mean().item() / 6 - 0.7) < 0.03


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on a CPU needs a C++ compiler")
def test_train_step_times_the_compiled_model_when_asked():
    """The variant a GPU run times by default (--compile), checked here on the tiny geometry."""
    out = run_quick("bench_train_step", "--compile", timeout=300)
    rows = [line.split() for line in out.splitlines() if line.startswith("tiny")]
    assert [" ".join(r[2:-3]) for r in rows][-1] == "gated + decision nets, compiled"
    assert float(rows[-1][-3]) > 0  # a step time was measured
