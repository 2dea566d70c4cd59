"""headsteer: ViTs that prune their own attention heads per image, steered through a sparse autoencoder.

`headsteer.load_run(RUN)` opens a finished run (`headsteer.api`). The names below are imported on first
use, so `import headsteer` (and the command line) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["load_run", "Run", "Outputs", "LatentStats", "RunSAE", "LearnedStrengths", "__version__"]

if TYPE_CHECKING:  # for type checkers and documentation tools; at run time, `__getattr__` below
    from headsteer.api import LatentStats, LearnedStrengths, Outputs, Run, RunSAE, load_run


def __getattr__(name: str) -> Any:
    """`headsteer.load_run` and the other API names, from `headsteer.api` when first asked for."""
    if name in __all__:
        return getattr(importlib.import_module("headsteer.api"), name)
    raise AttributeError(f"module 'headsteer' has no attribute {name!r}")
