"""The `steer` section of the run configuration (re-exported by `headsteer.config`, where the other
sections live): the steering sweep, its baselines and analyses, the layer study, the latent effects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from headsteer.config_checks import check_ranges
from headsteer.errors import HeadsteerError


@dataclass
class SteerConfig:
    """The steered layer is the one the SAE was trained on (extract.layer; paper: the last)."""

    mode: Literal["pre_topk", "post_topk", "additive"] = "pre_topk"
    """Reading of Eq. 5 used for the headline figures (all `modes` are swept)."""
    modes: list[Literal["pre_topk", "post_topk", "additive"]] = field(
        default_factory=lambda: ["pre_topk", "post_topk", "additive"]
    )
    """Readings of Eq. 5 to sweep (the comparison figure shows each)."""
    strategies: list[Literal["per_class", "global", "random", "per_class_specific"]] = field(
        default_factory=lambda: ["per_class", "global", "random", "per_class_specific"]
    )
    """Index-set strategies to sweep."""
    label_sources: list[Literal["true", "predicted"]] = field(default_factory=lambda: ["true", "predicted"])
    """Class used by class-conditioned strategies: the true label (paper, an oracle) or the unsteered
    model's prediction (deployable)."""
    alpha_min: float = -1.5
    """Smallest amplification strength alpha."""
    alpha_max: float = 1.5
    """Largest alpha."""
    alpha_step: float = 0.1
    """Grid step of alpha; 0 and both ends of the range are always on the grid."""
    set_size: Optional[int] = None
    """|S|; None = the SAE's k (paper: k = 64)."""
    min_class_freq: float = 0.05
    """per_class_specific: a latent must fire on at least this fraction of the class to be ranked by lift."""
    top_alpha: float = 1.2
    """Alpha at which classes are ranked by accuracy gain (paper Fig. 3: 1.2)."""
    top_n: int = 5
    """Number of top classes analysed."""
    batch_size: int = 4096
    """Samples per steering step."""
    random_draws: int = 10
    """Independent draws R of the random set. The `random` curve is their mean (per image), shown with
    their band over draws (2.5-97.5 % with 40 draws or more, else the range over the draws)."""
    bootstrap: int = 1000
    """Paired bootstrap resamples of the test images behind every CI (seeded by `seed`); the same
    resamples serve every point, so differences between points are paired."""
    threshold_levels: int = 41
    """Points of the threshold baseline (a constant shift of the steered layer's decision logits),
    spread evenly over head usage 0..1."""
    study_alphas: list[float] = field(default_factory=lambda: [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])
    """Alpha grid of the layer study's non-headline layers (`mode`, true labels, every strategy; 0 added)."""
    study_images: Optional[int] = None
    """Test images (fixed seeded subset) for the layer study; None = all (the CIs show what a subset costs)."""
    effect_images: Optional[int] = 2000
    """Test images (seeded subset) for each latent's head effect (keep-rate change of the headline layer's
    heads when that latent alone is amplified by alpha_max; the latent browser); None = all."""
    oracle_images: Optional[int] = 2000
    """Test images (seeded subset) on which the steered layer's sensitivity runs all 2^H head patterns (the
    oracle bounds, H <= 8); None = all. Kept / dropped / each-dropped use every test image."""
    sensitivity_images: Optional[int] = 2000
    """Test images (seeded subset) for the head sensitivity of the layers other than the steered one;
    None = all. The steered layer always uses every test image."""
    reach: bool = True
    """Past both ends of the alpha grid, keep steering (alpha times `reach_factor` per step) until the
    steered layer's usage stops moving, for every strategy, mode and label source (and the mean-shift
    baseline); the verdicts then cover the whole usage range each one reaches."""
    reach_factor: float = 2.0
    """Growth of |alpha| per reach step (1.5, 3, 6, 12, ... with the default grid)."""
    reach_tol: float = 0.005
    """Usage is saturated when one reach step moves it by less than this."""
    reach_cap: float = 1000.0
    """Largest |alpha| tried; a side still moving there is reported as not saturated."""
    stake_floor_pts: float = 0.5
    """A comparison whose baseline moves less than this many accuracy points over the shared usage range
    (or less than the CI half-width) and whose CI contains 0 is 'inconclusive', not 'matches'."""
    low_usage_loss_pts: float = 1.0
    """Where a strategy reaches usage at which the threshold baseline has lost at least this many points
    from the unsteered accuracy, a second verdict is restricted to that low-usage part."""
    custom_sets: dict[str, list[int]] = field(default_factory=dict)
    """Your own latent sets, {name: [latent ids]} (e.g. picked in the report's latent browser), swept
    beside the built-in strategies with the same CIs and verdicts; each is the same set for every image."""

    def __post_init__(self) -> None:
        check_ranges("steer", self)
        if not self.study_alphas:
            raise HeadsteerError("steer.study_alphas is empty; list at least one alpha")
        if self.alpha_step <= 0 or self.alpha_min > self.alpha_max:
            raise HeadsteerError(
                f"steer alpha grid is empty (alpha_min={self.alpha_min}, alpha_max={self.alpha_max}, "
                f"alpha_step={self.alpha_step}); need alpha_min <= alpha_max and alpha_step > 0"
            )
        for name in ("modes", "strategies", "label_sources"):
            if not getattr(self, name):
                raise HeadsteerError(f"steer.{name} is empty; list at least one")
        if self.mode not in self.modes:
            raise HeadsteerError(f"steer.mode={self.mode!r} is not in steer.modes={self.modes}; add it")
        for name, ids in self.custom_sets.items():
            if name in ("per_class", "global", "random", "per_class_specific"):
                raise HeadsteerError(
                    f"steer.custom_sets.{name}: {name!r} is a built-in strategy; name the set otherwise"
                )
            if not ids or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
                raise HeadsteerError(
                    f"steer.custom_sets.{name}={ids} must be a non-empty list of latent ids (integers >= 0)"
                )
