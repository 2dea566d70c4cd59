"""Which latent set S an API call steers: an index set of the steer stage by name (one random draw of
`random`), checked."""

from __future__ import annotations

import torch

from headsteer.core.errors import HeadsteerError
from headsteer.steer.names import Strategy

BUILT_IN_SETS = {
    Strategy.PER_CLASS: "set_per_class",
    Strategy.GLOBAL: "set_global",
    Strategy.RANDOM: "set_random",
    Strategy.PER_CLASS_SPECIFIC: "set_per_class_specific",
}
"""Index-set name -> its key in `steer/latents*.safetensors` (`random`: the first of the random draws)."""


def named_set(sets: dict[str, torch.Tensor], layer: int, strategy, draw) -> torch.Tensor:
    """The set `strategy` of `sets` (`Run.index_sets`; None = 'per_class'): (|S|,) or (C, |S|). For
    'random', draw `draw` of `sets['random_draws']` (R, |S|), which may be left out only when R = 1."""
    strategy = Strategy.PER_CLASS if strategy is None else strategy
    names = [n for n in sets if n != "random_draws"]
    if not isinstance(strategy, str) or strategy not in names:
        names = ", ".join(names)
        raise HeadsteerError(f"strategy={strategy!r} is not an index set of layer {layer}; use one of {names}")
    if strategy != Strategy.RANDOM:
        if draw is not None:
            raise HeadsteerError(f"draw={draw!r} goes with strategy='random' only")
        return sets[strategy]
    draws = sets["random_draws"]
    R = draws.shape[0]
    if draw is None and R == 1:
        draw = 0
    if draw is None or isinstance(draw, bool) or not isinstance(draw, int) or not 0 <= draw < R:
        raise HeadsteerError(
            f"strategy='random' has {R} draws (steer.random_draws); pick one with draw=0..{R - 1} "
            f"(draw={draw!r}), or call sweep('random', ...) for their average, as results.json reports it"
        )
    return draws[draw]
