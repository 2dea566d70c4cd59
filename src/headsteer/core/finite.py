"""Non-finite values: finding them in tensors, and the one-line error of a diverged training loop."""

from __future__ import annotations

from typing import Iterable

import torch

from headsteer.core.errors import HeadsteerError


def first_nonfinite(named: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """Name of the first floating-point tensor holding a NaN or an infinity; None when all are finite."""
    for name, t in named:
        if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def diverged(what: str, setting: str, value: float, kept: bool) -> HeadsteerError:
    """The error of a training loop that met a non-finite loss or weight.

    what: what went non-finite and where; setting: the config key to lower (its current value: value);
    kept: whether a checkpoint of an earlier, valid point is on disk (then a new setting needs --force)."""
    saved = "the last good checkpoint is kept" if kept else "nothing of it was saved"
    rerun = " with --force, which starts the stage over" if kept else " (no --force needed)"
    return HeadsteerError(f"training diverged: {what}; {saved}. Lower {setting} (now {value:g}) and run again{rerun}")
