"""Your own images: `data.root` holding `train/<class>/*` and `test/<class>/*` (or `val/` for `test/`).

Files are found by torchvision's `ImageFolder` (class names = folder names, sorted; every extension
PIL reads) and decoded by PIL, then held in memory as one uint8 tensor per split like the built-in
datasets. All images grayscale -> 1 channel, otherwise RGB. Images of different sizes are resized
(shorter side) and centre-cropped to `data.image_size` through torchvision's transforms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from headsteer.data.base import ImageDataset, ImageSplit
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


def _tensor(images: list[Image.Image], gray: bool, size: int | None, folder: Path) -> torch.Tensor:
    """(N, C, H, W) uint8."""
    sizes = {img.size for img in images}
    if size is None and len(sizes) > 1:
        a, b = sorted(sizes)[:2]
        raise HeadsteerError(
            f"images in {folder} have different sizes ({a[0]}x{a[1]}, {b[0]}x{b[1]}, ...); set data.image_size=N "
            "to resize and centre-crop them to N x N"
        )
    resize = v2.Compose([v2.Resize(size), v2.CenterCrop(size)]) if size else (lambda t: t)
    out = []
    for img in images:
        array = np.asarray(img.convert("L" if gray else "RGB"))
        t = torch.from_numpy(array.copy())
        t = t[None] if gray else t.permute(2, 0, 1)
        out.append(resize(t))
    return torch.stack(out)


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
    gray = all(img.mode in ("L", "1", "I;16", "I") for imgs in decoded.values() for img in imgs)
    splits = {}
    for name, f in found.items():
        images = _tensor(decoded[name], gray, image_size, Path(f.root))
        splits[name] = ImageSplit(images, torch.tensor(f.targets, dtype=torch.int64))
    if splits["train"].images.shape[1:] != splits["test"].images.shape[1:]:
        raise HeadsteerError(
            f"train images in {base} are {tuple(splits['train'].images.shape[2:])}, test images "
            f"{tuple(splits['test'].images.shape[2:])}; set data.image_size=N to bring both to N x N"
        )
    x = splits["train"].images.float().div(255)
    mean = tuple(x.mean(dim=(0, 2, 3)).tolist())
    std = tuple(x.std(dim=(0, 2, 3)).clamp(min=1e-3).tolist())
    return ImageDataset(base.name or "imagefolder", list(train_classes), splits["train"], splits["test"], mean, std)
