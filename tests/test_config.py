from pathlib import Path

import pytest

from conftest import ROOT
from headsteer.config import RunConfig
from headsteer.config.loader import load_config
from headsteer.core.errors import HeadsteerError


def test_shipped_configs_load():
    for name in ("demo", "smoke", "cifar100_vit_small", "fmnist_vit_small"):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        assert isinstance(cfg, RunConfig)
    paper = load_config(ROOT / "configs" / "cifar100_vit_small.yaml")
    assert (paper.model.arch, paper.model.pretrained, paper.data.name) == ("vit_small_patch16_224", True, "cifar100")
    assert paper.prune.target_usage == 0.7


def test_dotted_overrides_parse_yaml_values():
    cfg = load_config(
        ROOT / "configs" / "smoke.yaml",
        ["prune.joint_epochs=5", "model.pruned_layers=[-1]", "prune.joint_lr=1e-4", "data.test_limit=null"],
    )
    assert cfg.prune.joint_epochs == 5
    assert cfg.model.pruned_layers == [-1]
    assert cfg.prune.joint_lr == pytest.approx(1e-4)
    assert cfg.data.test_limit is None


def test_unknown_key_lists_valid_keys():
    with pytest.raises(HeadsteerError, match=r"unknown config key 'prune.epochs'.*dense_epochs.*joint_epochs"):
        load_config(None, ["prune.epochs=3"])


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(HeadsteerError, match=r"'prune.batch_size' = 'big'.*expected int"):
        load_config(None, ["prune.batch_size=big"])
    with pytest.raises(HeadsteerError, match=r"'data.name' = 'mnist'.*one of 'fashion_mnist', 'cifar100'"):
        load_config(None, ["data.name=mnist"])
    with pytest.raises(HeadsteerError, match=r"'model.pretrained' = 3.*expected bool"):
        load_config(None, ["model.pretrained=3"])


def test_out_of_range_values():
    with pytest.raises(HeadsteerError, match=r"target_usage=1.5 is outside \(0, 1\]"):
        load_config(None, ["prune.target_usage=1.5"])
    with pytest.raises(HeadsteerError, match=r"target_usage=0.0"):
        load_config(None, ["prune.target_usage=0"])
    # k against d_sae is checked once, where d_sae is known (it may derive from the model's width)
    from headsteer.sae.topk import TopKSAE

    with pytest.raises(HeadsteerError, match=r"sae.k=100 must be in 1..d_sae=64 \(d_in 8\)"):
        TopKSAE(8, 64, 100)


def test_pretrained_file_is_not_rewritten_into_pretrained():
    cfg = load_config(None, ["model.pretrained_file=/x/w.safetensors"])
    assert cfg.model.pretrained is False and cfg.model.loads_pretrained


def test_missing_config_file(tmp_path, monkeypatch):
    shipped = "give a YAML file or a shipped config's name: cifar100_vit_small, demo, fmnist_vit_small, smoke"
    with pytest.raises(HeadsteerError) as err:
        load_config(tmp_path / "nope.yaml")
    assert str(err.value) == f"config file {tmp_path / 'nope.yaml'} not found; {shipped}"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HeadsteerError) as err:
        load_config("configs/nope.yaml")
    assert str(err.value) == (
        f"config file configs/nope.yaml not found (relative to the current directory, {Path.cwd()}); {shipped}"
    )


def test_negative_seed_and_unknown_enum_values_are_refused_naming_the_allowed_ones():
    with pytest.raises(HeadsteerError) as err:
        load_config(None, ["seed=-1"])
    assert str(err.value) == "seed=-1 must be >= 0"
    assert load_config(None, ["seed=0"]).seed == 0
    with pytest.raises(HeadsteerError) as err:
        load_config(None, ["steer.mode=dense"])
    assert (
        str(err.value)
        == "config key 'steer.mode' = 'dense' is not allowed; use one of 'pre_topk', 'post_topk', 'additive'"
    )
    with pytest.raises(HeadsteerError) as err:
        load_config(None, ["steer.strategies=[per_class, foo]"])
    assert str(err.value) == (
        "config key 'steer.strategies[1]' = 'foo' is not allowed; use one of 'per_class', 'global', 'random', "
        "'per_class_specific'"
    )
