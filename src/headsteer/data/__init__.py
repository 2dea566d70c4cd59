"""Datasets with class names: Fashion-MNIST (embedded default), CIFAR-100 (the paper's) and your own
images in class folders (imagefolder)."""

from __future__ import annotations

import importlib
import json

import torch

from headsteer.config import DataConfig
from headsteer.core.errors import HeadsteerError
from headsteer.data.base import ImageDataset, ImageSplit, batch_indices, iterate, seeded_subset
from headsteer.data.transforms import BatchTransform

__all__ = [
    "ImageDataset",
    "ImageSplit",
    "BatchTransform",
    "batch_indices",
    "check_classes",
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


def check_classes(ds: ImageDataset, cfg: DataConfig) -> None:
    """Refuse data with fewer than two classes, or training images (as data.train_limit cuts them) of one
    class alone, before a model is built on it: there is nothing to tell apart, and no per-class steering
    to compare (such data still loads, for a look at it)."""
    where = f"data.root={cfg.root}" if cfg.root else f"data.name={cfg.name}"
    if len(ds.classes) < 2:
        held = f"one class ({ds.classes[0]!r})" if ds.classes else "no class"
        raise HeadsteerError(
            f"{where} holds {held} and headsteer trains a classifier: add at least one more class (for an image "
            "folder, another class folder in train/ and test/)"
        )
    present = torch.unique(ds.train.labels)
    if present.numel() == 1:
        raise HeadsteerError(
            f"the training images of {where} are all of class {ds.classes[int(present[0])]!r}; a classifier "
            "needs training images of at least two classes: add some of another class to train/"
        )


UNAVAILABLE = "unavailable"
"""The fingerprint of data that cannot be read yet (missing, not downloaded): the loader says why."""


def data_fingerprint(cfg: DataConfig) -> str:
    """A hash that changes when the configured data does, without decoding it: an image folder's
    relative paths, sizes and mtimes; a Hugging Face dataset's own fingerprints; the sizes and mtimes of
    the Fashion-MNIST / CIFAR-100 files. UNAVAILABLE when the data cannot be found."""
    from headsteer.artifacts.io import digest

    try:  # each loader module's `fingerprint(cfg)` lists what it reads
        parts = importlib.import_module(f"headsteer.data.{cfg.name}").fingerprint(cfg)
    except (HeadsteerError, OSError):
        return UNAVAILABLE
    return digest(json.dumps([cfg.name, parts]).encode())
