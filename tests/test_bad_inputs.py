"""Every error a user can cause: one line naming the problem and the fix, exit 2, nothing lost."""

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import headsteer.artifacts.atomic as atomic
import headsteer.prune.epoch as epoch_mod
from conftest import PIPELINE_OVERRIDES, ROOT, dead_pid, one_line_error
from headsteer.artifacts.integrity import artifacts
from headsteer.artifacts.io import (
    checkpoint_state,
    load_checkpoint,
    read_json,
    save_checkpoint,
    write_json,
    write_tensors,
)
from headsteer.cli import main
from headsteer.core.errors import HeadsteerError
from headsteer.stages import run_stage

SMOKE = str(ROOT / "configs/smoke.yaml")


@pytest.mark.parametrize(
    "override, message",
    [
        ("prune.target_usage=1.2", "prune.target_usage=1.2 is outside (0, 1]"),
        ("steer.alpha_step=0", "steer alpha grid is empty"),
        ("steer.alpha_min=2", "steer alpha grid is empty"),
        ("model.pruned_layers=[5]", "model.pruned_layers entry=5 does not exist"),
        ("extract.layer=9", "extract.layer=9 does not exist"),
        ("device=tpu", "device='tpu' is not a torch device"),
    ],
)
def test_out_of_range_values(capsys, tmp_path, fashion_dir, override, message):
    stage = "extract" if override.startswith("extract") else "prune"
    if stage == "extract":  # needs a trained model first
        assert (
            main(
                [
                    "prune",
                    SMOKE,
                    f"data.root={fashion_dir}",
                    f"out={tmp_path}",
                    "prune.dense_epochs=0",
                    "prune.joint_epochs=0",
                ]
            )
            == 0
        )
        capsys.readouterr()
    line = one_line_error(
        capsys,
        [
            stage,
            SMOKE,
            f"data.root={fashion_dir}",
            f"out={tmp_path}",
            override,
            "prune.dense_epochs=0",
            "prune.joint_epochs=0",
        ],
    )
    assert message in line


def test_k_larger_than_derived_width_is_refused(pipeline, tmp_path, capsys):
    for stage in ("prune", "extract"):
        shutil.copytree(Path(pipeline.out) / stage, tmp_path / stage)
    line = one_line_error(
        capsys,
        [
            "sae",
            SMOKE,
            f"data.root={pipeline.data.root}",
            f"out={tmp_path}",
            *PIPELINE_OVERRIDES,
            "sae.k=500",
        ],
    )
    assert "sae.k=500 must be in 1..d_sae=192 (d_in 48); lower sae.k or raise sae.expansion" in line


def test_checkpoint_of_another_model_is_refused(tmp_path):
    from headsteer.config import ModelConfig
    from headsteer.model import build_model

    small = build_model(ModelConfig(img_size=28, patch_size=7, embed_dim=48, depth=2, num_heads=6), 10, 1)
    other = build_model(ModelConfig(img_size=28, patch_size=7, embed_dim=96, depth=2, num_heads=6), 10, 1)
    save_checkpoint(tmp_path / "ck.safetensors", small, None, {"epoch": 1})
    with pytest.raises(HeadsteerError, match=r"checkpoint .* does not match the configured model"):
        load_checkpoint(tmp_path / "ck.safetensors", other, None)


def test_nan_loss_stops_keeps_last_good_checkpoint_and_resumes(smoke_cfg, monkeypatch):
    cfg = smoke_cfg("prune.dense_epochs=2", "prune.joint_epochs=1")
    real = epoch_mod.F.cross_entropy
    calls = {"n": 0}

    def nan_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 13 else loss

    monkeypatch.setattr(epoch_mod.F, "cross_entropy", nan_in_second_epoch)
    with pytest.raises(
        HeadsteerError,
        match=r"training diverged: loss became nan at step 12 \(dense 2/2\); the last good checkpoint is kept\. "
        r"Lower prune\.dense_lr \(now 0\.003\) and run again with --force",
    ):
        run_stage(cfg, "prune")
    ckpt = Path(cfg.out) / "prune" / "checkpoint.safetensors"
    assert checkpoint_state(ckpt)["epoch"] == 1  # end of the first epoch, intact
    monkeypatch.setattr(epoch_mod.F, "cross_entropy", real)
    run_stage(cfg, "prune")
    assert (Path(cfg.out) / "prune" / "done.json").is_file()


def test_disk_full_leaves_previous_artifact_intact(tmp_path, monkeypatch):
    path = tmp_path / "weights.safetensors"
    write_tensors(path, {"w": torch.ones(3)})

    def full_disk(fd, data):
        os.write(fd, b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_write_all", full_disk)
    with pytest.raises(
        HeadsteerError, match=r"disk full while writing .*weights.safetensors; nothing was half-written"
    ):
        write_tensors(path, {"w": torch.zeros(3)})
    assert torch.equal(load_file(str(path))["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]


def test_sae_of_other_width_is_refused_by_steer(pipeline, tmp_path, capsys):
    from headsteer.sae.topk import TopKSAE, run_folder

    for stage in ("prune", "extract"):
        shutil.copytree(Path(pipeline.out) / stage, tmp_path / stage)
    shutil.copytree(Path(pipeline.out) / "sae", tmp_path / "sae")
    TopKSAE(32, 64, 4).save(run_folder(tmp_path, 1))  # someone else's SAE in the smoke run's layer-1 folder
    done = tmp_path / "sae" / "done.json"  # ... recorded as finished (else the changed files are redone)
    write_json(done, {**read_json(done), "artifacts": artifacts(tmp_path / "sae")})
    line = one_line_error(
        capsys,
        [
            "steer",
            SMOKE,
            f"data.root={pipeline.data.root}",
            f"out={tmp_path}",
            *PIPELINE_OVERRIDES,
        ],
    )
    assert "has d_in=32 but the model's residual width is 48" in line


def test_temp_file_of_a_killed_writer_is_cleaned_up(tmp_path):
    stale = tmp_path / f".weights.safetensors.{dead_pid()}.0123456789ab.tmp"  # its writer was killed
    stale.write_bytes(b"half a file")
    write_tensors(tmp_path / "weights.safetensors", {"w": torch.ones(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.safetensors"]
