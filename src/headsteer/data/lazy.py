"""The streaming path, for datasets too big for memory: images decoded when a batch asks for them.

`LazyImages` indexes like the (N, C, H, W) uint8 tensor of an in-memory split (an int, a slice, an
index tensor or list), so every consumer works unchanged; `batches_of` hands training batches out
through a `torch.utils.data.DataLoader` whose workers decode them ahead, in the order given (so the
order, resume and DDP sharding stay those of the index batches, exactly as in memory).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from headsteer.config import DataConfig
from headsteer.core.errors import HeadsteerError
from headsteer.data.pil_images import to_uint8

AUTO_LIMIT_BYTES = 4 * 2**30
"""data.in_memory=auto keeps a dataset in memory when its training images take at most this as uint8."""


def keep_in_memory(setting: bool | str, train_bytes: int) -> bool:
    """data.in_memory: true / false, or 'auto' (by the size of the decoded training images)."""
    return setting if isinstance(setting, bool) else train_bytes <= AUTO_LIMIT_BYTES


def decide_in_memory(cfg: DataConfig, n_train: int, shape: tuple[int, int, int]) -> bool:
    """`keep_in_memory` for n_train training images of shape (C, H, W), as many as data.train_limit keeps."""
    kept = min(n_train, cfg.train_limit or n_train)
    return keep_in_memory(cfg.in_memory, kept * math.prod(shape))


class LazyImages:
    """Rows decoded on demand: decode(rows) -> PIL images, converted like an in-memory split."""

    def __init__(self, n: int, shape: tuple[int, int, int], decode: Callable[[list[int]], list[Image.Image]],
                 gray: bool, size: int | None, where: str):  # fmt: skip
        self.n, self.decode, self.gray, self.size, self.where = n, decode, gray, size, where
        self.shape = torch.Size((n, *shape))
        """(N, C, H, W) of the tensor this stands for."""

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, slice):
            rows = list(range(self.n)[idx])
        else:
            t = torch.as_tensor(idx)
            if t.ndim == 0:  # an int, a numpy int, a 0-d tensor: one image (C, H, W)
                return self[[int(t)]][0]
            if t.dtype == torch.bool:
                t = t.nonzero().squeeze(1)
            rows = [int(r) % self.n for r in t.reshape(-1).tolist()]  # negative rows count from the end
        if not rows:
            return torch.zeros((0, *self.shape[1:]), dtype=torch.uint8)
        return to_uint8(self.decode(rows), len(rows), self.gray, self.size, self.where)

    def take(self, rows: list[int]) -> "LazyImages":
        """The rows given (`ImageSplit.take`), still on disk."""
        decode = self.decode
        return LazyImages(len(rows), tuple(self.shape[1:]), lambda r: decode([rows[i] for i in r]), self.gray,
                          self.size, self.where)  # fmt: skip


class _Batches(Dataset):
    def __init__(self, images: LazyImages, batches: list[torch.Tensor]):
        self.images, self.batches = images, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> torch.Tensor:
        return self.images[self.batches[k]]


def batches_of(images, batches: Iterable[torch.Tensor], workers: int = 0, pin: bool = False) -> Iterator[torch.Tensor]:
    """uint8 image batches for index batches, in order: slices of a tensor, or decoded by DataLoader workers."""
    batches = list(batches)
    if isinstance(images, torch.Tensor) or workers == 0:
        yield from (images[idx] for idx in batches)
        return
    # its own generator: the workers' base seed must not be drawn from the global RNG, which the
    # training step's Gumbel noise and drop-path draw from (in memory, nothing draws it here)
    loader = DataLoader(
        _Batches(images, batches),
        batch_size=None,
        num_workers=workers,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(0),
    )
    try:
        yield from loader
    except HeadsteerError as exc:  # raised in a worker: DataLoader wraps it in its traceback; keep one line
        raise HeadsteerError(str(exc).strip().splitlines()[-1].split("HeadsteerError: ", 1)[-1]) from None
