"""CPU threads under load: one joint training step of the demo model (gated, decision networks, usage
loss) with 1 thread and with every CPU, on a quiet machine and beside busy processes this script starts
itself (plain Python loops, stopped when each case ends).

Usage: python bench/bench_threads.py [--quick] [--busy 0 1 2]

On a shared machine, threads spinning on cores other programs use slow each other down; the table says
by how much, so you can choose `threads` (headsteer's default is every CPU: the fastest when the
machine is yours). CPU only: with --device cuda the script prints that and saves nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from bench_train_step import train_steps
from headsteer.benchmark import parse, parser, save, table, time_fn
from headsteer.runtime import cpus_available

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ["model", "batch", "busy_processes", "threads", "step_ms"]
BUSY = "import time\nend = time.time() + 600\nwhile time.time() < end:\n    pass\n"  # ends by itself at worst


def busy(n: int) -> list[subprocess.Popen]:
    """n processes that keep one core each busy until they are killed (or 10 minutes pass)."""
    return [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(n)]


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, RESULTS)
    p.add_argument("--busy", nargs="+", type=int, default=[0, 1, 2], help="busy processes per case")
    args = parse(p, argv, busy=[0, 1])
    if args.device != "cpu":
        print("bench_threads measures CPU threads; nothing to do on", args.device)
        return
    geo = "tiny" if args.quick else "demo3"
    steps, B = train_steps(geo, "cpu")
    step = steps["gated + decision nets"]
    counts = sorted({1, cpus_available()})
    rows = []
    for n_busy in args.busy:
        procs = busy(n_busy)
        try:
            for threads in counts:
                torch.set_num_threads(threads)
                t = time_fn(step, "cpu", args.warmup, 3 * args.iters)["median_s"]
                rows.append({"model": geo, "batch": B, "busy_processes": n_busy, "threads": threads,
                             "step_ms": round(1000 * t, 1)})  # fmt: skip
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    table(rows, COLUMNS)
    save("threads", args, {"rows": rows, "cpus": cpus_available()})


if __name__ == "__main__":
    main()
