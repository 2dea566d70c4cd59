"""Datasets with class names: Fashion-MNIST (embedded default), CIFAR-100 (the paper's) and your own
images in class folders (imagefolder)."""

from __future__ import annotations

from headsteer.config import DataConfig
from headsteer.data.base import ImageDataset, ImageSplit, batch_indices, iterate, seeded_subset
from headsteer.data.transforms import BatchTransform

__all__ = ["ImageDataset", "ImageSplit", "BatchTransform", "batch_indices", "iterate", "load_dataset", "seeded_subset"]


def load_dataset(cfg: DataConfig) -> ImageDataset:
    """Load the configured dataset, cut to train_limit / test_limit."""
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
    ds.train = ds.train.head(cfg.train_limit)
    ds.test = ds.test.head(cfg.test_limit)
    return ds
