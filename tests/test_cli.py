"""The command line a newcomer meets: --version, `headsteer config`, help texts; paths made absolute."""

import dataclasses
import json
from pathlib import Path

import pytest

import headsteer
from conftest import ROOT, one_line_error
from headsteer.cli import main
from headsteer.config import ExtractConfig, RunConfig
from headsteer.config.docs import config_yaml, field_docs, reference_markdown
from headsteer.config.loader import load_config
from headsteer.model.build import model_name

DEMO = str(ROOT / "configs" / "demo.yaml")


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"headsteer {headsteer.__version__}\n"


def test_config_prints_every_key_and_loads_back(capsys, tmp_path):
    assert main(["config", DEMO, "sae.k=16", "data.root=rel/data"]) == 0
    text = capsys.readouterr().out
    (tmp_path / "printed.yaml").write_text(text)
    expected = load_config(DEMO, ["sae.k=16", "data.root=rel/data"])
    assert load_config(tmp_path / "printed.yaml") == expected
    assert "threshold_levels: 41" in text and "#" not in text  # a default the demo config does not set
    sections = [getattr(expected, f.name) for f in dataclasses.fields(RunConfig)]
    leaves = sum(len(dataclasses.fields(s)) for s in sections if dataclasses.is_dataclass(s))
    assert len(text.splitlines()) == leaves + len(sections)  # one line per key and per section header


def test_config_keys_puts_each_docstring_above_its_key(capsys):
    assert main(["config", DEMO, "--keys"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("  layer: 1")
    above = []
    while lines[at - 1 - len(above)].startswith("  # "):
        above.insert(0, lines[at - 1 - len(above)][4:])
    assert " ".join(above) == field_docs(ExtractConfig)["layer"]
    assert above[0].startswith("Headline layer: block whose residual-input CLS")
    comments = [ln for ln in lines if ln.lstrip().startswith("#")]
    assert len(comments) > 2 * len([ln for ln in lines if not ln.lstrip().startswith("#")]) // 3


def test_every_config_field_has_a_docstring_and_a_reference_row():
    table = reference_markdown()
    for section in dataclasses.fields(RunConfig):
        cls = type(getattr(RunConfig(), section.name))
        if not dataclasses.is_dataclass(cls):
            assert section.name in field_docs(RunConfig) and f"| `{section.name}` |" in table
            continue
        for f in dataclasses.fields(cls):
            assert field_docs(cls).get(f.name), f"{section.name}.{f.name} has no docstring"
            assert f"| `{section.name}.{f.name}` |" in table
    assert "| `steer.mode` | one of 'pre_topk', 'post_topk', 'additive' | `pre_topk` | Reading of Eq. 5" in table
    assert "| `data.in_memory` | bool or one of 'auto' | `auto` |" in table


def test_bad_override_in_config_is_one_line(capsys):
    line = one_line_error(capsys, ["config", DEMO, "sae.kk=3"])
    assert line.startswith("headsteer: error: unknown config key 'sae.kk'")


@pytest.mark.parametrize("command", ["run", "prune", "steer", "config"])
def test_help_shows_override_syntax_examples_and_path_base(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "key.sub=value" in text and f"headsteer {command} demo" in text
    assert "relative to the current directory" in text


def test_relative_paths_become_absolute_at_load_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["data.root=data/x", "model.pretrained_file=~/w.safetensors"])
    assert cfg.data.root == str(tmp_path / "data" / "x")
    assert cfg.model.pretrained_file == str(Path("~/w.safetensors").expanduser())
    assert load_config(None).data.root is None  # the dataset's default location stays the default


def test_commented_defaults_load_back(tmp_path):
    path = tmp_path / "defaults.yaml"
    path.write_text(config_yaml(RunConfig(), keys=True))
    assert load_config(path) == RunConfig()


def test_model_name_names_an_overridden_geometry(pipeline):
    demo = load_config(DEMO).model
    assert model_name(demo) == (
        "ViT 3 blocks × 6 heads × 192 dims, patch 7, 28 px (timm vit_tiny_patch16_224 with this geometry)"
    )
    assert model_name(load_config(ROOT / "configs" / "cifar100_vit_small.yaml").model) == "vit_small_patch16_224"
    results = json.loads((Path(pipeline.out) / "report" / "results.json").read_text())
    assert results["model"].startswith("ViT 2 blocks × 6 heads × 48 dims, patch 7, 28 px")


def test_each_stage_help_example_override_is_a_valid_key_of_that_stage():
    from headsteer.cli import STAGE_OVERRIDE

    for stage, override in STAGE_OVERRIDE.items():
        assert override.startswith(f"{stage}.")
        key, value = override.split("=")
        cfg = load_config(ROOT / DEMO, [override])
        assert str(getattr(getattr(cfg, stage), key.split(".")[1])) == value


def test_bare_headsteer_prints_the_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: headsteer") and "init" in out and "aggregate" in out


def test_shipped_configs_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    assert load_config("demo") == load_config(DEMO) == load_config("demo.yaml")
    assert load_config("smoke").data.train_limit == 512
    assert main(["config", "--list"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [r.split()[0] for r in rows] == ["cifar100_vit_small", "demo", "fmnist_vit_small", "smoke"]
    assert rows[3] == "smoke               Tiny and fast (seconds): used by the tests"
    (tmp_path / "smoke").write_text("seed: 3\n")  # a file of that name is the file
    assert load_config("smoke").seed == 3
    line = one_line_error(capsys, ["config"])
    assert line == (
        "headsteer: error: give a config: a YAML file or a shipped config's name (cifar100_vit_small, "
        "demo, fmnist_vit_small, smoke)"
    )


def test_init_writes_a_shipped_config_and_never_overwrites(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "smoke"]) == 0
    assert capsys.readouterr().out == "wrote smoke.yaml; edit it, then run `headsteer run smoke.yaml`\n"
    assert (tmp_path / "smoke.yaml").read_text() == (ROOT / "configs" / "smoke.yaml").read_text()
    (tmp_path / "smoke.yaml").write_text("seed: 7\n")  # the user's edit
    line = one_line_error(capsys, ["init", "smoke"])
    assert line == (
        "headsteer: error: smoke.yaml already exists; headsteer never overwrites it: edit it, or give another "
        "folder (`headsteer init smoke DIR`)"
    )
    assert (tmp_path / "smoke.yaml").read_text() == "seed: 7\n"
    assert main(["init", "demo", "sub/dir"]) == 0 and load_config("sub/dir/demo.yaml") == load_config(DEMO)
    assert not [p for p in (tmp_path / "sub" / "dir").iterdir() if p.name != "demo.yaml"]  # no temp file left
    line = one_line_error(capsys, ["init", "nope"])
    assert line.endswith(
        "no shipped config named 'nope'; choose one of cifar100_vit_small, demo, fmnist_vit_small, smoke"
    )
