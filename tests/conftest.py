"""Fixtures: tiny datasets written in the real on-disk formats, and small configs pointing at them."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from headsteer.config.loader import load_config

ROOT = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    """Write a uint8 array as an idx file (magic 0x00000803 / 0x00000801), gzipped like the Debian package."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_fashion(folder: Path, n_train: int = 320, n_test: int = 160, seed: int = 0) -> Path:
    """Fashion-MNIST-like idx files whose classes are learnable: class c lights up row band c."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 230
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


def make_cifar100(root: Path, n_train: int = 40, n_test: int = 20, seed: int = 0) -> Path:
    """A folder in torchvision's `cifar-100-python/` layout (pickled dicts, as torchvision reads them)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        entry = {
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "fine_labels": rng.integers(0, 100, size=n).tolist(),
            "coarse_labels": rng.integers(0, 20, size=n).tolist(),
        }
        with open(folder / split, "wb") as f:
            pickle.dump(entry, f)
    names = [f"class_{i:02d}" for i in range(100)]
    names[0], names[1] = "apple", "aquarium_fish"
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": names, "coarse_label_names": [f"super_{i}" for i in range(20)]}, f)
    return root


def dead_pid() -> int:
    """The pid of a process that has just exited (a killed writer's, for temp-file names)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def one_line_error(capsys, argv) -> str:
    """Run the CLI on argv; assert exit status 2 and a single `headsteer: error: ...` line; return it."""
    from headsteer.cli import main

    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("headsteer: error: "), err
    return lines[0]


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory) -> Path:
    return make_fashion(tmp_path_factory.mktemp("fashion"))


@pytest.fixture()
def smoke_cfg(fashion_dir, tmp_path):
    """The shipped smoke config on the tiny test-written data, writing into a temp run folder."""

    def make(*overrides: str):
        return load_config(
            ROOT / "configs" / "smoke.yaml", [f"data.root={fashion_dir}", f"out={tmp_path / 'run'}", *overrides]
        )

    return make


PIPELINE_OVERRIDES = ("prune.dense_epochs=2", "prune.joint_epochs=2", "model.decision_init_bias=0.0")
"""The `pipeline` run's overrides of configs/smoke.yaml (besides data.root and out)."""


@pytest.fixture(scope="session")
def pipeline(fashion_dir, tmp_path_factory):
    """Every stage once on the tiny data (shared by the stage tests). Decision logits start at 0, so that
    the short training ends with heads pruned (about 0.7 kept) and steering has masks to change."""
    from headsteer.stages import run_stage

    out = tmp_path_factory.mktemp("pipe")
    cfg = load_config(ROOT / "configs/smoke.yaml", [f"data.root={fashion_dir}", f"out={out}", *PIPELINE_OVERRIDES])
    for stage in ("prune", "extract", "sae", "steer", "report"):
        run_stage(cfg, stage)
    return cfg


@pytest.fixture(scope="session")
def run(pipeline):
    """`headsteer.load_run` of the `pipeline` run, on the CPU (the API tests share it, and its sweep tails)."""
    import headsteer

    return headsteer.load_run(pipeline.out, device="cpu")


@pytest.fixture(scope="session")
def test_split(run):
    """The `pipeline` run's test images and labels."""
    return run.data.test


@pytest.fixture(scope="session")
def docs_site(tmp_path_factory) -> Path:
    """The documentation site, built once with `mkdocs build --strict` (the docs and the browser tests)."""
    import os
    import subprocess
    import sys

    site = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return site
