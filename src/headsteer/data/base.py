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

from headsteer.core.errors import HeadsteerError


@dataclass
class ImageSplit:
    images: torch.Tensor
    """(N, C, H, W) uint8."""
    labels: torch.Tensor
    """(N,) int64 class indices."""

    def __len__(self) -> int:
        return self.labels.shape[0]

    def take(self, rows: torch.Tensor) -> "ImageSplit":
        """The samples `rows` (sorted indices), in their order; a streamed split stays on disk."""
        images = self.images[rows] if torch.is_tensor(self.images) else self.images.take(rows.tolist())
        return ImageSplit(images, self.labels[rows])

    def limited(self, n: int | None, classes: list[str], key: str) -> "ImageSplit":
        """`n` samples that keep every class's share (`stratified_rows`; all when n is None or >= the
        split); a class that keeps no image is an error naming it and `key`, the config key of n."""
        if n is None or n >= len(self):
            return self
        rows = stratified_rows(self.labels, n, len(classes))
        counts = torch.bincount(self.labels, minlength=len(classes))
        lost = [c for c in range(len(classes)) if counts[c] > 0 and not (self.labels[rows] == c).any()]
        if lost:
            more = f" (and {len(lost) - 1} more class(es))" if len(lost) > 1 else ""
            raise HeadsteerError(
                f"{key}={n} leaves class '{classes[lost[0]]}' ({int(counts[lost[0]])} of the {len(self)} images) "
                f"with no image{more}, each class keeping its share: raise {key}, or set it to null for all images"
            )
        return self.take(rows)


LIMIT_SEED = 1234
"""Seed of the images `data.train_limit` / `test_limit` keep: the same whatever the run's `seed`, so
runs that differ in seed see the same images."""


def stratified_rows(labels: torch.Tensor, n: int, num_classes: int, seed: int = LIMIT_SEED) -> torch.Tensor:
    """Sorted indices of n of the rows of `labels` (N,) that keep each class's share: class c gets
    floor(n * count_c / N), and the n left over go one each to the largest remainders (lower class
    first on a tie); within a class, a seeded random choice."""
    counts = torch.bincount(labels, minlength=num_classes).double()  # (C,)
    quota = counts * n / len(labels)
    keep = quota.floor().long()
    remainder = quota - keep
    order = sorted(range(num_classes), key=lambda c: (-remainder[c].item(), c))
    keep[order[: n - int(keep.sum())]] += 1
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(num_classes):
        rows = (labels == c).nonzero().squeeze(1)
        picks.append(rows[torch.randperm(len(rows), generator=g)[: int(keep[c])]])
    return torch.cat(picks).sort().values


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
