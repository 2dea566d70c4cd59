"""`Run.sweep` on a finished run's test split: seconds for every grid point of one strategy, the first call
(which builds the layer's cached tail: one forward over the test split) and later ones, against
`Run.steer` (a full forward per point); also `load_run` itself (it checks every artifact's digest).

Usage: python bench/bench_api_sweep.py [--run runs/demo] [--device cpu] [--threads N] [--quick]
(needs a finished run: `make demo` makes runs/demo; --quick times one call of each on the given run.)
Wall seconds depend on what else runs on the machine: the CPU seconds of this process (all its threads)
and the load average at the end are printed beside them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

import headsteer
from harness import parse, parser, save, table

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ["call", "strategy", "points", "seconds", "cpu_s", "ms_per_point"]
STRATEGIES = ("per_class", "global", "random", "per_class_specific")


def timed(fn) -> tuple[tuple[float, float], object]:
    """((wall seconds, CPU seconds of this process, every thread), fn())."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - t0, time.process_time() - c0), out


def row(call: str, strategy: str, points: int, seconds: tuple[float, float]) -> dict:
    wall, cpu = seconds
    return {"call": call, "strategy": strategy, "points": points, "seconds": round(wall, 3)} | {
        "cpu_s": round(cpu, 3),
        "ms_per_point": round(1000 * wall / points, 2),
    }


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, RESULTS)
    p.add_argument("--run", type=Path, default=Path("runs/demo"), help="a finished run folder (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = parse(p, argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seconds, run = timed(lambda: headsteer.load_run(args.run, device=args.device))
    rows = [row("load_run", "-", 1, seconds)]
    strategies = STRATEGIES[:1] if args.quick else STRATEGIES
    for call in ("first", "again"):  # first: each strategy's first sweep (the first one also builds the tail)
        for strategy in strategies:
            seconds, out = timed(lambda s=strategy: run.sweep(s, frame=False))
            rows.append(row(f"sweep ({call})", strategy, len(out), seconds))
    test = run.data.test
    seconds, _ = timed(lambda: run.steer(test.images, strategy="per_class", labels=test.labels, alpha=1.5))
    rows.append(row("steer (full forward)", "per_class", 1, seconds))
    load = os.getloadavg()[0]
    print(
        f"run {args.run}: {len(test)} test images, layer {run.layer}, device {run.device}, "
        f"{torch.get_num_threads()} thread(s), load average {load:.1f}"
    )
    table(rows, COLUMNS)
    info = {"run": str(args.run), "test_images": len(test), "threads": torch.get_num_threads(), "load_average": load}
    save("api_sweep", args, {**info, "rows": rows}, full={"threads": None})


if __name__ == "__main__":
    main()
