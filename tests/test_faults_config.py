"""Faults in what a user gives headsteer, refused before any stage folder is made: the YAML itself
(duplicate keys, empty, a list), numbers out of range or not finite, settings the dataset ignores,
images too small for a patch, one-class data; and images stored sideways (EXIF orientation)."""

from __future__ import annotations

import typing

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, one_line_error
from headsteer.config import DataConfig, RunConfig
from headsteer.config.checks import RANGES
from headsteer.config.loader import load_config
from headsteer.core.errors import HeadsteerError
from headsteer.data import check_classes, load_dataset
from headsteer.data.base import ImageDataset, ImageSplit

SMOKE = str(ROOT / "configs/smoke.yaml")


def _refused(capsys, tmp_path, argv: list[str]) -> str:
    """The one line of a refused `headsteer run`, which must not have made its run folder."""
    line = one_line_error(capsys, ["run", *argv, f"out={tmp_path / 'run'}"])
    assert not (tmp_path / "run").exists()
    return line.removeprefix("headsteer: error: ")


# --------------------------------------------------------------------------------------------------
# The YAML file


def test_a_duplicate_section_or_key_is_refused_naming_it_and_its_lines(tmp_path, capsys):
    """Item 1: a second `sae:` replaced the first whole (every other key back at its default)."""
    text = (ROOT / "configs/smoke.yaml").read_text()
    lines = text.count("\n")
    dup = tmp_path / "d.yaml"
    dup.write_text(text + "sae:\n  k: 4\n")
    first = text.splitlines().index("sae:") + 1
    assert _refused(capsys, tmp_path, [str(dup)]) == (
        f"config file {dup}: key 'sae' is given twice (lines {first} and {lines + 1}), and only one can hold; "
        "delete one (two sections: merge them into one)"
    )
    dup.write_text("seed: 1\nsae:\n  k: 4\n  epochs: 2\n  k: 8\nseed: 2\n")  # the deeper one comes first
    assert _refused(capsys, tmp_path, [str(dup)]).startswith(
        f"config file {dup}: key 'sae.k' is given twice (lines 3 and 5)"
    )
    dup.write_text("steer:\n  custom_sets:\n    mine: [1]\n    mine: [2]\n")
    assert "key 'steer.custom_sets.mine' is given twice (lines 3 and 4)" in _refused(capsys, tmp_path, [str(dup)])
    line = _refused(capsys, tmp_path, [SMOKE, "steer.custom_sets={a: [1], a: [2]}"])
    assert line.startswith("override 'steer.custom_sets={a: [1], a: [2]}': key 'a' is given twice")


def test_a_yaml_merge_key_may_be_overridden():
    """`<<: *base` then the same key: YAML's own way to override, not a duplicate."""
    from headsteer.config.loader import read_yaml

    assert read_yaml("base: &b\n  k: 1\n  epochs: 3\nsae:\n  <<: *b\n  k: 2\n", "x")["sae"] == {"k": 2, "epochs": 3}


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_an_empty_config_names_the_shipped_ones(tmp_path, capsys, text):
    """Item 5: an empty (or comment-only) file silently started the full default job."""
    path = tmp_path / "e.yaml"
    path.write_text(text)
    assert _refused(capsys, tmp_path, [str(path)]) == (
        f"config file {path} is empty (or holds only comments), which would run every default; start from a "
        "shipped config: cifar100_vit_small, demo, fmnist_vit_small, smoke"
    )


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "a list (['a', 'b'])"), ("42\n", "a number (42)")])
def test_a_config_that_is_not_a_mapping_is_one_line_also_with_out(tmp_path, capsys, text, kind):
    """Item 11: a list or a scalar gave a TypeError traceback once --out was applied to it."""
    path = tmp_path / "l.yaml"
    path.write_text(text)
    line = one_line_error(capsys, ["run", str(path), "--out", str(tmp_path / "run")])
    assert line == (
        f"headsteer: error: config file {path} holds {kind}, not a mapping of sections (data:, model:, ...); "
        "start from a shipped config: cifar100_vit_small, demo, fmnist_vit_small, smoke"
    )


def test_invalid_yaml_is_one_line_with_its_position(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  name: [fashion_mnist\n")
    line = _refused(capsys, tmp_path, [str(path)])
    assert line.startswith(f"config file {path} is not valid YAML: ") and " at line 3, column 1" in line


# --------------------------------------------------------------------------------------------------
# Numbers


@pytest.mark.parametrize(
    "override, message",
    [
        ("steer.batch_size=0", "steer.batch_size=0 must be >= 1"),  # item 8: a traceback after three stages
        ("steer.batch_size=-4", "steer.batch_size=-4 must be >= 1"),
        ("steer.top_n=-1", "steer.top_n=-1 must be >= 1"),  # top_n=-1 reported C-1 classes
        ("sae.k_aux=0", "sae.k_aux=0 must be >= 1 (or null for d_in // 2)"),
        ("sae.dead_window=0", "sae.dead_window=0 must be >= 1"),
        ("prune.checkpoint_every=-1", "prune.checkpoint_every=-1 must be >= 0"),
        ("prune.max_steps_per_epoch=0", "prune.max_steps_per_epoch=0 must be >= 1 (or null for full epochs)"),
        ("model.depth=0", "model.depth=0 must be >= 1 (or null for the architecture's default)"),
        ("prune.label_smoothing=1", "prune.label_smoothing=1.0 must be in [0, 1)"),
        ("steer.min_class_freq=1.5", "steer.min_class_freq=1.5 must be in [0, 1]"),
        ("steer.reach_factor=1", "steer.reach_factor=1.0 must be > 1"),
        ("data.num_workers=-1", "data.num_workers=-1 must be >= 0"),
        ("threads=0", "threads=0 must be >= 1 (or null for torch's default)"),
        # item 9: NaN and infinities reached "refusing to write RUN/prune/config.json ... (a bug)"
        ("steer.study_alphas=[-1, .nan, 1]", "steer.study_alphas[1]=nan is not a finite number; give a number"),
        ("steer.alpha_min=-.inf", "steer.alpha_min=-inf is not a finite number; give a number"),
        ("steer.alpha_max=.inf", "steer.alpha_max=inf is not a finite number; give a number"),
        ("steer.alpha_step=nan", "steer.alpha_step=nan is not a finite number; give a number"),
        ("steer.top_alpha=.nan", "steer.top_alpha=nan is not a finite number; give a number"),
        ("model.decision_init_bias=.inf", "model.decision_init_bias=inf is not a finite number; give a number"),
        ("sae.grad_clip=.inf", "sae.grad_clip=inf is not a finite number; give a number"),
    ],
)
def test_numbers_out_of_range_are_refused_before_any_folder(tmp_path, capsys, override, message):
    assert _refused(capsys, tmp_path, [SMOKE, override]) == message


def _numeric_fields() -> list[tuple[str, str, type]]:
    """(section, field, int or float) of every single number in the config (`seed` aside)."""
    hints = typing.get_type_hints(RunConfig)
    out = []
    for section, cls in {"": RunConfig, **{name: hints[name] for name in RANGES if name}}.items():
        for name, tp in typing.get_type_hints(cls).items():
            if typing.get_origin(tp) not in (None, typing.Union):
                continue  # a list or a mapping
            kinds = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
            if kinds[0] in (int, float) and name != "seed":
                out.append((section, name, kinds[0]))
    return out


def test_every_number_has_a_range_or_its_own_rule():
    """A new int or float setting gets a RANGES entry, or is listed here with the rule that checks it."""
    own_rule = {"prune.target_usage", "steer.alpha_step", "extract.layer"}  # in (0, 1], the grid, the model's depth
    any_value = {"model.decision_init_bias", "steer.alpha_min", "steer.alpha_max", "steer.top_alpha"}
    keys = [(f"{s}.{n}" if s else n, s, n) for s, n, _ in _numeric_fields()]
    assert len(keys) > 50
    assert [k for k, s, n in keys if n not in RANGES[s] and k not in own_rule | any_value] == []


@pytest.mark.parametrize("section, name", [(s, n) for s, n, tp in _numeric_fields() if tp is float])
def test_no_float_setting_takes_nan_or_an_infinity(section, name):
    key = f"{section}.{name}" if section else name
    for bad in ("nan", "inf", "-inf"):
        with pytest.raises(HeadsteerError) as exc:
            load_config(None, [f"{key}={bad}"])
        assert str(exc.value) == f"{key}={float(bad)} is not a finite number; give a number"


# --------------------------------------------------------------------------------------------------
# Settings the dataset cannot honour


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "data.image_size=32",
            "data.image_size=32 does nothing for data.name=fashion_mnist (only for imagefolder and hf); model.img_size "
            "sets the model's input size, to which every image is resized; remove data.image_size",
        ),
        ("data.download=true", "data.download=True does nothing for data.name=fashion_mnist (only for cifar100)"),
        ("data.in_memory=false", "data.in_memory=False does nothing for data.name=fashion_mnist (only for imagefolder"),
        ("data.label_column=y", "data.label_column='y' does nothing for data.name=fashion_mnist (only for hf)"),
    ],
)
def test_data_settings_the_dataset_ignores_are_refused(tmp_path, capsys, override, message):
    """Item 5: data.image_size did nothing for Fashion-MNIST, without a word."""
    assert _refused(capsys, tmp_path, [SMOKE, override]).startswith(message)
    assert load_config(SMOKE, ["data.in_memory=true"]).data.in_memory is True  # what it does anyway


def _folder(root, classes=("a", "b"), size=(28, 28)):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, size[::-1], dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def test_an_image_size_below_one_patch_is_refused(tmp_path, capsys):
    """Item 5: data.image_size=3 was accepted for an image folder (3 x 3 images scaled up to 28 x 28)."""
    data = _folder(tmp_path / "data")
    args = [SMOKE, "data.name=imagefolder", f"data.root={data}", "data.image_size=3"]
    assert _refused(capsys, tmp_path, args) == (
        "data.image_size=3 makes images 3 x 3, smaller than one 7 x 7 patch of the model, so every image would hold "
        "less detail than one token before being scaled up to the model's 28 x 28 input; raise it (at least 7)"
    )
    small = _folder(tmp_path / "small", size=(5, 5))
    line = one_line_error(capsys, ["prune", SMOKE, "data.name=imagefolder", f"data.root={small}", f"out={tmp_path}"])
    assert "the images are 5 x 5, smaller than one 7 x 7 patch" in line
    assert line.endswith("set data.image_size=N to resize them (at least 7)")


def test_one_class_data_is_refused_before_training(tmp_path, capsys):
    """Item 7: a one-class folder crashed in report, after four stages had run."""
    data = _folder(tmp_path / "one", classes=("only",))
    args = ["run", SMOKE, "data.name=imagefolder", f"data.root={data}", f"out={tmp_path / 'run'}"]
    assert one_line_error(capsys, args) == (
        f"headsteer: error: data.root={data} holds one class ('only') and headsteer trains a classifier: add at "
        "least one more class (for an image folder, another class folder in train/ and test/)"
    )
    assert not list((tmp_path / "run").rglob("*.safetensors"))  # nothing trained
    assert load_dataset(DataConfig(name="imagefolder", root=str(data))).classes == ["only"]  # it loads, for a look
    # a training split of one class (an image folder refuses an empty class folder; other sources may not)
    one = ImageSplit(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    two = ImageSplit(one.images, torch.tensor([0, 1, 0, 1]))
    ds = ImageDataset("x", ["a", "b"], one, two, (0.5,), (0.5,))
    with pytest.raises(HeadsteerError) as err:
        check_classes(ds, DataConfig(name="hf", root="some/data"))
    assert str(err.value) == (
        "the training images of data.root=some/data are all of class 'a'; a classifier needs training images of "
        "at least two classes: add some of another class to train/"
    )
    check_classes(ImageDataset("x", ["a", "b"], two, two, (0.5,), (0.5,)), DataConfig(name="hf", root="some/data"))


# --------------------------------------------------------------------------------------------------
# EXIF orientation


@pytest.mark.parametrize("orientation, turn", [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    """Item 5: images stored sideways with an EXIF orientation were read as stored. Orientation 6 is shown
    turned 90 degrees clockwise (np.rot90 k=-1), 8 counter-clockwise, 3 upside down."""
    stored = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10  # (H, W): not square, so a turn shows
    for split in ("train", "test"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            exif = Image.Exif()
            exif[0x0112] = orientation
            Image.fromarray(stored).save(tmp_path / split / c / "x.png", exif=exif)
    ds = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path)))
    assert ds.train.images[0, 0].numpy().tolist() == np.rot90(stored, turn).tolist()
