"""The grid of steering strengths alpha, and lookups on it."""

from __future__ import annotations

import math
from decimal import Decimal

from headsteer.config import SteerConfig


def step_decimals(step: float) -> int:
    """Decimal places that write `step` exactly as the user typed it (0.1 -> 1, 0.125 -> 3, 0.25 -> 2)."""
    return max(0, -Decimal(repr(step)).normalize().as_tuple().exponent)


def alpha_grid(cfg: SteerConfig) -> list[float]:
    """0 +- multiples of alpha_step inside [alpha_min, alpha_max], plus both endpoints when they are off
    the step (so the range asked for is always covered), plus 0 itself. Built from integers i * step, rounded to the
    step's own decimals, so 0 and every multiple are exact (0.125 gives 0.375, not 0.38)."""
    step, lo, hi = cfg.alpha_step, cfg.alpha_min, cfg.alpha_max
    decimals = step_decimals(step)
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    grid = {round(i * step, decimals) for i in range(first, last + 1)}
    return sorted(grid | {float(lo), float(hi), 0.0})  # 0 (the reconstruction) is every change's reference


def nearest_index(alphas: list[float], alpha: float) -> int:
    """Index of the grid value nearest to `alpha` (the first one on a tie)."""
    return min(range(len(alphas)), key=lambda i: abs(alphas[i] - alpha))
