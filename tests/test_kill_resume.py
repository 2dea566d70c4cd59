"""SIGKILL a real `headsteer` process mid-run, run it again, and get the uninterrupted result bitwise."""

import os
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

from conftest import ROOT

# checkpoints every 3 steps of 10-step epochs, so the kill lands after a mid-epoch checkpoint
OVERRIDES = ["prune.dense_epochs=3", "prune.joint_epochs=3", "prune.checkpoint_every=3", "sae.epochs=4", "threads=1"]


def _cmd(fashion_dir, out, *stages):
    return [
        sys.executable,
        "-m",
        "headsteer",
        *stages,
        str(ROOT / "configs/smoke.yaml"),
        f"data.root={fashion_dir}",
        f"out={out}",
        *OVERRIDES,
    ]


def test_sigkill_midway_then_resume_equals_uninterrupted(fashion_dir, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    straight = tmp_path / "straight"
    subprocess.run(_cmd(fashion_dir, straight, "run"), check=True, capture_output=True, env=env, timeout=300)

    killed = tmp_path / "killed"
    ckpt = killed / "prune" / "checkpoint.safetensors"
    proc = subprocess.Popen(_cmd(fashion_dir, killed, "run"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    first = ckpt.stat().st_ino  # the atomic writer replaces the file: a new inode per checkpoint
    while ckpt.stat().st_ino == first and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    # now just after the second checkpoint (step 6 of the first 10-step epoch), far from the stage's end
    assert proc.poll() is None, "run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "prune" / "done.json").exists()
    r = subprocess.run(_cmd(fashion_dir, killed, "run"), capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming from" in r.stdout, r.stdout
    for rel in ("prune/model.safetensors", "sae/layer_1/sae/sae_weights.safetensors"):
        a, b = load_file(str(straight / rel)), load_file(str(killed / rel))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (rel, key)
    assert not list(killed.rglob("*.tmp")), "a temporary file was left behind"
