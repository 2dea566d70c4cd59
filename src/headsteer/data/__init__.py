"""Datasets with class names: Fashion-MNIST (embedded default), CIFAR-100 (the paper's) and your own
images in class folders (imagefolder)."""

from __future__ import annotations

import importlib
import json

from headsteer.config import DataConfig
from headsteer.data.base import ImageDataset, ImageSplit, batch_indices, iterate, seeded_subset
from headsteer.data.transforms import BatchTransform

__all__ = [
    "ImageDataset",
    "ImageSplit",
    "BatchTransform",
    "batch_indices",
    "data_fingerprint",
    "iterate",
    "load_dataset",
    "seeded_subset",
]


def load_dataset(cfg: DataConfig) -> ImageDataset:
    """Load the configured dataset, cut to train_limit / test_limit (each class keeping its share)."""
    if cfg.name == "fashion_mnist":
        from headsteer.data.fashion_mnist import load_fashion_mnist

        ds = load_fashion_mnist(cfg.root)
    elif cfg.name == "hf":
        from headsteer.data.hf import load_hf

        ds = load_hf(cfg)
    elif cfg.name == "imagefolder":
        from headsteer.data.imagefolder import load_imagefolder

        ds = load_imagefolder(cfg)
    else:
        from headsteer.data.cifar100 import load_cifar100

        ds = load_cifar100(cfg.root, cfg.download)
    ds.train = ds.train.limited(cfg.train_limit, ds.classes, "data.train_limit")
    ds.test = ds.test.limited(cfg.test_limit, ds.classes, "data.test_limit")
    return ds


UNAVAILABLE = "unavailable"
"""The fingerprint of data that cannot be read yet (missing, not downloaded): the loader says why."""


def data_fingerprint(cfg: DataConfig) -> str:
    """A hash that changes when the configured data does, without decoding it: an image folder's
    relative paths, sizes and mtimes; a Hugging Face dataset's own fingerprints; the sizes and mtimes of
    the Fashion-MNIST / CIFAR-100 files. UNAVAILABLE when the data cannot be found."""
    from headsteer.errors import HeadsteerError
    from headsteer.io import digest

    try:  # each loader module's `fingerprint(cfg)` lists what it reads
        parts = importlib.import_module(f"headsteer.data.{cfg.name}").fingerprint(cfg)
    except (HeadsteerError, OSError):
        return UNAVAILABLE
    return digest(json.dumps([cfg.name, parts]).encode())
