"""CPU threads under load: one joint training step of the demo model (gated, decision networks, usage
loss) with torch's default threads (one per core, as headsteer leaves them with `threads: null`) and
with 1 thread, on a quiet machine and beside busy processes this script starts itself (plain Python
loops, stopped when each case ends). Each case runs in its own process: once a process has called
torch.set_num_threads, its default is gone.

Usage: python bench/bench_threads.py [--quick] [--busy 0 1 2]

On a shared machine, threads spinning on cores other programs use slow each other down; the table says
by how much, so you can choose `threads`. CPU only: with --device cuda it prints that and saves nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from harness import parse, parser, save, table, time_fn

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ["model", "batch", "busy_processes", "threads", "step_ms"]
BUSY = "import time\nend = time.time() + 600\nwhile time.time() < end:\n    pass\n"  # ends by itself at worst


def one_case(geo: str, threads: str, warmup: int, iters: int) -> None:
    """In a child process: time the step with `threads` ('default' or a number), print 'threads ms'."""
    from bench_train_step import train_steps

    if threads != "default":
        torch.set_num_threads(int(threads))
    steps, _ = train_steps(geo, "cpu")
    t = time_fn(steps["gated + decision nets"], "cpu", warmup, iters)["median_s"]
    print(torch.get_num_threads(), round(1000 * t, 1))


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, RESULTS)
    p.add_argument("--busy", nargs="+", type=int, default=[0, 1, 2], help="busy processes per case")
    p.add_argument("--case", nargs=2, metavar=("GEOMETRY", "THREADS"), help="internal: time one case here")
    args = parse(p, argv, busy=[0, 1])
    if args.case:
        return one_case(args.case[0], args.case[1], args.warmup, args.iters)
    if args.device != "cpu":
        print("bench_threads measures CPU threads; nothing to do on", args.device)
        return
    geo, rows = ("tiny" if args.quick else "demo3"), []
    for n_busy in args.busy:
        procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(n_busy)]
        try:
            for threads in ("default", "1"):
                cmd = [sys.executable, __file__, "--case", geo, threads, "--warmup", str(args.warmup)]
                out = subprocess.run(cmd + ["--iters", str(3 * args.iters)], capture_output=True, text=True, check=True)
                n, ms = out.stdout.split()[-2:]
                rows.append({"model": geo, "batch": 8 if args.quick else 128, "busy_processes": n_busy,
                             "threads": f"{n} ({threads})", "step_ms": float(ms)})  # fmt: skip
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    table(rows, COLUMNS)
    save("threads", args, {"rows": rows})


if __name__ == "__main__":
    main()
