"""`Run.sweep`: one strategy's curve over alpha on the run's own TEST split, computed as the steer stage
computes its curves (`steer.sweep.run_sweep`, through the layer's cached tail `steer.tails.OutcomeCache`),
from the same stored activations, index sets and batch sizes, so its numbers equal results.json's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from headsteer.activations import Activations, load_split
from headsteer.api.inputs import choice, finite
from headsteer.errors import HeadsteerError
from headsteer.model.configured import captured_tokens
from headsteer.steer.alphas import alpha_grid
from headsteer.steer.stats import IndexSets
from headsteer.steer.steering import MODES
from headsteer.steer.sweep import Scorer, SweepGrid, run_sweep
from headsteer.steer.tails import OutcomeCache, make_tail

if TYPE_CHECKING:
    from headsteer.api.run import Run

LABEL_SOURCES = ("true", "predicted")
LATENTS = "(latents)"
"""The name under which a sweep's own `latents` join the stored index sets (no set can be named so)."""


class SweepTails:
    """Per layer, the scorer of the run's test split (its outcome cache: tokens entering the layer and
    each (image, head pattern) outcome met so far) and the split's stored activations, built on first use."""

    def __init__(self) -> None:
        self._by_layer: dict[int, tuple[Scorer, Activations]] = {}

    def get(self, run: "Run", layer: int) -> tuple[Scorer, Activations]:
        if layer not in self._by_layer:
            test = load_split(run.path, "test", layer)
            tokens = captured_tokens(run.config, run._pruned, layer)  # (N, T, d), as the steer stage takes them
            cache = OutcomeCache(make_tail(run.model, layer, [tokens]), run.config.steer.batch_size)
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
        name = label = choice("per_class" if strategy is None else strategy, names, "strategy")
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
