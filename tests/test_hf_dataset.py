"""`data.name: hf`: a DatasetDict that the test saves with `save_to_disk`, in the real on-disk format."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, one_line_error
from headsteer.config import DataConfig
from headsteer.data import load_dataset

datasets = pytest.importorskip("datasets", reason="the hf extra installs `datasets` (make install-dev)")
NAMES = ["ant", "bee", "cow"]


def save(root, image_column="img", label_column="y", class_label=True, val=False, n=9, seed=0):
    """Splits train and test (or validation) of n gray 20x20 images each; returns the arrays."""
    rng = np.random.default_rng(seed)
    label_feature = datasets.ClassLabel(names=NAMES) if class_label else datasets.Value("int64")
    features = datasets.Features({image_column: datasets.Image(), label_column: label_feature})
    arrays, splits = {}, {}
    for split in ("train", "validation" if val else "test"):
        a = rng.integers(0, 256, size=(n, 20, 20), dtype=np.uint8)
        y = [i % 3 for i in range(n)]
        arrays[split] = (a, y)
        rows = {image_column: [Image.fromarray(x) for x in a], label_column: y}
        splits[split] = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict(splits).save_to_disk(str(root))
    return arrays


def test_loads_pixels_labels_and_class_names(tmp_path):
    arrays = save(tmp_path / "ds")
    ds = load_dataset(DataConfig(name="hf", root=str(tmp_path / "ds"), image_column="img", label_column="y"))
    assert ds.classes == NAMES and ds.in_chans == 1 and ds.train.images.shape == (9, 1, 20, 20)
    assert np.array_equal(ds.train.images[:, 0].numpy(), arrays["train"][0])  # PNG-encoded by datasets: lossless
    assert ds.test.labels.tolist() == arrays["test"][1]


def test_validation_split_plain_int_labels_and_image_size(tmp_path):
    save(tmp_path / "ds", image_column="image", label_column="label", class_label=False, val=True)
    ds = load_dataset(DataConfig(name="hf", root=str(tmp_path / "ds"), image_size=12))
    assert ds.classes == ["0", "1", "2"] and ds.test.images.shape == (9, 1, 12, 12)


def test_bad_hf_input_gets_one_line(tmp_path, capsys):
    save(tmp_path / "ds")
    capsys.readouterr()  # the progress bars of save_to_disk

    def line(*overrides):
        argv = ["prune", str(ROOT / "configs/smoke.yaml"), "data.name=hf", *overrides]
        return one_line_error(capsys, argv + [f"out={tmp_path / 'run' / str(len(overrides))}"])

    got = line(f"data.root={tmp_path / 'ds'}", "data.label_column=y")
    assert "column 'image' is not in the train split" in got and "set data.image_column=NAME" in got
    got = line(f"data.root={tmp_path / 'ds'}", "data.image_column=img", "data.label_column=target")
    assert "column 'target'" in got and "['img', 'y']" in got
    assert "holds no dataset saved with save_to_disk" in line(f"data.root={tmp_path / 'nothing'}")
    assert "needs data.root=DIR" in line()


def test_streamed_hf_dataset_equals_in_memory(tmp_path):
    import torch

    from headsteer.data import batch_indices
    from headsteer.data.lazy import LazyImages, batches_of

    save(tmp_path / "ds", n=12)
    kw = dict(name="hf", root=str(tmp_path / "ds"), image_column="img", label_column="y")
    mem = load_dataset(DataConfig(**kw, in_memory=True))
    lazy = load_dataset(DataConfig(**kw, in_memory=False))
    assert isinstance(lazy.train.images, LazyImages) and lazy.train.images.shape == mem.train.images.shape
    batches = batch_indices(12, 5, shuffle=True, seed=1)
    for images, idx in zip(batches_of(lazy.train.images, batches, workers=2), batches, strict=True):
        assert torch.equal(images, mem.train.images[idx])
    assert torch.equal(lazy.test.images[3:7], mem.test.images[3:7]) and lazy.mean == mem.mean


def test_a_column_that_is_not_images_is_named(tmp_path, capsys):
    datasets.DatasetDict(
        {s: datasets.Dataset.from_dict({"image": ["a", "b"], "label": [0, 1]}) for s in ("train", "test")}
    ).save_to_disk(str(tmp_path / "ds"))
    capsys.readouterr()
    argv = ["prune", str(ROOT / "configs/smoke.yaml"), "data.name=hf", f"data.root={tmp_path / 'ds'}"]
    line = one_line_error(capsys, argv + [f"out={tmp_path / 'run'}"])
    assert "column 'image'" in line and "is Value, not images" in line


def test_fingerprint_follows_the_saved_content(tmp_path):
    from headsteer.data import UNAVAILABLE, data_fingerprint

    cfg = DataConfig(name="hf", root=str(tmp_path / "ds"), image_column="img", label_column="y")
    assert data_fingerprint(cfg) == UNAVAILABLE  # nothing saved there yet
    save(tmp_path / "ds", seed=0)
    first = data_fingerprint(cfg)
    assert first != UNAVAILABLE and data_fingerprint(cfg) == first  # reading does not change it
    save(tmp_path / "ds2", seed=1)  # other pixels, saved elsewhere, then moved over the first
    (tmp_path / "ds").rename(tmp_path / "old")
    (tmp_path / "ds2").rename(tmp_path / "ds")
    assert data_fingerprint(cfg) not in (first, UNAVAILABLE)
