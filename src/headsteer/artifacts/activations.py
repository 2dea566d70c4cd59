"""The CLS activation store: what the extract stage writes and the later stages read.

A split of layer l lives in `RUN/extract/layer_<l>/<split>/` as `chunk_NNNNN.safetensors` files
(keys `cls` (n, d) float32, `labels` (n,), `predictions` (n,), `masks` (n, L, H) uint8) and an
`index.json` written last. Chunks bound memory while extracting and are the unit of resume: a
finished chunk is never redone. `RUN/extract/metrics.json` names the headline layer and all layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from headsteer.artifacts.io import read_json, read_tensors, write_json, write_tensors
from headsteer.core.errors import HeadsteerError

KEYS = ("cls", "labels", "predictions", "masks")


@dataclass
class Activations:
    """Extracted rows of one split (or one chunk of it)."""

    cls: torch.Tensor
    """(N, d) float32 CLS token of the layer's residual input."""
    labels: torch.Tensor
    """(N,) true classes."""
    predictions: torch.Tensor
    """(N,) the unsteered model's predicted classes."""
    masks: torch.Tensor
    """(N, L, H) uint8 eval head masks of every layer."""

    def __len__(self) -> int:
        return self.cls.shape[0]

    def save(self, path: str | Path) -> None:
        write_tensors(path, {key: getattr(self, key) for key in KEYS})

    @classmethod
    def load(cls, path: str | Path) -> "Activations":
        tensors = read_tensors(path)
        missing = [key for key in KEYS if key not in tensors]
        if missing:
            raise HeadsteerError(f"{path} lacks {', '.join(missing)}; delete it and re-run `headsteer extract`")
        return cls(**{key: tensors[key] for key in KEYS})

    def take(self, rows: torch.Tensor | None) -> "Activations":
        """The given rows (None = all of them)."""
        if rows is None:
            return self
        return Activations(**{key: getattr(self, key)[rows] for key in KEYS})

    @classmethod
    def cat(cls, parts: list["Activations"]) -> "Activations":
        return cls(**{key: torch.cat([getattr(p, key) for p in parts]) for key in KEYS})


class ActivationStore:
    """One split's folder of chunks and its index."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @classmethod
    def of_run(cls, run_dir: str | Path, split: str, layer: int) -> "ActivationStore":
        return cls(Path(run_dir) / "extract" / f"layer_{layer}" / split)

    def chunk_path(self, c: int) -> Path:
        return self.folder / f"chunk_{c:05d}.safetensors"

    def has_chunk(self, c: int) -> bool:
        return self.chunk_path(c).is_file()

    def save_chunk(self, c: int, acts: Activations) -> None:
        acts.save(self.chunk_path(c))

    def save_index(self, index: dict) -> None:
        """Written last: its presence means every chunk is on disk."""
        write_json(self.folder / "index.json", index)

    def index(self) -> dict:
        path = self.folder / "index.json"
        if not path.is_file():
            raise HeadsteerError(f"{path} not found; run `headsteer extract` first")
        return read_json(path)

    def load(self) -> Activations:
        """All chunks concatenated, checked against the index."""
        index = self.index()
        acts = Activations.cat([Activations.load(self.chunk_path(c)) for c in range(index["chunks"])])
        if len(acts) != index["rows"]:
            raise HeadsteerError(
                f"{self.folder} holds {len(acts)} rows, index.json says {index['rows']}; "
                "delete the folder and re-run `headsteer extract`"
            )
        return acts


def hook_name(layer: int) -> str:
    """SAELens-style name of the activation extracted at `layer`."""
    return f"blocks.{layer}.hook_resid_pre.cls"


def extracted_layers(run_dir: str | Path) -> tuple[int, list[int]]:
    """(headline layer, every extracted layer) of a run, from RUN/extract/metrics.json."""
    path = Path(run_dir) / "extract" / "metrics.json"
    if not path.is_file():
        raise HeadsteerError(f"{path} not found; run `headsteer extract` first")
    meta = read_json(path)
    if "layers" not in meta:
        raise HeadsteerError(
            f"{path} comes from an older headsteer (one layer, no layer_<l>/ folders); "
            "re-run `headsteer extract --force` there"
        )
    return meta["layer"], meta["layers"]


def load_split(run_dir: str | Path, split: str, layer: int | None = None) -> Activations:
    """The extracted rows of `split` ('train' or 'test') at `layer` (None = the headline layer)."""
    if layer is None:
        layer = extracted_layers(run_dir)[0]
    return ActivationStore.of_run(run_dir, split, layer).load()
