"""Image datasets as uint8 tensors (or, streamed, `lazy.LazyImages` that index like one), with class
names, and batch iteration.

Both datasets here fit in memory as uint8 (Fashion-MNIST 55 MB, CIFAR-100 184 MB), so batches are
sliced from tensors and augmented on the tensor (see transforms.py): no DataLoader workers to spawn,
and the order is a pure function of (seed, epoch), which makes runs resumable at any step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch


@dataclass
class ImageSplit:
    images: torch.Tensor
    """(N, C, H, W) uint8."""
    labels: torch.Tensor
    """(N,) int64 class indices."""

    def __len__(self) -> int:
        return self.labels.shape[0]

    def head(self, n: int | None) -> "ImageSplit":
        """The first `n` samples (all when n is None)."""
        if n is None or n >= len(self):
            return self
        first = getattr(self.images, "first", None)  # a streamed split stays on disk
        return ImageSplit(first(n) if first else self.images[:n], self.labels[:n])


@dataclass
class ImageDataset:
    name: str
    """Short dataset name, e.g. 'fashion_mnist'."""
    classes: list[str]
    """Class names, indexed by label."""
    train: ImageSplit
    test: ImageSplit
    mean: tuple[float, ...]
    """Per-channel mean of the training images in [0, 1] (for normalisation)."""
    std: tuple[float, ...]
    """Per-channel standard deviation in [0, 1]."""

    @property
    def in_chans(self) -> int:
        return self.train.images.shape[1]

    @property
    def native_size(self) -> int:
        return self.train.images.shape[-1]


def batch_indices(
    n: int, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0, drop_last: bool = False
) -> list[torch.Tensor]:
    """Index batches for one epoch; the permutation depends only on (seed, epoch)."""
    if shuffle:
        g = torch.Generator().manual_seed(seed * 100003 + epoch)
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    batches = list(order.split(batch_size))
    if drop_last and batches and batches[-1].numel() < batch_size and len(batches) > 1:
        batches = batches[:-1]
    return batches


def seeded_subset(n: int, k: int | None, seed: int) -> torch.Tensor | None:
    """Sorted indices of a fixed seeded subset of k of n rows; None (every row) when k is None or >= n."""
    if k is None or k >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].sort().values


def iterate(split: ImageSplit, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Sequential (images uint8, labels) batches over a split."""
    for idx in batch_indices(len(split), batch_size, shuffle=False):
        yield split.images[idx], split.labels[idx]
