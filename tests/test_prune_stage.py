import json
import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

import headsteer.prune.train as prune_train
from conftest import ROOT, make_cifar100
from headsteer.cli import main
from headsteer.config.loader import load_config
from headsteer.stages import run_stage


def test_prune_stage_writes_metrics_and_learns(smoke_cfg):
    cfg = smoke_cfg("prune.dense_epochs=4", "prune.joint_epochs=2", "prune.max_steps_per_epoch=null")
    assert run_stage(cfg, "prune")
    folder = cfg.out + "/prune"
    m = json.load(open(folder + "/metrics.json"))
    assert m["classes"][0] == "T-shirt/top" and m["num_heads"] == 6 and m["num_layers"] == 2
    assert m["dense"]["accuracy"] > 0.5  # planted bands are easy; chance is 0.1
    p = m["pruned"]
    assert len(p["head_usage_per_layer"]) == 2 and len(p["keep_rate_per_head"][0]) == 6
    assert len(p["per_class_accuracy"]) == 10 and len(p["per_class_usage"]) == 10
    assert 0.0 <= p["head_usage"] <= 1.0
    assert [h["phase"] for h in m["history"]] == ["dense"] * 4 + ["joint"] * 2
    cfg_json = json.load(open(folder + "/config.json"))
    assert cfg_json["config"]["prune"]["dense_epochs"] == 4 and "git_sha" in cfg_json
    weights = load_file(folder + "/model.safetensors")
    assert any(k.startswith("decisions.") for k in weights) and "vit.head.weight" in weights
    # finished with the same config: skipped
    assert not run_stage(cfg, "prune")


def test_usage_moves_to_target(smoke_cfg):
    cfg = smoke_cfg(
        "prune.dense_epochs=1", "prune.joint_epochs=12", "prune.target_usage=0.5", "prune.decision_lr_scale=30"
    )
    run_stage(cfg, "prune")
    m = json.load(open(cfg.out + "/prune/metrics.json"))
    assert abs(m["pruned"]["head_usage"] - 0.5) < 0.2, m["pruned"]["head_usage_per_layer"]


def test_killed_run_resumes_to_identical_weights(smoke_cfg, monkeypatch, tmp_path):
    over = ("prune.dense_epochs=2", "prune.joint_epochs=2")
    straight = smoke_cfg(*over, f"out={tmp_path / 'straight'}")
    run_stage(straight, "prune")

    killed = smoke_cfg(*over, f"out={tmp_path / 'killed'}")
    calls = {"n": 0}
    real = prune_train.train_epoch

    def dies_in_third_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # first joint epoch, after both dense epochs were checkpointed
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(prune_train, "train_epoch", dies_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_stage(killed, "prune")
    assert not (tmp_path / "killed/prune/done.json").exists()
    monkeypatch.setattr(prune_train, "train_epoch", real)
    run_stage(killed, "prune")
    a = load_file(str(tmp_path / "straight/prune/model.safetensors"))
    b = load_file(str(tmp_path / "killed/prune/model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_changed_config_is_refused_without_force(smoke_cfg, capsys):
    cfg = smoke_cfg("prune.dense_epochs=1", "prune.joint_epochs=0")
    run_stage(cfg, "prune")
    before = cfg.out + "/prune/model.safetensors"
    rc = main(
        [
            "prune",
            str(ROOT / "configs/smoke.yaml"),
            f"data.root={cfg.data.root}",
            f"out={cfg.out}",
            "prune.dense_epochs=2",
            "prune.joint_epochs=0",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "was made by a different config (prune.dense_epochs: 1 -> 2)" in err and "--force" in err
    assert json.load(open(cfg.out + "/prune/config.json"))["config"]["prune"]["dense_epochs"] == 1
    assert load_file(before)  # earlier artifact intact


def test_cifar100_vit_small_path_one_step(tmp_path):
    """The paper's config on a tiny CIFAR-100 folder, random init (no hub here), one step per phase."""
    make_cifar100(tmp_path / "data", n_train=4, n_test=2)  # tiny as made: a limit must keep every class
    cfg = load_config(
        ROOT / "configs/cifar100_vit_small.yaml",
        [
            f"data.root={tmp_path / 'data'}",
            "data.download=false",
            f"out={tmp_path / 'run'}",
            "model.pretrained=false",
            "prune.batch_size=2",
            "prune.eval_batch_size=2",
            "prune.dense_epochs=1",
            "prune.joint_epochs=1",
            "prune.max_steps_per_epoch=1",
            "device=cpu",
        ],
    )
    run_stage(cfg, "prune")
    m = json.load(open(tmp_path / "run/prune/metrics.json"))
    assert m["dataset"] == "cifar100" and m["classes"][0] == "apple"
    assert (m["num_layers"], m["num_heads"], m["embed_dim"]) == (12, 6, 384)
    assert len(m["pruned"]["keep_rate_per_head"]) == 12


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "headsteer", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_cli_errors_are_one_line_without_traceback(tmp_path, fashion_dir):
    smoke = str(ROOT / "configs/smoke.yaml")
    cases = [
        ((smoke, "prune.epochs=3"), "unknown config key 'prune.epochs'; valid keys in 'prune': dense_epochs"),
        ((smoke, "prune.batch_size=abc"), "'prune.batch_size' = 'abc' has the wrong type; expected int"),
        (
            (smoke, f"data.root={tmp_path / 'absent'}"),
            "does not exist; install it with `apt-get install dataset-fashion-mnist`",
        ),
    ]
    for args, message in cases:
        r = _cli("prune", *args, f"out={tmp_path / 'r'}")
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("headsteer: error: ") and message in lines[0], r.stderr


def test_cli_error_for_mismatched_pretrained_file(tmp_path, fashion_dir, capsys):
    other = timm.create_model(
        "vit_tiny_patch16_224",
        num_classes=10,
        in_chans=1,
        img_size=28,
        patch_size=7,
        embed_dim=96,
        depth=2,
        num_heads=6,
    )
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    rc = main(
        [
            "prune",
            str(ROOT / "configs/smoke.yaml"),
            f"data.root={fashion_dir}",
            f"out={tmp_path / 'r'}",
            f"model.pretrained_file={path}",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "does not match architecture vit_tiny_patch16_224" in err and "Traceback" not in err


def test_resume_inside_an_epoch_is_exact(smoke_cfg, monkeypatch, tmp_path):
    """Interrupt right after a mid-epoch checkpoint; the resumed run continues at that batch."""
    over = ("prune.dense_epochs=1", "prune.joint_epochs=2", "prune.checkpoint_every=4")
    straight = smoke_cfg(*over, f"out={tmp_path / 'straight'}")
    run_stage(straight, "prune")
    killed = smoke_cfg(*over, f"out={tmp_path / 'killed'}")
    real_save = prune_train.save_checkpoint
    saves = {"n": 0}

    def dies_after_mid_epoch_save(path, model, optimizer, state, extra=None):
        real_save(path, model, optimizer, state, extra)
        if state.get("cursor"):
            saves["n"] += 1
            if saves["n"] == 3:  # dense saved at batches 4 and 8; this is joint epoch 1, batch 4 of 10
                raise KeyboardInterrupt

    monkeypatch.setattr(prune_train, "save_checkpoint", dies_after_mid_epoch_save)
    with pytest.raises(KeyboardInterrupt):
        run_stage(killed, "prune")
    monkeypatch.setattr(prune_train, "save_checkpoint", real_save)
    from headsteer.artifacts.io import checkpoint_state

    cursor = checkpoint_state(tmp_path / "killed/prune/checkpoint.safetensors")["cursor"]
    assert cursor["batch"] == 4
    run_stage(killed, "prune")
    a = load_file(str(tmp_path / "straight/prune/model.safetensors"))
    b = load_file(str(tmp_path / "killed/prune/model.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ha = json.load(open(tmp_path / "straight/prune/metrics.json"))["history"]
    hb = json.load(open(tmp_path / "killed/prune/metrics.json"))["history"]
    assert [h["train"] for h in ha] == [h["train"] for h in hb]  # epoch statistics survive the interruption
