"""A Hugging Face `datasets` DatasetDict saved with `save_to_disk` at `data.root`: splits `train` and
`test` (or `validation`), an image column and a label column (names configurable). Class names come
from the label column's ClassLabel feature (else the labels' values, which must be 0..C-1). Images
are decoded once and held in memory as uint8, like every other dataset here."""

from __future__ import annotations

import torch

from headsteer.data.base import ImageDataset, ImageSplit
from headsteer.data.pil_images import all_gray, channel_stats, to_uint8
from headsteer.errors import HeadsteerError


def _open(root: str | None):
    if root is None:
        raise HeadsteerError("data.name=hf needs data.root=DIR, a DatasetDict saved with save_to_disk")
    try:
        import datasets
    except ImportError:
        raise HeadsteerError("data.name=hf needs the `datasets` package; run `make install`") from None
    try:
        dd = datasets.load_from_disk(root)
    except FileNotFoundError as exc:
        raise HeadsteerError(f"data.root={root} holds no dataset saved with save_to_disk ({exc})") from None
    if not isinstance(dd, datasets.DatasetDict):
        raise HeadsteerError(f"{root} holds a single split; save a DatasetDict with 'train' and 'test' splits")
    return dd


def _split(dd, root: str, names: tuple[str, ...]):
    for name in names:
        if name in dd:
            return name, dd[name]
    raise HeadsteerError(f"{root} has no {' or '.join(names)} split (splits: {sorted(dd)}); save one under that name")


def _columns(split, name: str, root: str, image_column: str, label_column: str) -> None:
    for key, column in (("image_column", image_column), ("label_column", label_column)):
        if column not in split.column_names:
            raise HeadsteerError(
                f"column '{column}' is not in the {name} split of {root} (columns: {split.column_names}); "
                f"set data.{key}=NAME"
            )


def _classes(feature, labels: list[torch.Tensor], column: str) -> list[str]:
    names = getattr(feature, "names", None)
    if names:
        return list(names)
    top = int(max(int(t.max()) for t in labels)) + 1
    if any(int(t.min()) < 0 for t in labels):
        raise HeadsteerError(f"label column '{column}' has negative labels; use labels 0..C-1 or a ClassLabel feature")
    return [str(i) for i in range(top)]


def load_hf(root: str | None, image_column: str, label_column: str, image_size: int | None) -> ImageDataset:
    dd = _open(root)
    parts = {"train": _split(dd, root, ("train",)), "test": _split(dd, root, ("test", "validation"))}
    decoded, labels = {}, {}
    for key, (name, split) in parts.items():
        _columns(split, name, root, image_column, label_column)
        decoded[key] = list(split[image_column])
        labels[key] = torch.tensor(split[label_column], dtype=torch.int64)
        if decoded[key] and not hasattr(decoded[key][0], "convert"):
            raise HeadsteerError(
                f"column '{image_column}' of {root} holds {type(decoded[key][0]).__name__}, not images; "
                "cast it to datasets.Image() or set data.image_column"
            )
    gray = all_gray(decoded["train"] + decoded["test"])
    splits = {
        key: ImageSplit(to_uint8(decoded[key], gray, image_size, f"{root} ({parts[key][0]})"), labels[key])
        for key in parts
    }
    classes = _classes(parts["train"][1].features[label_column], list(labels.values()), label_column)
    mean, std = channel_stats(splits["train"].images)
    return ImageDataset("hf", classes, splits["train"], splits["test"], mean, std)
