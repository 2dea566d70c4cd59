"""Fashion-MNIST from the four idx files (Debian's `dataset-fashion-mnist`, or any folder).

The idx reader is written by hand (30 lines) because torchvision's FashionMNIST class insists on its
own `FashionMNIST/raw` layout and on downloading; here we want any folder, gzipped or not, and an
error that names the broken file.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from headsteer.config import DataConfig
from headsteer.core.errors import HeadsteerError
from headsteer.data.base import ImageDataset, ImageSplit

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MEAN, STD = (0.2860,), (0.3530,)
_FIX = (
    "install it with `apt-get install dataset-fashion-mnist` (make demo does this) "
    "or set data.root to a folder holding the four idx files"
)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise HeadsteerError(f"Fashion-MNIST file {stem}(.gz) not found in {root}; {_FIX}")


def read_idx(path: Path) -> np.ndarray:
    """Read one idx file (magic 0x0000 08 ndim, big-endian sizes, uint8 payload)."""
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise HeadsteerError(f"{path} is unreadable or truncated ({exc}); re-install or re-copy it. {_FIX}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise HeadsteerError(f"{path} is not an idx file of uint8 (bad magic number); {_FIX}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise HeadsteerError(f"{path} is truncated (header incomplete); {_FIX}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise HeadsteerError(
            f"{path} is truncated or corrupt: header says {expected} bytes of data, file has "
            f"{len(raw) - header}; {_FIX}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def fingerprint(cfg: DataConfig) -> list:
    """[file, size, mtime (ns)] of the four files the loader reads: changes when they do."""
    folder = Path(cfg.root or DEFAULT_ROOT)
    files = [_find(folder, stem) for stem in FILES.values()]
    return [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def load_fashion_mnist(root: str | None = None) -> ImageDataset:
    folder = Path(root or DEFAULT_ROOT)
    if not folder.is_dir():
        raise HeadsteerError(f"Fashion-MNIST folder {folder} does not exist; {_FIX}")
    arrays = {key: read_idx(_find(folder, stem)) for key, stem in FILES.items()}
    splits = {}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise HeadsteerError(
                f"Fashion-MNIST {split} files disagree: images {images.shape}, labels {labels.shape}; {_FIX}"
            )
        if labels.size and labels.max() >= len(CLASSES):
            raise HeadsteerError(f"Fashion-MNIST {split} labels go up to {labels.max()}, expected < 10; {_FIX}")
        splits[split] = ImageSplit(
            torch.from_numpy(images.copy()).unsqueeze(1),  # (N, 1, 28, 28)
            torch.from_numpy(labels.astype(np.int64)),
        )
    return ImageDataset("fashion_mnist", list(CLASSES), splits["train"], splits["test"], MEAN, STD)
