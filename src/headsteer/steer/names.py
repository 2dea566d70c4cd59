"""The fixed name sets of steering, each defined once: index-set strategies, readings of Eq. 5 (modes),
label sources and the verdict's calls.

Each member is its name: a `str` equal to, hashed and formatted as its value, so results files, config
values and dict keys are the plain strings (`json.dumps(Strategy.GLOBAL) == '"global"'`). The config's
allowed values (`*_NAMES`, `Literal` types) derive from the enums.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal


class Name(str, Enum):
    """A member that reads, compares, hashes and formats as its value."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__
    __hash__ = str.__hash__


class Strategy(Name):
    """How the steered latents S are chosen."""

    PER_CLASS = "per_class"
    """The image's class's most frequent latents (the paper's method)."""
    GLOBAL = "global"
    """The most frequent latents over all training images, the same S for every image."""
    RANDOM = "random"
    """|S| latents drawn at random (R seeded draws)."""
    PER_CLASS_SPECIFIC = "per_class_specific"
    """The latents most specific to the image's class (ranked by lift)."""


class Mode(Name):
    """Readings of Eq. 5: where the amplification enters the SAE."""

    PRE_TOPK = "pre_topk"
    """Rescale the pre-activations of S by max(0, 1 + alpha), then TopK (the default)."""
    POST_TOPK = "post_topk"
    """TopK, then rescale the code's latents of S (no re-selection)."""
    ADDITIVE = "additive"
    """Add alpha times the code's largest value to the latents of S, then TopK (latents outside the code
    can enter it)."""


class LabelSource(Name):
    """The class a class-conditioned strategy uses."""

    TRUE = "true"
    """The true label (the paper; an oracle)."""
    PREDICTED = "predicted"
    """The unsteered model's prediction (deployable)."""


class Call(Name):
    """What a comparison with a baseline can carry (`headsteer.steer.verdict`)."""

    BEATS = "beats"
    """The CI lies above 0."""
    LOSES = "loses"
    """The CI lies below 0."""
    MATCHES = "matches"
    """The CI contains 0 and something was at stake."""
    INCONCLUSIVE = "inconclusive"
    """The CI contains 0 but the baseline's accuracy moves too little over the shared range."""
    BORDERLINE = "borderline"
    """A CI bound lies within its Monte Carlo error of 0."""
    RANGE_TOO_NARROW = "range too narrow"
    """The two curves share too narrow a usage range to compare."""


STRATEGY_NAMES = tuple(s.value for s in Strategy)
MODE_NAMES = tuple(m.value for m in Mode)
LABEL_SOURCE_NAMES = tuple(s.value for s in LabelSource)
LEARNED_NAMES = (Strategy.GLOBAL.value, Strategy.PER_CLASS.value)
"""Learned strengths: one strength per latent (global), or one per class and latent (per_class)."""
CALL_NAMES = tuple(c.value for c in Call)

StrategyName = Literal[STRATEGY_NAMES]  # type: ignore[valid-type]
"""A strategy's name, as a config value: `Literal["per_class", "global", ...]`."""
ModeName = Literal[MODE_NAMES]  # type: ignore[valid-type]
"""A mode's name, as a config value."""
LabelSourceName = Literal[LABEL_SOURCE_NAMES]  # type: ignore[valid-type]
"""A label source's name, as a config value."""
LearnedName = Literal[LEARNED_NAMES]  # type: ignore[valid-type]
"""A learned-strengths variant's name, as a config value."""
