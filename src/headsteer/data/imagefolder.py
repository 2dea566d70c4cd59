"""Your own images: `data.root` holding `train/<class>/*` and `test/<class>/*` (or `val/` for `test/`).

Files are found by torchvision's `ImageFolder` (class names = folder names, sorted; every extension
PIL reads) and decoded by PIL, then held in memory as one uint8 tensor per split like the built-in
datasets. All images grayscale -> 1 channel, otherwise RGB. Images of different sizes are resized
(shorter side) and centre-cropped to `data.image_size` through torchvision's transforms.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder

from headsteer.data.base import ImageDataset, ImageSplit
from headsteer.data.pil_images import all_gray, channel_stats, to_uint8
from headsteer.errors import HeadsteerError

LAYOUT = "train/<class>/*.png|jpg|... and test/<class>/* (or val/<class>/*)"


def _split_folder(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise HeadsteerError(f"{root} has no {' or '.join(n + '/' for n in names)} folder; lay it out as {LAYOUT}")


def _scan(folder: Path) -> ImageFolder:
    try:
        return ImageFolder(str(folder), loader=lambda path: path)  # paths only; decoded below with errors named
    except FileNotFoundError as exc:  # no class folders, or a class folder without any image file
        raise HeadsteerError(f"{folder}: {exc}; every class folder needs at least one image ({LAYOUT})") from None


def _decode(path: str) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise HeadsteerError(f"cannot read image {path} ({type(exc).__name__}); delete or replace the file") from None


def load_imagefolder(root: str | None, image_size: int | None = None) -> ImageDataset:
    if root is None:
        raise HeadsteerError(f"data.name=imagefolder needs data.root=DIR, a folder laid out as {LAYOUT}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise HeadsteerError(f"data.root={root} is not a folder; point it at a folder laid out as {LAYOUT}")
    found = {"train": _scan(_split_folder(base, ("train",))), "test": _scan(_split_folder(base, ("test", "val")))}
    train_classes, test_classes = found["train"].classes, found["test"].classes
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise HeadsteerError(
            f"train and test class folders in {base} differ (only in train: {only_train or 'none'}; only in test: "
            f"{only_test or 'none'}); give both splits the same class folders"
        )
    decoded = {name: [_decode(path) for path, _ in f.samples] for name, f in found.items()}
    gray = all_gray([img for imgs in decoded.values() for img in imgs])
    splits = {}
    for name, f in found.items():
        images = to_uint8(decoded[name], gray, image_size, f.root)
        splits[name] = ImageSplit(images, torch.tensor(f.targets, dtype=torch.int64))
    if splits["train"].images.shape[1:] != splits["test"].images.shape[1:]:
        raise HeadsteerError(
            f"train images in {base} are {tuple(splits['train'].images.shape[2:])}, test images "
            f"{tuple(splits['test'].images.shape[2:])}; set data.image_size=N to bring both to N x N"
        )
    mean, std = channel_stats(splits["train"].images)
    return ImageDataset(base.name or "imagefolder", list(train_classes), splits["train"], splits["test"], mean, std)
