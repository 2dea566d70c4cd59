"""CIFAR-100 through torchvision (its on-disk `cifar-100-python/` layout), fine labels and names."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from headsteer.config import DataConfig
from headsteer.core.errors import HeadsteerError
from headsteer.data.base import ImageDataset, ImageSplit

DEFAULT_ROOT = "data/cifar100"
MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def _reader():
    from torchvision.datasets import CIFAR100

    class Reader(CIFAR100):
        """torchvision's CIFAR-100 reader, with integrity = all files present.

        torchvision checks MD5 sums of the full files, which rejects the small folders in the same
        format that the tests write; a truncated or corrupt file still fails when it is unpickled,
        and the loader below turns that into a clear error.
        """

        def _check_integrity(self) -> bool:
            folder = os.path.join(self.root, self.base_folder)
            return all(os.path.isfile(os.path.join(folder, name)) for name, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            path = os.path.join(self.root, self.base_folder, self.meta["filename"])
            if not os.path.isfile(path):
                raise RuntimeError(f"metadata file {path} not found")
            with open(path, "rb") as f:
                data = pickle.load(f, encoding="latin1")
            self.classes = data[self.meta["key"]]
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    return Reader


def fingerprint(cfg: DataConfig) -> list:
    """[file, size, mtime (ns)] of the files the loader reads (train, test, meta): changes when they do."""
    folder = Path(cfg.root or DEFAULT_ROOT) / "cifar-100-python"
    files = [folder / name for name in ("train", "test", "meta")]
    if not all(f.is_file() for f in files):
        raise HeadsteerError(f"CIFAR-100 files not found in {folder}")
    return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def load_cifar100(root: str | None = None, download: bool = False) -> ImageDataset:
    CIFAR100 = _reader()
    folder = Path(root or DEFAULT_ROOT)
    fix = (
        f"put torchvision's `cifar-100-python/` folder (train, test, meta) under {folder}, "
        "or set data.download=true on a machine with network access"
    )
    splits = {}
    classes: list[str] = []
    for split, train in (("train", True), ("test", False)):
        try:
            ds = CIFAR100(str(folder), train=train, download=download)
        except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted."
            raise HeadsteerError(f"CIFAR-100 not found or corrupted in {folder} ({exc}); {fix}") from None
        except OSError as exc:  # download attempted without network
            raise HeadsteerError(f"CIFAR-100 could not be downloaded to {folder} ({exc}); {fix}") from None
        except Exception as exc:  # unpickling a truncated file raises several types
            raise HeadsteerError(
                f"CIFAR-100 files in {folder} are unreadable ({type(exc).__name__}: {exc}); {fix}"
            ) from None
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
        labels = torch.tensor(ds.targets, dtype=torch.int64)
        if images.shape[1:] != (3, 32, 32) or images.shape[0] != labels.shape[0]:
            raise HeadsteerError(f"CIFAR-100 {split} data in {folder} has shape {tuple(images.shape)}; {fix}")
        splits[split] = ImageSplit(images, labels)
        classes = list(ds.classes)
    if len(classes) != 100:
        raise HeadsteerError(f"CIFAR-100 meta file in {folder} lists {len(classes)} classes, expected 100; {fix}")
    return ImageDataset("cifar100", classes, splits["train"], splits["test"], MEAN, STD)
