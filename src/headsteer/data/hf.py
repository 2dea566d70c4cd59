"""A Hugging Face `datasets` DatasetDict saved with `save_to_disk` at `data.root`: splits `train` and
`test` (or `validation`), an image column and a label column (names configurable). Class names come
from the label column's ClassLabel feature (else the labels' values, which must be 0..C-1). Images
are decoded into memory as uint8, or per batch on the streaming path (`data.in_memory`)."""

from __future__ import annotations

import torch

from headsteer.config import DataConfig
from headsteer.data.base import ImageDataset, ImageSplit
from headsteer.data.lazy import LazyImages, decide_in_memory
from headsteer.data.pil_images import channel_stats, common_shape, header, to_uint8
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


def _headers(split, column: str, root: str) -> list[tuple[str, tuple[int, int]]]:
    """Every image's (mode, size) from its encoded bytes (or file), without decoding the pixels."""
    import datasets

    raw = split.cast_column(column, datasets.Image(decode=False))[column]  # {"bytes", "path"} per row
    return [header(r["bytes"] or r["path"], f"{column}[{i}] of {root}") for i, r in enumerate(raw)]


def _images(split, column: str, gray: bool, size, shape: tuple, where: str, in_memory: bool):
    images = split.select_columns([column])
    if in_memory:
        return to_uint8((row[column] for row in images), len(images), gray, size, where)
    return LazyImages(len(images), shape, RowDecoder(images, column), gray, size, where)


class RowDecoder:
    """rows -> decoded images of one column (picklable for DataLoader workers)."""

    def __init__(self, split, column: str):
        self.split, self.column = split, column

    def __call__(self, rows: list[int]) -> list:
        return list(self.split[rows][self.column])


def load_hf(cfg: DataConfig) -> ImageDataset:
    root, col, label_col = cfg.root, cfg.image_column, cfg.label_column
    dd = _open(root)
    parts = {"train": _split(dd, root, ("train",)), "test": _split(dd, root, ("test", "validation"))}
    for name, split in parts.values():
        _columns(split, name, root, col, label_col)
        if type(split.features[col]).__name__ != "Image":  # datasets.Image: decodes to PIL
            raise HeadsteerError(
                f"column '{col}' of {root} is {type(split.features[col]).__name__}, not images; "
                "cast it to datasets.Image() or set data.image_column"
            )
    heads = [h for _, split in parts.values() for h in _headers(split, col, root)]
    gray, shape = common_shape(heads, cfg.image_size, root)
    in_memory = decide_in_memory(cfg, len(parts["train"][1]), shape)
    labels = {key: torch.tensor(split[label_col], dtype=torch.int64) for key, (_, split) in parts.items()}
    splits = {
        key: ImageSplit(_images(split, col, gray, cfg.image_size, shape, f"{root} ({name})", in_memory), labels[key])
        for key, (name, split) in parts.items()
    }
    classes = _classes(parts["train"][1].features[label_col], list(labels.values()), label_col)
    mean, std = channel_stats(splits["train"].images)
    return ImageDataset("hf", classes, splits["train"], splits["test"], mean, std)
