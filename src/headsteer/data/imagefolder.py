"""Your own images: `data.root` holding `train/<class>/*` and `test/<class>/*` (or `val/` for `test/`).

Class names are the folder names, sorted; every extension PIL reads counts as an image; files and
folders whose names start with '.' (`.ipynb_checkpoints`, `.DS_Store`) are skipped. Symbolic links
are followed, but each real folder is entered once and a link back up to the class folder (a loop)
not at all, so every real file is read once; one file reached from two class folders is refused.
Images are decoded by PIL to 8 bits (`pil_images.to_8bit`), then held in memory as one uint8 tensor
per split like the built-in datasets. All images grayscale -> 1 channel, otherwise RGB. Images of
different sizes are resized (shorter side) and centre-cropped to `data.image_size` through
torchvision's transforms. Above `data.in_memory`'s limit the images stay on disk and are decoded per
batch (`lazy.LazyImages`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image

from headsteer.config import DataConfig
from headsteer.core.errors import HeadsteerError
from headsteer.data.base import ImageDataset, ImageSplit
from headsteer.data.lazy import LazyImages, decide_in_memory
from headsteer.data.pil_images import channel_stats, common_shape, decode, header, to_uint8

LAYOUT = "train/<class>/*.png|jpg|... and test/<class>/* (or val/<class>/*)"


def _split_folder(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise HeadsteerError(f"{root} has no {' or '.join(n + '/' for n in names)} folder; lay it out as {LAYOUT}")


EXTENSIONS = tuple(Image.registered_extensions())
"""File extensions PIL can open (png, jpg, webp, gif, tiff, bmp, ...)."""


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(EXTENSIONS)


def _class_files(top: Path) -> list[str]:
    """Image files under one class folder, sorted by folder then name (as torchvision's ImageFolder);
    hidden names skipped; a linked folder is entered once, and never when it holds this class folder."""
    top_real = os.path.realpath(top)
    entered, found = {top_real}, []
    for folder, subfolders, files in os.walk(top, followlinks=True):
        keep = []
        for name in sorted(subfolders):
            real = os.path.realpath(os.path.join(folder, name))
            if name.startswith(".") or real in entered or os.path.commonpath([real, top_real]) == real:
                continue
            entered.add(real)
            keep.append(name)
        subfolders[:] = keep
        found += [(folder, name) for name in files if _is_image(name)]
    return [os.path.join(folder, name) for folder, name in sorted(found)]


class Scan:
    """The class folders and image files of one split folder."""

    def __init__(self, root: Path):
        self.root = root
        self.classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        if not self.classes:
            raise HeadsteerError(f"{root} holds no class folders; lay it out as {LAYOUT}")
        self.paths: list[str] = []
        self.targets: list[int] = []
        owner: dict[str, str] = {}  # real file -> the class folder that reached it first
        for label, name in enumerate(self.classes):
            files = _class_files(root / name)
            if not files:
                raise HeadsteerError(
                    f"{root / name} holds no image; every class folder needs at least one image ({LAYOUT})"
                )
            for path in files:
                real = os.path.realpath(path)
                if owner.get(real, name) != name:
                    raise HeadsteerError(
                        f"{path} is the same file as one in class folder '{owner[real]}' (a symbolic link); an "
                        "image has one class: remove the link or the copy"
                    )
                if real not in owner:  # a second path to a file of this class: read once
                    owner[real] = name
                    self.paths.append(path)
                    self.targets.append(label)


def _scans(cfg: DataConfig) -> tuple[Path, dict[str, Scan]]:
    if cfg.root is None:
        raise HeadsteerError(f"data.name=imagefolder needs data.root=DIR, a folder laid out as {LAYOUT}")
    base = Path(cfg.root).expanduser()
    if not base.is_dir():
        raise HeadsteerError(f"data.root={cfg.root} is not a folder; point it at a folder laid out as {LAYOUT}")
    return base, {"train": Scan(_split_folder(base, ("train",))), "test": Scan(_split_folder(base, ("test", "val")))}


def fingerprint(cfg: DataConfig) -> list:
    """[relative path, size, mtime (ns)] of every image the loader reads: changes when the data does."""
    base, scans = _scans(cfg)
    out = []
    for scan in scans.values():
        for path in scan.paths:
            st = os.stat(path)
            out.append([os.path.relpath(path, base), st.st_size, st.st_mtime_ns])
    return out


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


def _classes(base: Path, found: dict[str, Scan]) -> list[str]:
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
    base, found = _scans(cfg)
    classes = _classes(base, found)
    paths = {name: f.paths for name, f in found.items()}
    heads = [(p, *header(p, p)) for name in paths for p in paths[name]]
    gray, shape = common_shape(heads, cfg.image_size, str(base))
    in_memory = decide_in_memory(cfg, len(paths["train"]), shape)
    splits = {
        name: ImageSplit(
            _images(paths[name], gray, cfg.image_size, shape, str(found[name].root), in_memory),
            torch.tensor(found[name].targets, dtype=torch.int64),
        )
        for name in paths
    }
    mean, std = channel_stats(splits["train"].images)
    return ImageDataset(base.name or "imagefolder", classes, splits["train"], splits["test"], mean, std)
