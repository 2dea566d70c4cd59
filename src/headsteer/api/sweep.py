"""`Run.sweep`: one strategy's curve over alpha on the run's own TEST split, computed as the steer stage
computes its curves (`steer.sweep.run_sweep`, through the layer's cached tail `steer.tails.OutcomeCache`),
from the same stored activations, index sets and batch sizes, so its numbers equal results.json's. At the
headline layer the cache starts from the outcomes the stage computed, so the run's own grid needs no
forward pass at all."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

from headsteer.api.inputs import choice, finite
from headsteer.artifacts.activations import Activations, load_split
from headsteer.artifacts.io import read_tensors
from headsteer.core.errors import HeadsteerError
from headsteer.model.configured import captured_tokens
from headsteer.steer.alphas import alpha_grid
from headsteer.steer.names import LABEL_SOURCE_NAMES, Strategy
from headsteer.steer.stats import IndexSets
from headsteer.steer.steering import MODES
from headsteer.steer.sweep import Scorer, SweepGrid, run_sweep
from headsteer.steer.tails import OutcomeCache, make_tail

if TYPE_CHECKING:
    from headsteer.api.run import Run

LABEL_SOURCES = LABEL_SOURCE_NAMES
LATENTS = "(latents)"
"""The name under which a sweep's own `latents` join the stored index sets (no set can be named so)."""


class LazyTail:
    """The layer's tail (`steer.tails.make_tail`), built on the first outcome the cache lacks: a sweep that
    the steer stage's stored outcomes answer never pays for the forward over the test split it takes."""

    def __init__(self, run: "Run", layer: int, test: Activations) -> None:
        self.run, self.layer, self.model = run, layer, run.model
        self.decision_input = test.cls.to(next(run.model.parameters()).device)  # (N, d): N, and the device
        self._tail = None

    def run_masked(self, mask: torch.Tensor, idx) -> tuple[torch.Tensor, torch.Tensor]:
        if self._tail is None:
            tokens = captured_tokens(self.run.config, self.run._pruned, self.layer)  # (N, T, d), as the stage's
            self._tail = make_tail(self.model, self.layer, [tokens])
        return self._tail.run_masked(mask, idx)


class SweepTails:
    """Per layer, the scorer of the run's test split (its outcome cache, seeded at the headline layer with
    the (image, head pattern) outcomes the steer stage computed, `steer/outcomes.safetensors`) and the
    split's stored activations, built on first use."""

    def __init__(self) -> None:
        self._by_layer: dict[int, tuple[Scorer, Activations]] = {}

    def get(self, run: "Run", layer: int) -> tuple[Scorer, Activations]:
        if layer not in self._by_layer:
            test = load_split(run.path, "test", layer)
            cache = OutcomeCache(LazyTail(run, layer, test), run.config.steer.batch_size)
            stored = run.path / "steer" / "outcomes.safetensors"  # written by the stage since it exists
            if layer == run.layer and stored.is_file():
                cache.add_pairs(read_tensors(stored))
            self._by_layer[layer] = (Scorer(cache, test, layer, run.model.pruned_layers), test)
        return self._by_layer[layer]


def stored_sets(t: dict) -> IndexSets:
    """The index sets of a `steer/latents*.safetensors` file, custom sets included (they size the
    steering candidates, as in the stage)."""
    custom = {key[len("set_custom.") :]: v for key, v in t.items() if key.startswith("set_custom.")}
    draws = t.get("set_random_draws", t["set_random"][None])
    return IndexSets(t["set_per_class"], t["set_global"], draws, t["set_per_class_specific"], custom)


def _alphas(run: "Run", alphas) -> list[float]:
    if alphas is None:
        return alpha_grid(run.config.steer)
    if isinstance(alphas, (str, bytes)) or not isinstance(alphas, Sequence) or not alphas:
        raise HeadsteerError(f"alphas={alphas!r} must be a non-empty list of numbers (e.g. [0, 0.5, 1.5])")
    return [finite(a, f"alphas[{i}]") for i, a in enumerate(alphas)]


def sweep_rows(run: "Run", strategy, alphas, latents, mode, label_source, layer, frame) -> Any:
    """`Run.sweep` (see there): the rows, as a list of dicts or a DataFrame."""
    layer = run._layer(layer)
    mode = choice(run.config.steer.mode if mode is None else mode, MODES, "mode")
    label_source = choice(label_source, LABEL_SOURCES, "label_source")
    alphas = _alphas(run, alphas)
    sets = stored_sets(run._latent_file(layer))
    if latents is not None:
        sets.custom[LATENTS] = run._chosen_set(layer, strategy, latents, None)
        name, label = LATENTS, "latents"
    else:
        names = [n for n in run.index_sets(layer) if n != "random_draws"]
        name = label = choice(Strategy.PER_CLASS if strategy is None else strategy, names, "strategy")
    scorer, test = run._tails.get(run, layer)
    sc = run.config.steer
    grid = SweepGrid([mode], [label_source], [name], alphas)
    res = run_sweep(run.model, run.sae(layer).sae, scorer, test, sets, grid, sc.batch_size, sc.random_draws)
    curves = (t[0, 0, 0].tolist() for t in (res.accuracy, res.usage_layer, res.usage_overall))  # (A,) each
    cols = zip(alphas, *curves, strict=True)
    rows = [
        {"strategy": label, "mode": mode, "label_source": label_source, "alpha": a, "accuracy": acc}
        | {"head_usage": usage, "head_usage_overall": overall}
        for a, acc, usage, overall in cols
    ]
    return table(rows, frame)


def table(rows: list[dict], frame: bool | None) -> Any:
    """`rows` as a pandas DataFrame (frame=True, or None when pandas is installed), else as they are."""
    if frame is not None and not isinstance(frame, bool):
        raise HeadsteerError(f"frame={frame!r} must be True, False or None")
    if frame is False:
        return rows
    try:
        import pandas
    except ImportError:
        if frame:
            raise HeadsteerError(
                "frame=True needs pandas (pip install pandas); frame=False gives a list of dicts"
            ) from None
        return rows
    return pandas.DataFrame(rows)
