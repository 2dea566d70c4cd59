"""Your own images: `data.root` holding `train/<class>/*` and `test/<class>/*` (or `val/` for `test/`).

Files are found by torchvision's `ImageFolder` (class names = folder names, sorted; every extension
PIL reads) and decoded by PIL, then held in memory as one uint8 tensor per split like the built-in
datasets. All images grayscale -> 1 channel, otherwise RGB. Images of different sizes are resized
(shorter side) and centre-cropped to `data.image_size` through torchvision's transforms. Above
`data.in_memory`'s limit the images stay on disk and are decoded per batch (`lazy.LazyImages`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from headsteer.config import DataConfig
from headsteer.data.base import ImageDataset, ImageSplit
from headsteer.data.lazy import LazyImages, decide_in_memory
from headsteer.data.pil_images import channel_stats, common_shape, decode, header, to_uint8
from headsteer.errors import HeadsteerError

LAYOUT = "train/<class>/*.png|jpg|... and test/<class>/* (or val/<class>/*)"


def _split_folder(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise HeadsteerError(f"{root} has no {' or '.join(n + '/' for n in names)} folder; lay it out as {LAYOUT}")


EXTENSIONS = tuple(Image.registered_extensions())
"""File extensions PIL can open (png, jpg, webp, gif, tiff, bmp, ...)."""


def _is_image(path: str) -> bool:
    return path.lower().endswith(EXTENSIONS)


def _scan(folder: Path) -> ImageFolder:
    try:
        # paths only (decoded below, with errors named); every extension PIL registers, not just torchvision's list
        return ImageFolder(str(folder), loader=str, is_valid_file=_is_image)
    except FileNotFoundError as exc:  # no class folders, or a class folder without any image file
        raise HeadsteerError(f"{folder}: {exc}; every class folder needs at least one image ({LAYOUT})") from None


def _images(paths: list[str], gray: bool, size: int | None, shape: tuple, where: str, in_memory: bool):
    """The split's (N, C, H, W) uint8 images: decoded now, or on demand (the streaming path)."""
    if in_memory:
        return to_uint8((decode(p) for p in paths), len(paths), gray, size, where)
    return LazyImages(len(paths), shape, PathDecoder(paths), gray, size, where)


class PathDecoder:
    """rows -> decoded images of those files (a picklable object, so DataLoader workers of any start
    method can take it)."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __call__(self, rows: list[int]) -> list[Image.Image]:
        return [decode(self.paths[r]) for r in rows]


def _classes(base: Path, found: dict) -> list[str]:
    train_classes, test_classes = found["train"].classes, found["test"].classes
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise HeadsteerError(
            f"train and test class folders in {base} differ (only in train: {only_train or 'none'}; only in test: "
            f"{only_test or 'none'}); give both splits the same class folders"
        )
    return list(train_classes)


def load_imagefolder(cfg: DataConfig) -> ImageDataset:
    if cfg.root is None:
        raise HeadsteerError(f"data.name=imagefolder needs data.root=DIR, a folder laid out as {LAYOUT}")
    base = Path(cfg.root).expanduser()
    if not base.is_dir():
        raise HeadsteerError(f"data.root={cfg.root} is not a folder; point it at a folder laid out as {LAYOUT}")
    found = {"train": _scan(_split_folder(base, ("train",))), "test": _scan(_split_folder(base, ("test", "val")))}
    classes = _classes(base, found)
    paths = {name: [path for path, _ in f.samples] for name, f in found.items()}
    gray, shape = common_shape([header(p, p) for name in paths for p in paths[name]], cfg.image_size, str(base))
    in_memory = decide_in_memory(cfg, len(paths["train"]), shape)
    splits = {
        name: ImageSplit(
            _images(paths[name], gray, cfg.image_size, shape, found[name].root, in_memory),
            torch.tensor(found[name].targets, dtype=torch.int64),
        )
        for name in paths
    }
    mean, std = channel_stats(splits["train"].images)
    return ImageDataset(base.name or "imagefolder", classes, splits["train"], splits["test"], mean, std)
