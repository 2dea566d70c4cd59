"""`load_run` and `Run`: a run's config, results, model, data and SAEs, and one-call steering, threshold
shifts, forward passes on images, and alpha sweeps on the run's test split."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from headsteer.api.folder import open_folder
from headsteer.api.inputs import (
    ImageInput,
    as_batch,
    as_batch_size,
    as_labels,
    block_index,
    check_layer,
    finite,
    latent_ids,
)
from headsteer.api.sets import BUILT_IN_SETS, named_set
from headsteer.api.strengths import LearnedStrengths, learned_strengths, steer_strengths
from headsteer.api.sweep import SweepTails, sweep_rows
from headsteer.api.types import LatentStats, Outputs, RunSAE
from headsteer.artifacts.activations import extracted_layers
from headsteer.artifacts.io import read_json, read_tensors
from headsteer.config import RunConfig
from headsteer.core.errors import HeadsteerError
from headsteer.core.runtime import resolve_device
from headsteer.data import ImageDataset
from headsteer.model import AdaViT
from headsteer.model.configured import PrunedModel, load_pruned
from headsteer.sae.topk import TopKSAE, run_folder
from headsteer.steer.baselines import shifted_forward
from headsteer.steer.names import LabelSource, Mode, Strategy
from headsteer.steer.steering import MODES, Candidates, steer_sparse

__all__ = ["load_run", "Run"]


def load_run(run_dir: str | Path, *, device: str | None = None, data_root: str | None = None) -> "Run":
    """Open the run folder `run_dir` (what `headsteer run CONFIG` wrote); nothing heavy is loaded yet.

    Every finished stage is checked as `headsteer run` checks it (its artifacts against the digests of
    its done.json, its inputs against the stages before it): a folder whose stages disagree, or whose
    files changed, is refused with one line. A stage that has not finished is not read.

    `device`: 'cpu', 'cuda', 'cuda:N' (default: cuda when available, else cpu). `data_root`: where the
    run's dataset is on this machine, when it is no longer at the `data.root` the run recorded."""
    path, cfg, stages = open_folder(run_dir, data_root)
    return Run(path, cfg, resolve_device(device or "auto"), stages)


class Run:
    """A run: its config, results, model, data and SAEs, and one-call steering on images.

    Make one with `load_run`. Layers default to the headline layer (`extract.layer`); `layer=` picks
    another extracted one (the layer study's)."""

    def __init__(self, path: Path, config: RunConfig, device: torch.device, stages: list[str]) -> None:
        self.path = path
        """The run folder."""
        self.config = config
        """The run's resolved config, rebuilt from the folder (`out` is the folder)."""
        self.device = device
        """Where the model and the SAEs run."""
        self.stages = stages
        """The stages that finished (and were checked), in pipeline order."""
        self._saes: dict[int, RunSAE] = {}
        self._tails = SweepTails()

    def __repr__(self) -> str:
        layer = f", layer={self.layer}" if "extract" in self.stages else ""
        return f"Run('{self.path}', stages={'+'.join(self.stages)}{layer}, device={self.device})"

    def _need(self, stage: str) -> Path:
        """RUN/<stage>, when that stage finished; else one line saying how to finish it."""
        if stage not in self.stages:
            raise HeadsteerError(
                f"{self.path} has no finished {stage} stage (finished: {', '.join(self.stages)}); finish the run "
                f"with `headsteer run CONFIG --out {self.path}`"
            )
        return self.path / stage

    @cached_property
    def results(self) -> dict:
        """`report/results.json` (see the results schema in the docs)."""
        return read_json(self._need("report") / "results.json")

    @cached_property
    def classes(self) -> list[str]:
        """Class names, indexed by label."""
        return read_json(self._need("prune") / "metrics.json")["classes"]

    @cached_property
    def layer(self) -> int:
        """The headline layer: the block whose decision the full analysis steers."""
        self._need("extract")
        return extracted_layers(self.path)[0]

    @cached_property
    def layers(self) -> list[int]:
        """Every layer with an SAE (the headline layer and the layer study's)."""
        self._need("extract")
        return extracted_layers(self.path)[1]

    @cached_property
    def depth(self) -> int:
        """Number of blocks of the model."""
        return read_json(self._need("prune") / "metrics.json")["num_layers"]

    def _layer(self, layer: int | None) -> int:
        return check_layer(layer, self.layer, self.layers, self.depth)

    @cached_property
    def _pruned(self) -> PrunedModel:
        self._need("prune")
        return load_pruned(self.config, self.device)

    @property
    def model(self) -> AdaViT:
        """The trained model of `prune/model.safetensors`, in eval mode, on `device`."""
        return self._pruned.model

    @property
    def data(self) -> ImageDataset:
        """The run's dataset (uint8 images, labels and class names of both splits)."""
        return self._pruned.data

    def transform(self, images: ImageInput) -> torch.Tensor:
        """The model's input (B, C, h, w) on `device`: pixels (uint8 0..255 or float 0..1, as (B, C, H, W),
        (C, H, W) or (H, W); PIL images or numpy arrays) resized and normalised as in evaluation."""
        return self._model_input(as_batch(images, self.data.in_chans))

    def _model_input(self, batch: torch.Tensor) -> torch.Tensor:
        pixels = batch if batch.dtype == torch.uint8 else batch * 255  # float pixels: exactly as uint8 ones
        return self._pruned.test_tf(pixels).to(self.device)

    def sae(self, layer: int | None = None) -> RunSAE:
        """The SAE of `layer` (default: the headline layer), with its SAELens folder."""
        self._need("sae")
        layer = self._layer(layer)
        if layer not in self._saes:
            sae = TopKSAE.of_run(self.path, layer).to(self.device).eval()
            self._saes[layer] = RunSAE(sae, run_folder(self.path, layer), layer)
        return self._saes[layer]

    def _latent_file(self, layer: int | None) -> dict[str, torch.Tensor]:
        layer = self._layer(layer)
        name = "latents.safetensors" if layer == self.layer else f"latents_layer_{layer}.safetensors"
        return read_tensors(self._need("steer") / name)

    def latents(self, layer: int | None = None) -> LatentStats:
        """Latent frequencies (TRAIN split), lift and head effects of `layer`'s SAE."""
        t = self._latent_file(layer)
        freq_c, freq = t["freq_per_class"], t["freq_overall"]
        lift = freq_c / freq.clamp(min=1e-12)  # (C, d_sae)
        return LatentStats(freq_c, freq, lift, t.get("head_effect"), t.get("head_effect_latents"))

    def index_sets(self, layer: int | None = None) -> dict[str, torch.Tensor]:
        """The latent sets S by name: per_class and per_class_specific (C, |S|), global (|S|,), random
        (|S|,: the first of its `steer.random_draws` draws; `random_draws` (R, |S|) holds them all) and, at
        the headline layer, the config's `steer.custom_sets` (their own sizes)."""
        t = self._latent_file(layer)
        sets = {name: t[key] for name, key in BUILT_IN_SETS.items()}
        sets["random_draws"] = t.get("set_random_draws", sets[Strategy.RANDOM][None])
        if self._layer(layer) != self.layer:
            return sets
        for name, ids in (getattr(self.config.steer, "custom_sets", {}) or {}).items():
            if name in sets:
                raise HeadsteerError(f"steer.custom_sets has a set named '{name}', like a built-in one; rename it")
            sets[name] = latent_ids(ids, self.sae().sae.d_sae, f"steer.custom_sets.{name}")
        return sets

    def forward(self, images: ImageInput, *, layer: int | None = None, batch_size: int | None = None) -> Outputs:
        """The unsteered model on `images`; `usage` is that of `layer` (default: the headline layer)."""
        layer = self.model.resolve_layer(self.layer if layer is None else block_index(layer), "layer")
        return self._batches(as_batch(images, self.data.in_chans), layer, batch_size, lambda x, r: self._unsteered(x))

    def _unsteered(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(x)
        return out.logits, out.masks

    def steer(
        self,
        images: ImageInput,
        *,
        layer: int | None = None,
        strategy: str | None = None,
        latents: Sequence[int] | Sequence[Sequence[int]] | torch.Tensor | None = None,
        labels: Sequence[int] | torch.Tensor | None = None,
        alpha: float | None = None,
        mode: str | None = None,
        draw: int | None = None,
        strengths: LearnedStrengths | torch.Tensor | None = None,
        batch_size: int | None = None,
    ) -> Outputs:
        """Amplify a latent set S by `alpha` in the SAE code of `layer`'s CLS token and feed the decoded
        embedding to that layer's decision network (Eq. 5); the residual stream is left as it is. S is the index
        set `strategy` (a name of `index_sets`, default 'per_class') or the latent ids `latents`: (|S|,) for
        every image, or (C, |S|) one per class, each image's class from `labels` or else the unsteered
        prediction. `strategy='random'` steers with its draw `draw` (0..R-1; needed when R > 1; results.json
        averages the draws, as `sweep('random')` does). `mode`: 'pre_topk' (default, alpha 1.5), 'post_topk'
        or 'additive'. alpha = 0 is the SAE reconstruction. Or `strengths` alone: one per latent, (d_sae,) or
        (C, d_sae), latent j of the code scaled by 1 + strengths[j] (>= -1) as the `learned` strategy steers;
        a `LearnedStrengths` from `learned()` steers through the SAE it was fitted on."""
        layer = self._layer(layer)
        if strengths is not None:
            if strategy is not None or latents is not None or alpha is not None or mode is not None:
                raise HeadsteerError("give strengths alone: they replace strategy, latents, alpha and mode")
            return steer_strengths(self, as_batch(images, self.data.in_chans), layer, strengths, labels, batch_size)
        alpha, mode = finite(1.5 if alpha is None else alpha, "alpha"), Mode.PRE_TOPK if mode is None else mode
        if mode not in MODES:
            raise HeadsteerError(f"mode={mode!r} is not a steering mode; use one of {', '.join(MODES)}")
        batch = as_batch(images, self.data.in_chans)
        set_idx, sae = self._rows(batch, self._chosen_set(layer, strategy, latents, draw), labels), self.sae(layer).sae

        def run_batch(x: torch.Tensor, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
            set_b = set_idx[rows].to(self.device)  # (b, |S|) of the (N, |S|) latent indices

            def steered(cls: torch.Tensor) -> torch.Tensor:  # (b, d) -> (b, d)
                cand = Candidates.of(sae.pre_acts(cls.float()), sae.k, set_b.shape[1])
                return sae.decode_sparse(*steer_sparse(cand, set_b, alpha, mode, sae.k)).to(cls.dtype)

            with self.model.override_decision_input(layer, steered):
                return self._unsteered(x)

        return self._batches(batch, layer, batch_size, run_batch)

    def _rows(self, batch: torch.Tensor, per: torch.Tensor, labels) -> torch.Tensor:
        """(N, ...) each image's row of `per`: (...) for every image, or (C, ...) indexed by its class (from
        `labels`, else the unsteered prediction)."""
        if per.ndim == 1:
            return per.expand(len(batch), -1)
        C = len(self.classes)
        classes = self.forward(batch).predictions if labels is None else as_labels(labels, len(batch), C)
        return per[classes]

    def learned(self, variant: str = Strategy.GLOBAL, target: float = 0.1, *, sae: str = "trained") -> LearnedStrengths:
        """The strengths the steer stage learned for `variant` ('global', 'per_class.true', 'per_class.predicted')
        at the fitted target usage nearest `target`, on the run's SAE or (sae='untrained') the random control;
        pass them to `steer(images, strengths=...)`."""
        return learned_strengths(self, variant, target, sae)

    def _chosen_set(self, layer: int, strategy, latents, draw) -> torch.Tensor:
        """The set S of a steer() or sweep() call: (|S|,) or (C, |S|) latent ids."""
        if latents is not None:
            if strategy is not None:
                raise HeadsteerError("give a strategy or latents, not both")
            return latent_ids(latents, self.sae(layer).sae.d_sae, "latents", len(self.classes))
        return named_set(self.index_sets(layer), layer, strategy, draw)

    def threshold(
        self, images: ImageInput, shift: float, *, layer: int | None = None, batch_size: int | None = None
    ) -> Outputs:
        """The threshold baseline: `layer` keeps head h when a_h + shift > 0, a_h its decision logits (no
        SAE, no class); shift = 0 is the unsteered model. Other layers decide as usual."""
        shift = finite(shift, "shift")
        layer = self.model.resolve_layer(self.layer if layer is None else block_index(layer), "layer")
        if layer not in self.model.pruned_layers:
            raise HeadsteerError(f"layer={layer} has no decision network; pruned layers: {self.model.pruned_layers}")
        batch = as_batch(images, self.data.in_chans)
        return self._batches(batch, layer, batch_size, lambda x, rows: shifted_forward(self.model, x, layer, shift))

    def _batches(
        self, batch: torch.Tensor, layer: int, batch_size: int | None, call: Callable[[torch.Tensor, slice], tuple]
    ) -> Outputs:
        """`call(model input, rows)` -> (logits, masks) over batches of `batch` (`as_batch`), as Outputs."""
        size = as_batch_size(batch_size, self.config.extract.batch_size)  # the extraction's: the same numbers
        logits, masks = [], []
        with torch.inference_mode():
            for lo in range(0, len(batch), size):
                rows = slice(lo, min(len(batch), lo + size))
                lg, m = call(self._model_input(batch[rows]), rows)
                logits.append(lg.float().cpu())
                masks.append(m.float().cpu())
        lg, m = torch.cat(logits), torch.cat(masks)
        pruned = self.model.pruned_layers
        return Outputs(lg, lg.argmax(1), m, layer, m[:, layer].mean(1), m[:, pruned].mean(dim=(1, 2)))

    def sweep(
        self,
        strategy: str | None = None,
        alphas: Sequence[float] | None = None,
        *,
        latents: Sequence[int] | Sequence[Sequence[int]] | torch.Tensor | None = None,
        mode: str | None = None,
        label_source: str = LabelSource.TRUE,
        layer: int | None = None,
        frame: bool | None = None,
    ) -> Any:
        """Accuracy and head usage of one strategy at every alpha of `alphas` (default: the run's grid) on the
        run's TEST split, as the steer stage computes its curves (equal to results.json's), from its saved outcomes.
        `strategy` (default 'per_class') or `latents` as in `steer`; 'random' averages its R draws.
        `label_source`: 'true' or 'predicted' (class-conditioned sets). `mode`: default `steer.mode`. Returns one
        row per alpha {strategy, mode, label_source, alpha, accuracy, head_usage, head_usage_overall} (Python
        floats): a pandas DataFrame when pandas is installed (frame=None) or asked for, else a list of dicts."""
        return sweep_rows(self, strategy, alphas, latents, mode, label_source, layer, frame)
