"""Many classes: the smoke-sized pipeline on synthetic image folders of C classes and the same number of
images at every C; prints the steer and report stages' time and peak memory and the report's file sizes.

Each C gets a folder of 28 x 28 gray PNGs (class c: a seeded random template plus noise), every class
with at least one training and one test image, then `headsteer run configs/smoke.yaml` on it, one
process for prune + extract + sae and one each for steer and report, so that each stage's peak
resident memory (`os.wait4`) is its own. The ratios are against the first (smallest) C.

Usage: python bench/bench_classes.py [--classes 10 100 1000] [--train 2000] [--test 1000] [--quick]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from harness import parse, parser, save, table

HERE = Path(__file__).resolve().parent
SMOKE = HERE.parent / "configs" / "smoke.yaml"
COLUMNS = ["classes", "train", "test", "steer_s", "report_s", "steer_rss_mb", "report_rss_mb"]
COLUMNS += ["results_json_mb", "report_html_mb", "steer_time_ratio", "report_time_ratio", "rss_ratio"]
STAGES = ("prune", "extract", "sae", "steer", "report")
QUICK = ["prune.dense_epochs=0", "prune.joint_epochs=1", "sae.epochs=1", "steer.bootstrap=50", "steer.random_draws=2"]
QUICK += ["steer.alpha_step=0.5"]
"""A --quick run's overrides: a smoke check of the script, seconds per stage."""


def make_folder(root: Path, classes: int, n_train: int, n_test: int, seed: int = 0) -> Path:
    """root/train/<class>/*.png and root/test/<class>/*.png: image i of a split has class i % classes."""
    if n_test < classes or n_train < classes:
        raise SystemExit(f"{classes} classes need at least {classes} training and test images each")
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(classes, 28, 28)).astype(np.int16)  # (C, 28, 28)
    for split, n in (("train", n_train), ("test", n_test)):
        for c in range(classes):
            (root / split / f"c{c:04d}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            c = i % classes
            noise = rng.integers(-40, 41, size=(28, 28))
            pixels = np.clip(templates[c] + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / split / f"c{c:04d}" / f"{i:06d}.png")
    return root


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(seconds, peak resident MB) of one child process, which must succeed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out.decode()[-3000:]}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024  # ru_maxrss: KiB on Linux


def run_one(work: Path, classes: int, n_train: int, n_test: int, extra: list[str]) -> tuple[dict, dict]:
    """Make the folder, run the pipeline, measure steer and report: the row of the table, and the size (MB)
    of each file of RUN/steer and of RUN/report's JSON and scripts."""
    data = make_folder(work / f"data_{classes}", classes, n_train, n_test)
    out = work / f"run_{classes}"
    args = [str(SMOKE), "data.name=imagefolder", f"data.root={data}", "data.train_limit=null"]
    args += ["data.test_limit=null", f"out={out}", "threads=1", *extra]
    code = "import sys; from headsteer.cli import main\nfor s in sys.argv[1:4]: assert main([s, *sys.argv[4:]]) == 0"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    timed([sys.executable, "-c", code, *STAGES[:3], *args], env)
    steer_s, steer_rss = timed([sys.executable, "-m", "headsteer", "steer", *args], env)
    report_s, report_rss = timed([sys.executable, "-m", "headsteer", "report", *args], env)
    mb = 1 / 2**20
    return {
        "classes": classes,
        "train": n_train,
        "test": n_test,
        "steer_s": round(steer_s, 1),
        "report_s": round(report_s, 1),
        "steer_rss_mb": round(steer_rss),
        "report_rss_mb": round(report_rss),
        "results_json_mb": round((out / "report" / "results.json").stat().st_size * mb, 2),
        "report_html_mb": round((out / "report" / "report.html").stat().st_size * mb, 2),
    }, {
        str(p.relative_to(out)): round(p.stat().st_size * mb, 3)
        for p in sorted((out / "report").glob("*.js*")) + sorted((out / "steer").glob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def with_ratios(rows: list[dict]) -> list[dict]:
    """Each row's steer / report time and peak memory against the first row's."""
    first = rows[0]
    for r in rows:
        r["steer_time_ratio"] = round(r["steer_s"] / first["steer_s"], 2)
        r["report_time_ratio"] = round(r["report_s"] / first["report_s"], 2)
        peak, peak0 = max(r["steer_rss_mb"], r["report_rss_mb"]), max(first["steer_rss_mb"], first["report_rss_mb"])
        r["rss_ratio"] = round(peak / peak0, 2)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, HERE / "results")
    p.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000], help="class counts C")
    p.add_argument("--train", type=int, default=2000, help="training images at every C")
    p.add_argument("--test", type=int, default=1000, help="test images at every C")
    p.add_argument("--work", type=Path, help="keep the data and run folders here (default: a temp folder, removed)")
    args = parse(p, argv, classes=[64], train=64, test=64)  # 64 > figures.MATRIX_CLASSES: the pairs histogram
    extra = QUICK if args.quick else []
    rows, files = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_classes_") as tmp:
        for classes in args.classes:
            row, files[classes] = run_one(args.work or Path(tmp), classes, args.train, args.test, extra)
            rows.append(row)
            print(f"C={classes}: steer {row['steer_s']} s, report {row['report_s']} s", flush=True)
    table(with_ratios(rows), COLUMNS)
    for classes, sizes in files.items():
        print(f"C={classes} files (MB): {sizes}")
    full = {"classes": [10, 100, 1000], "train": 2000, "test": 1000}
    save("classes", args, {"rows": rows, "files_mb": {str(c): f for c, f in files.items()}}, full=full)


if __name__ == "__main__":
    main()
