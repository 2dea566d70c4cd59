"""Run every benchmark in turn, each in its own process; the arguments go to every script.

Usage: python bench/run_all.py [--device cuda] [--quick] [--iters N]

Each full run writes bench/results/<bench>_<cpu|gpu>.json (see `harness.result_name`);
`python bench/run_all.py --quick` smoke-checks every script on the tiny geometry in seconds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "bench_inference.py",
    "bench_skip_methods.py",
    "bench_train_step.py",
    "bench_sweep.py",
    "bench_sae_extract.py",
    "bench_threads.py",
    "bench_sae_train.py",
    "bench_classes.py",
)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _, passed = p.parse_known_args(argv)  # only --help is ours; everything else goes to the scripts
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        rc = subprocess.run([sys.executable, str(HERE / script), *passed], check=False).returncode
        if rc != 0:
            sys.exit(f"{script} failed with exit status {rc}")


if __name__ == "__main__":
    main()
