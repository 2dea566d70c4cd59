"""The layer study: steering at a layer other than the headline one, on a reduced alpha grid.

The paper steers only the last layer. Here every layer of `extract.layers` gets its own SAE, and this
module sweeps it in the headline mode with true labels for every strategy, on `steer.study_alphas`
(and optionally a fixed seeded subset of the test images), beside the threshold baseline and the
layer's own sensitivity (all heads kept vs all dropped), with the same paired-bootstrap CIs and
verdicts as the headline layer. `entry` gives every layer the same record, the headline included.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Optional

import torch

from headsteer.artifacts.activations import Activations
from headsteer.config import SteerConfig
from headsteer.model import AdaViT
from headsteer.sae.topk import TopKSAE
from headsteer.steer.baselines import threshold_curve
from headsteer.steer.judge import Judging, judge_all
from headsteer.steer.names import LabelSource
from headsteer.steer.reach import ReachSettings
from headsteer.steer.sensitivity import layer_sensitivity
from headsteer.steer.stats import IndexSets
from headsteer.steer.summary import curves, random_band, unsteered
from headsteer.steer.sweep import Scorer, SweepGrid, run_sweep
from headsteer.steer.tails import OutcomeCache, make_tail
from headsteer.steer.uncertainty import Bootstrap


@dataclass
class LayerEntry:
    """One layer's record in `layer_study` (steer metrics) and `by_layer` (results.json), in this key order."""

    layer: int
    """The block index of the steered layer."""
    images: int
    """Test images the layer was studied on."""
    alphas: list[float]
    """The alpha grid A of the layer's curves."""
    unsteered: dict
    """{"accuracy", "head_usage"} of the unsteered model on those images."""
    curves: dict
    """{strategy: curve} with true labels, in the headline mode (`summary.curves`)."""
    random_band: Optional[dict]
    """The band of the random draws around the `random` curve (`summary.random_band`)."""
    threshold: dict
    """The threshold baseline's points (`ThresholdCurve.summary`)."""
    verdicts: dict
    """{strategy: verdicts against each baseline} with true labels, in the headline mode."""
    sensitivity: dict
    """The layer's head sensitivity (`LayerSensitivity.as_dict`)."""
    seconds: float
    """Wall time spent on the layer."""

    def as_dict(self) -> dict:
        """The record as results.json holds it."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def study_layer(
    model: AdaViT,
    layer: int,
    sae: TopKSAE,
    sets: IndexSets,
    test: Activations,
    tokens: torch.Tensor,
    sc: SteerConfig,
    seed: int,
) -> dict:
    """Sweep, threshold baseline, CIs, verdicts and sensitivity of `layer` (its SAE `sae`, its sets).

    test: the study's test rows at that layer; tokens: (N, T, d) tokens entering the layer for them."""
    t0 = time.time()
    cache = OutcomeCache(make_tail(model, layer, [tokens]), sc.batch_size)
    scorer = Scorer(cache, test, layer, model.pruned_layers)
    grid = SweepGrid([sc.mode], [LabelSource.TRUE], sc.strategies, sorted({*map(float, sc.study_alphas), 0.0}))
    rs = ReachSettings.of(sc) if sc.reach else None
    res = run_sweep(model, sae, scorer, test, sets, grid, sc.batch_size, sc.random_draws, rs)
    with torch.inference_mode():
        logits = model.decisions[str(layer)](test.cls.to(sae.W_dec.device))
        threshold = threshold_curve(scorer, logits, sc.threshold_levels)
    boot = Bootstrap.draw(len(test), sc.bootstrap, seed)
    sens = layer_sensitivity(cache, test.labels, test.predictions)
    base = unsteered(test.predictions, test.labels, test.masks[:, layer], int(sets.per_class.shape[0]))
    judging = Judging(boot, threshold, {}, sc.stake_floor_pts, sc.low_usage_loss_pts)
    return LayerEntry(
        layer=layer,
        images=len(test),
        alphas=grid.alphas,
        unsteered={key: base[key] for key in ("accuracy", "head_usage")},
        curves=curves(res, sc.mode, boot)[LabelSource.TRUE],
        random_band=random_band(res, sc.mode),
        threshold=threshold.summary(),
        verdicts=judge_all(res, judging, sets.class_conditioned)[sc.mode][LabelSource.TRUE],
        sensitivity=sens.as_dict(),
        seconds=round(time.time() - t0, 2),
    ).as_dict()
