"""Run every benchmark in turn (each writes bench/results/<name>_<cpu|gpu>.json)."""
import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
for script in ("bench_inference.py", "bench_skip_methods.py", "bench_train_step.py", "bench_sweep.py",
               "bench_sae_extract.py"):
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, str(here / script), *sys.argv[1:]], check=True)
