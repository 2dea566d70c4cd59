"""The `steer` section of the run configuration (re-exported by `headsteer.config`, where the other
sections live): the steering sweep, its baselines and analyses, the layer study, the latent effects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from headsteer.config.checks import check_ranges
from headsteer.core.errors import HeadsteerError
from headsteer.steer.names import (
    LABEL_SOURCE_NAMES,
    LEARNED_NAMES,
    MODE_NAMES,
    STRATEGY_NAMES,
    LabelSourceName,
    LearnedName,
    Mode,
    ModeName,
    StrategyName,
)


@dataclass
class SteerConfig:
    """The steered layer is the one the SAE was trained on (extract.layer; paper: the last)."""

    mode: ModeName = Mode.PRE_TOPK.value
    """Reading of Eq. 5 used for the headline figures (all `modes` are swept)."""
    modes: list[ModeName] = field(default_factory=lambda: list(MODE_NAMES))
    """Readings of Eq. 5 to sweep (the comparison figure shows each)."""
    strategies: list[StrategyName] = field(default_factory=lambda: list(STRATEGY_NAMES))
    """Index-set strategies to sweep."""
    label_sources: list[LabelSourceName] = field(default_factory=lambda: list(LABEL_SOURCE_NAMES))
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
    rivals: list[Literal["per_head_threshold", "retrained_gate", "class_threshold"]] = field(
        default_factory=lambda: ["per_head_threshold", "retrained_gate", "class_threshold"]
    )
    """What a practitioner would do instead, fitted on training images and judged like the baselines: one shift
    per head of the decision logits, the steered layer's decision network refit with everything else frozen,
    and one shift per class (per label source, for the class-conditioned strategies). Empty: none."""
    rival_targets: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    """Steered-layer head usages every rival and learned strength is fitted to (the unsteered usage is added)."""
    fit_images: Optional[int] = 4000
    """Training images (seeded subset) every rival and learned strength is fitted on; None = all. With H <= 8
    heads the fit reads the outcome of all 2^H head patterns on each of them."""
    fit_holdout: float = 0.25
    """Fraction of the fit images held out; it only chooses the number of learned latents."""
    fit_steps: int = 1000
    """Adam steps of the retrained gate's fit (on the demo it still gains on held-out images past 500 steps; a
    fit costs a few milliseconds a step)."""
    fit_lr: float = 0.05
    """Adam learning rate of each gradient fit."""
    fit_usage_weight: float = 20.0
    """Weight of the usage term pulling a gradient fit toward its target usage."""
    low_usage_max: float = 0.15
    """Each rival is also judged against the threshold below this steered-layer usage (where heads matter)."""
    learned: list[LearnedName] = field(default_factory=lambda: list(LEARNED_NAMES))
    """Learned latent strengths to fit: one strength per latent, and one per class and latent (for each label
    source). Empty: none."""
    learned_l1: float = 1.0e-2
    """L1 weight on the logit pushes of the learned strengths (sum of |alpha_j p_j|, p_j: the push of latent j at
    alpha = 1) in the unrestricted fit that ranks the latents for the sparsity path."""
    learned_path: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    """Sparsity path: refits with only the m strongest latents free (per class for per-class strengths)."""
    learned_steps: int = 300
    """Adam steps of the unrestricted learned-strength fit that ranks the latents."""
    learned_refit_steps: int = 50
    """Adam steps of each sparsity-path refit (it starts from the unrestricted fit's strengths)."""
    focus_usage: float = 0.1
    """The target usage at which the answer compares learned strengths on the trained and the untrained SAE."""
    untrained_sae: bool = True
    """The control: learned strengths and the frequency sets (headline mode) on an untrained SAE of the same shape."""
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
            if name in STRATEGY_NAMES:
                raise HeadsteerError(
                    f"steer.custom_sets.{name}: {name!r} is a built-in strategy; name the set otherwise"
                )
            if not ids or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
                raise HeadsteerError(
                    f"steer.custom_sets.{name}={ids} must be a non-empty list of latent ids (integers >= 0)"
                )
        self._check_fits()

    def _check_fits(self) -> None:
        bad = [t for t in self.rival_targets if not 0 <= t <= 1]
        if bad:
            raise HeadsteerError(f"steer.rival_targets holds {bad[0]}; every target usage must be in [0, 1]")
        if any(m < 1 for m in self.learned_path) or self.learned_path != sorted(set(self.learned_path)):
            raise HeadsteerError(f"steer.learned_path={self.learned_path} must be ascending distinct counts >= 1")
