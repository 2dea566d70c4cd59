"""`data.name: imagefolder`: class folders of images in the formats PIL reads, written by the test."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, one_line_error
from headsteer.config import DataConfig
from headsteer.core.errors import HeadsteerError
from headsteer.data import load_dataset

CLASSES = ["cat", "dog", "zebra"]


def write_folder(root: Path, n_train: int = 12, n_test: int = 6, size: int = 28, seed: int = 0) -> dict:
    """train/<class>/*.png and test/<class>/*.png, class c with a bright row band at 4c; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 60, size=(size, size), dtype=np.uint8)
                a[4 * c : 4 * c + 4, 2:-2] = 230
                Image.fromarray(a).save(root / split / name / f"{i:03d}.png")
                arrays[(split, name, i)] = a
    return arrays


def test_loads_classes_labels_and_pixels(tmp_path):
    arrays = write_folder(tmp_path)
    ds = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path)))
    assert ds.classes == CLASSES and ds.in_chans == 1 and ds.train.images.shape == (36, 1, 28, 28)
    assert ds.train.labels.tolist() == [0] * 12 + [1] * 12 + [2] * 12  # sorted by class, then file name
    assert np.array_equal(ds.train.images[12 + 5, 0].numpy(), arrays[("train", "dog", 5)])  # PNG is lossless
    assert np.array_equal(ds.test.images[2 * 6 + 1, 0].numpy(), arrays[("test", "zebra", 1)])
    x = ds.train.images.float() / 255
    assert ds.mean[0] == pytest.approx(x.mean().item(), abs=1e-6)


def test_val_folder_rgb_jpeg_webp_and_image_size(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "test").rename(tmp_path / "val")
    rgb = np.zeros((40, 30, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "train" / "cat" / "extra.jpg", quality=95)
    Image.fromarray(rgb).save(tmp_path / "train" / "dog" / "extra.webp", lossless=True)
    with pytest.raises(Exception, match=r"different sizes \(28x28, 30x40.*data.image_size=N"):
        load_dataset(DataConfig(name="imagefolder", root=str(tmp_path)))
    ds = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path), image_size=24))
    assert ds.in_chans == 3 and ds.train.images.shape == (38, 3, 24, 24) and ds.test.images.shape == (18, 3, 24, 24)
    webp = ds.train.images[13 + 12]  # cat: 12 png + extra.jpg; dog's files sorted: 000.png ... 011.png, extra.webp
    assert webp[0].float().mean() == pytest.approx(200, abs=1) and webp[1:].max() == 0


def _cli(tmp_path, capsys, root):
    argv = ["prune", str(ROOT / "configs/smoke.yaml"), "data.name=imagefolder", f"data.root={root}"]
    return one_line_error(capsys, argv + [f"out={tmp_path / 'run' / root.name}"])


def test_bad_folders_give_one_line_errors(tmp_path, capsys):
    root = tmp_path / "data"
    write_folder(root, n_train=2, n_test=1)
    (root / "train" / "cat" / "001.png").write_bytes(b"not a png")
    line = _cli(tmp_path, capsys, root)
    assert "cannot read image" in line and "001.png" in line
    (root / "train" / "cat" / "001.png").unlink()
    (root / "test" / "zebra" / "000.png").unlink()  # an empty class folder
    line = _cli(tmp_path, capsys, root)
    assert "zebra" in line and "at least one image" in line
    (root / "test" / "zebra").rmdir()
    line = _cli(tmp_path, capsys, root)
    assert "only in train: ['zebra']; only in test: none" in line
    assert "needs data.root=DIR" in one_line_error(
        capsys, ["prune", str(ROOT / "configs/smoke.yaml"), "data.name=imagefolder", f"out={tmp_path / 'r2'}"]
    )
    solo = tmp_path / "solo"
    write_folder(solo, n_train=1, n_test=1)
    shutil.rmtree(solo / "test")
    assert "has no test/ or val/ folder" in _cli(tmp_path, capsys, solo)


def test_whole_pipeline_on_a_folder_of_pngs(tmp_path):
    from headsteer.cli import main

    write_folder(tmp_path / "data", n_train=40, n_test=12)
    argv = [
        "run",
        str(ROOT / "configs/smoke.yaml"),
        "data.name=imagefolder",
        f"data.root={tmp_path / 'data'}",
        f"out={tmp_path / 'run'}",
        "steer.bootstrap=50",
    ]
    assert main(argv) == 0
    assert (tmp_path / "run" / "report" / "report.html").is_file()


def test_streaming_gives_the_same_batches_as_in_memory(tmp_path):
    from headsteer.data import batch_indices
    from headsteer.data.lazy import AUTO_LIMIT_BYTES, LazyImages, batches_of, keep_in_memory

    write_folder(tmp_path, n_train=20, n_test=5)
    mem = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path), in_memory=True))
    lazy = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path), in_memory=False))
    assert isinstance(lazy.train.images, LazyImages) and isinstance(mem.train.images, torch.Tensor)
    assert lazy.train.images.shape == mem.train.images.shape and lazy.classes == mem.classes
    batches = batch_indices(len(mem.train), 8, shuffle=True, seed=3, epoch=1)
    for workers in (0, 2):
        got = list(batches_of(lazy.train.images, batches, workers=workers))
        assert len(got) == len(batches)
        for idx, images in zip(batches, got, strict=True):
            assert torch.equal(images, mem.train.images[idx])
    assert torch.equal(lazy.test.images[2:9], mem.test.images[2:9])  # extraction reads slices
    assert torch.equal(lazy.test.images[4], mem.test.images[4]) and torch.equal(lazy.train.labels, mem.train.labels)
    assert keep_in_memory("auto", AUTO_LIMIT_BYTES) and not keep_in_memory("auto", AUTO_LIMIT_BYTES + 1)
    assert keep_in_memory(True, 10**12) and not keep_in_memory(False, 1)


def test_prune_on_a_streamed_folder_equals_in_memory(tmp_path):
    """Same seed, same batches, same augmentation: the streamed run's weights equal the in-memory run's."""
    from safetensors.torch import load_file

    from headsteer.config.loader import load_config
    from headsteer.stages import run_stage

    write_folder(tmp_path / "data", n_train=30, n_test=9)
    weights = []
    for mode in ("true", "false"):
        overrides = [f"data.root={tmp_path / 'data'}", f"out={tmp_path / mode}", f"data.in_memory={mode}"]
        cfg = load_config(ROOT / "configs/smoke.yaml", ["data.name=imagefolder", "data.num_workers=2", *overrides])
        run_stage(cfg, "prune")
        weights.append(load_file(str(tmp_path / mode / "prune" / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_lazy_images_index_like_a_tensor_and_stay_lazy(tmp_path):
    from headsteer.data.lazy import LazyImages

    write_folder(tmp_path, n_train=5, n_test=4)
    mem = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path), in_memory=True)).train.images
    lazy = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path), in_memory=False)).train.images
    mask = torch.zeros(len(mem), dtype=torch.bool)
    mask[[1, 7, 14]] = True
    for idx in (
        3,
        -1,
        np.int64(2),
        torch.tensor(4),
        [0, -2],
        torch.tensor([5, 1]),
        mask,
        slice(2, 12, 3),
        slice(None, -13),
    ):
        assert torch.equal(lazy[idx], mem[idx]), idx
    cut = dict(name="imagefolder", root=str(tmp_path), train_limit=6)
    head = load_dataset(DataConfig(**cut, in_memory=False)).train
    kept = load_dataset(DataConfig(**cut, in_memory=True)).train
    assert isinstance(head.images, LazyImages) and len(head.images) == 6 and torch.equal(head.images[:], kept.images)
    assert torch.bincount(kept.labels).tolist() == [2, 2, 2]  # 6 of 5 + 5 + 5: each class keeps its share


def test_limits_keep_each_class_share_and_name_a_class_left_empty(tmp_path):
    write_folder(tmp_path, n_train=6, n_test=4)
    for name, keep in (("dog", 3), ("zebra", 1)):  # train: cat 6, dog 3, zebra 1 (10 images)
        for extra in sorted((tmp_path / "train" / name).iterdir())[keep:]:
            extra.unlink()
    cfg = dict(name="imagefolder", root=str(tmp_path))
    full = load_dataset(DataConfig(**cfg))
    ds = load_dataset(DataConfig(**cfg, train_limit=7, test_limit=6))
    # 7 x (6, 3, 1) / 10 = (4.2, 2.1, 0.7): floors (4, 2, 0), the one left over to zebra's remainder 0.7
    assert torch.bincount(ds.train.labels).tolist() == [4, 2, 1]
    assert torch.bincount(ds.test.labels).tolist() == [2, 2, 2]  # 6 of 4 + 4 + 4
    images = full.train.images
    rows = [next(i for i in range(len(images)) if torch.equal(images[i], img)) for img in ds.train.images]
    assert rows == sorted(rows) and rows[-1] == 9  # in the folder's order; zebra's one image kept
    again = load_dataset(DataConfig(**cfg, train_limit=7, test_limit=6))
    assert torch.equal(again.train.images, ds.train.images)  # the same images every time
    # 5 x (6, 3, 1) / 10 = (3, 1.5, 0.5): floors (3, 1, 0), the one left over to dog (the tie goes to the first)
    with pytest.raises(HeadsteerError) as err:
        load_dataset(DataConfig(**cfg, train_limit=5))
    assert str(err.value) == (
        "data.train_limit=5 leaves class 'zebra' (1 of the 10 images) with no image, each class keeping its "
        "share: raise data.train_limit, or set it to null for all images"
    )


def test_a_corrupt_image_found_by_a_worker_is_one_line(tmp_path, capsys):
    write_folder(tmp_path / "data", n_train=6, n_test=2)
    png = tmp_path / "data" / "train" / "dog" / "003.png"
    png.write_bytes(png.read_bytes()[:60])  # the header reads (size, mode); the pixels do not
    argv = ["prune", str(ROOT / "configs/smoke.yaml"), "data.name=imagefolder", f"data.root={tmp_path / 'data'}"]
    line = one_line_error(capsys, argv + ["data.in_memory=false", "data.num_workers=2", f"out={tmp_path / 'run'}"])
    assert "cannot read image" in line and "003.png" in line


def test_every_extension_pil_registers_is_picked_up(tmp_path):
    write_folder(tmp_path, n_train=2, n_test=1)
    Image.fromarray(np.full((28, 28), 99, dtype=np.uint8)).save(tmp_path / "train" / "cat" / "x.gif")
    ds = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path)))
    assert len(ds.train) == 7 and ds.train.images[2, 0].float().mean() == 99  # cat: 000.png, 001.png, x.gif
