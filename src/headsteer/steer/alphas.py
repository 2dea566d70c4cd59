"""The grid of steering strengths alpha, and lookups on it."""

from __future__ import annotations

import math

from headsteer.config import SteerConfig


def alpha_grid(cfg: SteerConfig) -> list[float]:
    """alpha_min..alpha_max in steps of alpha_step, built from 0 outwards so that 0 is exact and
    values are rounded to the step."""
    decimals = max(0, -int(math.floor(math.log10(cfg.alpha_step))) + 1)
    lo = math.ceil(cfg.alpha_min / cfg.alpha_step - 1e-9)
    hi = math.floor(cfg.alpha_max / cfg.alpha_step + 1e-9)
    return [round(i * cfg.alpha_step, decimals) for i in range(lo, hi + 1)]


def nearest_index(alphas: list[float], alpha: float) -> int:
    """Index of the grid value nearest to `alpha` (the first one on a tie)."""
    return min(range(len(alphas)), key=lambda i: abs(alphas[i] - alpha))
