"""Fitted policies kept in the steer folder, one file per family (a rival, a learned variant), so a steer stage
stopped midway refits only the families it had not finished. The files end in `checkpoint.safetensors`, which
the stage runner keeps when a finished stage is redone with the same config."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from headsteer.artifacts.io import json_text, read_tensors_and_metadata, write_tensors
from headsteer.core.errors import HeadsteerError

Entry = tuple[dict[str, torch.Tensor], dict]
"""(tensors, JSON-able record) of one fitted policy."""


class FitCache:
    """`folder/fits/<family>.checkpoint.safetensors`, valid only for the `settings` it was written with."""

    def __init__(self, folder: Path, settings: dict):
        self.folder, self.settings = Path(folder) / "fits", json.loads(json_text(settings, folder))

    def path(self, family: str) -> Path:
        return self.folder / f"{family}.checkpoint.safetensors"

    def load(self, family: str) -> list[Entry] | None:
        """The family's entries, or None when absent, unreadable or written with other settings."""
        path = self.path(family)
        if not path.is_file():
            return None
        try:
            settings, entries = read_entries(path)
        except HeadsteerError:
            return None
        return entries if settings == self.settings else None

    def save(self, family: str, entries: list[Entry]) -> None:
        tensors = {f"{i}.{k}": v for i, (ts, _) in enumerate(entries) for k, v in ts.items()}
        doc = {"settings": self.settings, "records": [record for _, record in entries]}
        self.folder.mkdir(parents=True, exist_ok=True)
        write_tensors(self.path(family), tensors, {"headsteer": json_text(doc, self.path(family), indent=None)})


def read_entries(path: Path) -> tuple[dict, list[Entry]]:
    """(the settings a family file was written with, its entries in order); HeadsteerError on a missing or
    unreadable file, or one that is not a family file."""
    tensors, meta = read_tensors_and_metadata(path)
    try:
        doc = json.loads(meta["headsteer"])
        settings, records = doc["settings"], doc["records"]
    except (KeyError, ValueError):
        raise HeadsteerError(f"{path} holds no fitted policies; delete it and re-run the steer stage") from None
    out = []
    for i, record in enumerate(records):
        prefix = f"{i}."
        out.append(({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, record))
    return settings, out
