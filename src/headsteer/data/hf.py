"""A Hugging Face `datasets` DatasetDict saved with `save_to_disk` at `data.root`: splits `train` and
`test` (or `validation`), an image column and a label column (names configurable). Images are
decoded into memory as uint8, or per batch on the streaming path (`data.in_memory`).

Labels are checked before anything trains, each problem refused with one line naming the row:
- a ClassLabel feature gives the class names; labels must lie in 0..C-1 (its -1, "no label", is
  refused like any label out of range);
- plain integer labels must be 0..C-1 with C = the largest training label + 1;
- string labels are mapped to classes: the sorted distinct training strings (a test string that no
  training row has is refused);
- float, boolean or missing (None) labels are refused (never truncated), as are None images;
- every class needs at least one training image (labels {0, 1, 2, 7} name the empty classes 3-6).
"""

from __future__ import annotations

import torch

from headsteer.config import DataConfig
from headsteer.core.errors import HeadsteerError
from headsteer.data.base import ImageDataset, ImageSplit
from headsteer.data.lazy import LazyImages, decide_in_memory
from headsteer.data.pil_images import channel_stats, common_shape, header, to_8bit, to_uint8


def _open(root: str | None):
    if root is None:
        raise HeadsteerError("data.name=hf needs data.root=DIR, a DatasetDict saved with save_to_disk")
    try:
        import datasets
    except ImportError:
        raise HeadsteerError(
            "data.name=hf needs the `datasets` package: pip install 'headsteer[hf]' (in a clone: make install-dev)"
        ) from None
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


def _label_error(split: str, row: int, value, column: str, root: str, fix: str) -> HeadsteerError:
    return HeadsteerError(f"row {row} of the {split} split of {root} has label {value!r} in column '{column}'; {fix}")


def _as_ints(values: list, split: str, column: str, root: str, classes: list[str] | None) -> torch.Tensor:
    """Integer labels of one split, checked; `classes` maps string labels (None: labels are integers)."""
    index = {c: i for i, c in enumerate(classes)} if classes is not None else None
    out = []
    for row, v in enumerate(values):
        if index is not None and v in index:
            out.append(index[v])
        elif index is None and isinstance(v, int) and not isinstance(v, bool):
            out.append(v)
        else:
            fix = "no training row has that class" if index is not None and isinstance(v, str) else "fix or drop it"
            raise _label_error(split, row, v, column, root, fix)
    return torch.tensor(out, dtype=torch.int64)


def labels_and_classes(parts: dict, column: str, root: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """({train/test: (N,) int64 labels}, class names), every label checked (the module docstring)."""
    feature = parts["train"][1].features[column]
    dtype = getattr(feature, "dtype", "")
    if type(feature).__name__ != "ClassLabel" and "int" not in dtype and "string" not in dtype:
        raise HeadsteerError(
            f"label column '{column}' of {root} holds {dtype or type(feature).__name__} values; labels must be "
            f"integers 0..C-1, strings or a ClassLabel: cast it, e.g. split.cast_column('{column}', Value('int64'))"
        )
    values = {key: split[column] for key, (_, split) in parts.items()}
    classes = sorted({v for v in values["train"] if isinstance(v, str)}) if "string" in dtype else None
    labels = {key: _as_ints(values[key], parts[key][0], column, root, classes) for key in parts}
    if classes is None:
        names = getattr(feature, "names", None)
        top = int(labels["train"].max()) + 1 if len(labels["train"]) else 0
        classes = list(names) if names else [str(i) for i in range(top)]
    for key, t in labels.items():
        bad = ((t < 0) | (t >= len(classes))).nonzero()
        if len(bad):
            row = int(bad[0])
            raise _label_error(
                parts[key][0], row, int(t[row]), column, root, f"labels must be in 0..{len(classes) - 1}"
            )
    counts = torch.bincount(labels["train"], minlength=len(classes)).tolist()
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise HeadsteerError(
            f"class(es) {', '.join(empty)} of label column '{column}' have no training image in {root}; give every "
            "class training images, or number the classes 0..C-1 without gaps"
        )
    return labels, classes


def _headers(split, name: str, column: str, root: str) -> list[tuple[str, str, tuple[int, int]]]:
    """Every image's (name, mode, size) from its encoded bytes (or file), without decoding the pixels."""
    import datasets

    raw = split.cast_column(column, datasets.Image(decode=False))[column]  # {"bytes", "path"} per row
    out = []
    for i, r in enumerate(raw):
        where = f"row {i} of the {name} split of {root}"
        if r is None or not (r.get("bytes") or r.get("path")):
            raise HeadsteerError(f"{where} has no image (None) in column '{column}'; fill or drop that row")
        out.append((where, *header(r["bytes"] or r["path"], where)))
    return out


def _images(split, column: str, gray: bool, size, shape: tuple, where: str, in_memory: bool):
    images = split.select_columns([column])
    if in_memory:
        decoded = (to_8bit(row[column], f"row {i} of {where}") for i, row in enumerate(images))
        return to_uint8(decoded, len(images), gray, size, where)
    return LazyImages(len(images), shape, RowDecoder(images, column, where), gray, size, where)


class RowDecoder:
    """rows -> decoded 8-bit images of one column (picklable for DataLoader workers)."""

    def __init__(self, split, column: str, where: str):
        self.split, self.column, self.where = split, column, where

    def __call__(self, rows: list[int]) -> list:
        images = self.split[rows][self.column]
        return [to_8bit(img, f"row {r} of {self.where}") for r, img in zip(rows, images, strict=True)]


def fingerprint(cfg: DataConfig) -> list:
    """The `_fingerprint` of every split, which `datasets` changes whenever a split's content does."""
    dd = _open(cfg.root)
    return [[name, dd[name]._fingerprint] for name in sorted(dd)]


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
    labels, classes = labels_and_classes(parts, label_col, root)
    heads = [h for name, split in parts.values() for h in _headers(split, name, col, root)]
    gray, shape = common_shape(heads, cfg.image_size, root)
    in_memory = decide_in_memory(cfg, len(parts["train"][1]), shape)
    splits = {
        key: ImageSplit(_images(split, col, gray, cfg.image_size, shape, f"{root} ({name})", in_memory), labels[key])
        for key, (name, split) in parts.items()
    }
    mean, std = channel_stats(splits["train"].images)
    return ImageDataset("hf", classes, splits["train"], splits["test"], mean, std)
