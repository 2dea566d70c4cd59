import gzip

import numpy as np
import pytest
import torch

from conftest import make_cifar100, make_fashion, write_idx
from headsteer.config import DataConfig
from headsteer.core.errors import HeadsteerError
from headsteer.data import BatchTransform, load_dataset
from headsteer.data.fashion_mnist import CLASSES


def test_fashion_mnist_reads_idx_files(fashion_dir):
    ds = load_dataset(DataConfig(root=str(fashion_dir)))
    assert ds.train.images.shape == (320, 1, 28, 28) and ds.train.images.dtype == torch.uint8
    assert ds.test.labels.shape == (160,) and ds.test.labels.dtype == torch.int64
    assert ds.classes == CLASSES and ds.classes[9] == "Ankle boot"
    # the planted band of class c is at rows 2+2c..3+2c
    i = 0
    c = int(ds.train.labels[i])
    assert ds.train.images[i, 0, 2 + 2 * c, 4].item() == 230


def test_fashion_mnist_uncompressed_and_limits(tmp_path):
    rng = np.random.default_rng(1)
    for split, n in (("train", 30), ("t10k", 10)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)), compress=False)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", np.arange(n) % 10, compress=False)
    ds = load_dataset(DataConfig(root=str(tmp_path), train_limit=20))
    assert len(ds.train) == 20 and len(ds.test) == 10
    assert torch.bincount(ds.train.labels).tolist() == [2] * 10  # 20 of 3 per class: 2 each


def test_fashion_mnist_missing_file(tmp_path):
    make_fashion(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        HeadsteerError, match=r"t10k-labels-idx1-ubyte\(.gz\) not found.*apt-get install dataset-fashion-mnist"
    ):
        load_dataset(DataConfig(root=str(tmp_path)))


def test_fashion_mnist_truncated_file(tmp_path):
    make_fashion(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.open(path).read()
    with gzip.open(path, "wb") as f:
        f.write(raw[: len(raw) // 2])
    with pytest.raises(HeadsteerError, match=r"train-images-idx3-ubyte.gz is truncated or corrupt"):
        load_dataset(DataConfig(root=str(tmp_path)))


def test_fashion_mnist_wrong_format(tmp_path):
    make_fashion(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not a gzip file at all")
    with pytest.raises(HeadsteerError, match=r"train-labels-idx1-ubyte.gz is unreadable or truncated"):
        load_dataset(DataConfig(root=str(tmp_path)))


def test_fashion_mnist_missing_folder(tmp_path):
    with pytest.raises(HeadsteerError, match="does not exist"):
        load_dataset(DataConfig(root=str(tmp_path / "absent")))


def test_cifar100_torchvision_layout(tmp_path):
    make_cifar100(tmp_path)
    ds = load_dataset(DataConfig(name="cifar100", root=str(tmp_path)))
    assert ds.train.images.shape == (40, 3, 32, 32) and ds.test.images.shape == (20, 3, 32, 32)
    assert len(ds.classes) == 100 and ds.classes[:2] == ["apple", "aquarium_fish"]
    assert int(ds.train.labels.max()) < 100


def test_cifar100_missing_gives_fix(tmp_path):
    with pytest.raises(HeadsteerError, match=r"CIFAR-100 not found or corrupted.*cifar-100-python"):
        load_dataset(DataConfig(name="cifar100", root=str(tmp_path)))


def test_cifar100_truncated_file(tmp_path):
    make_cifar100(tmp_path)
    path = tmp_path / "cifar-100-python" / "train"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(HeadsteerError, match="CIFAR-100 files in .* are unreadable"):
        load_dataset(DataConfig(name="cifar100", root=str(tmp_path)))


def test_transform_normalises_resizes_and_augments_deterministically():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    tf = BatchTransform(64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    out = tf(images)
    assert out.shape == (4, 3, 64, 64)
    plain = BatchTransform(32, (0.5,) * 3, (0.25,) * 3)(images)
    torch.testing.assert_close(plain, (images.float() / 255 - 0.5) / 0.25)
    aug = BatchTransform(32, (0.5,) * 3, (0.25,) * 3, augment=True)
    a = aug(images, torch.Generator().manual_seed(3))
    b = aug(images, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, plain)
