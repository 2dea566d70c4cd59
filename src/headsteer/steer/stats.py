"""Latent activation frequencies (TRAIN set) and the index sets S of the steering strategies."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from headsteer.artifacts.io import write_tensors
from headsteer.core.classwise import class_mean
from headsteer.steer.names import STRATEGY_NAMES, Strategy

STRATEGIES = STRATEGY_NAMES


@dataclass
class LatentFrequencies:
    per_class: torch.Tensor
    """(C, n) fraction of class-c samples on which latent i fires (z_i > 0)."""
    overall: torch.Tensor
    """(n,) fraction of all samples on which latent i fires."""
    counts: torch.Tensor
    """(C,) samples per class."""


def latent_frequencies(active: torch.Tensor, labels: torch.Tensor, num_classes: int) -> LatentFrequencies:
    """active: (N, n) bool (z > 0); labels: (N,)."""
    a = active.float()
    counts = torch.bincount(labels, minlength=num_classes).float()
    return LatentFrequencies(per_class=class_mean(a, labels, num_classes), overall=a.mean(0), counts=counts)


@dataclass
class IndexSets:
    """S for every strategy; class-conditioned strategies hold one set per class."""

    per_class: torch.Tensor
    """(C, |S|) top-|S| most frequent latents of each class."""
    global_: torch.Tensor
    """(|S|,) top-|S| most frequent latents over all classes."""
    random_draws: torch.Tensor
    """(R, |S|) independently drawn uniform latent sets (seeded); draw 0 is `random`."""
    per_class_specific: torch.Tensor
    """(C, |S|) latents of each class ranked by lift = class frequency / overall frequency, among
    latents firing on at least `min_class_freq` of the class (others fill in by frequency)."""
    custom: dict[str, torch.Tensor] = field(default_factory=dict)
    """{name: (|S_name|,) latent ids} of the user's own sets (steer.custom_sets), the same for every image."""

    @property
    def random(self) -> torch.Tensor:
        """(|S|,) the first random draw."""
        return self.random_draws[0]

    def get(self, strategy: str) -> torch.Tensor:
        if strategy in self.custom:
            return self.custom[strategy]
        return self.global_ if strategy == Strategy.GLOBAL else getattr(self, strategy)

    @staticmethod
    def class_conditioned(strategy: str) -> bool:
        """Whether the strategy's set depends on the image's class (so on the label source)."""
        return strategy in (Strategy.PER_CLASS, Strategy.PER_CLASS_SPECIFIC)

    def max_size(self) -> int:
        """The largest |S| of any strategy (steering candidates must cover it)."""
        return max([int(self.global_.numel())] + [int(s.numel()) for s in self.custom.values()])

    def masks(self, strategy: str, classes: torch.Tensor, n_latents: int) -> torch.Tensor:
        """(N, n) bool: which latents are amplified for each sample, given its class (N,)."""
        return self.masks_of(self.get(strategy), classes, n_latents)

    def indices(self, strategy: str, classes: torch.Tensor) -> torch.Tensor:
        """(N, |S|) latent indices amplified for each sample, given its class (N,)."""
        return self.indices_of(self.get(strategy), classes)

    @staticmethod
    def indices_of(s: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """(N, |S|) indices of a set s: (|S|,) for every sample, or (C, |S|) picked by class (N,)."""
        return s.expand(classes.shape[0], -1) if s.ndim == 1 else s[classes]

    @staticmethod
    def masks_of(s: torch.Tensor, classes: torch.Tensor, n_latents: int) -> torch.Tensor:
        """(N, n) bool masks of a set s: (|S|,) for every sample, or (C, |S|) picked by class (N,)."""
        idx = IndexSets.indices_of(s, classes)  # (N, |S|)
        return torch.zeros(idx.shape[0], n_latents, dtype=torch.bool).scatter_(1, idx, True)


def index_sets(
    freqs: LatentFrequencies, size: int, seed: int, min_class_freq: float = 0.05, random_draws: int = 1
) -> IndexSets:
    n = freqs.overall.shape[0]
    size = min(size, n)
    per_class = freqs.per_class.topk(size, dim=1).indices
    global_ = freqs.overall.topk(size).indices
    random = draw_random_sets(n, size, random_draws, seed)
    lift = freqs.per_class / freqs.overall.clamp(min=1e-12)[None]  # (C, d_sae)
    eligible = freqs.per_class >= min_class_freq
    # eligible latents by lift first, then the rest by frequency (a score offset keeps the two apart)
    score = torch.where(eligible, lift + 1e6, freqs.per_class)
    specific = score.topk(size, dim=1).indices
    return IndexSets(per_class=per_class, global_=global_, random_draws=random, per_class_specific=specific)


def draw_random_sets(n_latents: int, size: int, draws: int, seed: int) -> torch.Tensor:
    """(draws, size) uniformly drawn latent sets, successive permutations of one generator seeded with
    `seed`: draw 0 is the same set whatever the number of draws."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n_latents, generator=g)[:size] for _ in range(draws)])


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    sa, sb = set(a.tolist()), set(b.tolist())
    return len(sa & sb) / max(1, len(sa | sb))


def overlap_frac(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a ∩ b| / |a|."""
    sa, sb = set(a.tolist()), set(b.tolist())
    return len(sa & sb) / max(1, len(sa))


def class_overlap(sets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, |S|) per-class sets -> (C, C) IoU and (C, C) |∩|/|S| matrices."""
    C, n = sets.shape[0], int(sets.max()) + 1
    m = torch.zeros(C, n).scatter_(1, sets, 1.0)
    inter = m @ m.T
    size = m.sum(1)
    union = size[:, None] + size[None, :] - inter
    return inter / union.clamp(min=1), inter / size[:, None].clamp(min=1)


def latent_sets(sc, seed: int, sae, train, C: int, path: Path, custom: dict[str, list[int]]) -> IndexSets:
    """Latent frequencies and index sets from the TRAIN `Activations` (plus the `custom` sets) for steer config
    `sc`, saved to `path`."""
    device = sae.W_dec.device
    with torch.inference_mode():
        active = torch.cat([(sae.encode(xb.to(device)) > 0).cpu() for xb in train.cls.split(sc.batch_size)])
    freqs = latent_frequencies(active, train.labels, C)
    sets = index_sets(freqs, sc.set_size or sae.k, seed, sc.min_class_freq, sc.random_draws)
    for name, ids in custom.items():  # ids < d_sae: checked up front (model.configured.check_up_front)
        sets.custom[name] = torch.tensor(ids, dtype=torch.long)
    write_tensors(
        path,
        {
            "freq_per_class": freqs.per_class,
            "freq_overall": freqs.overall,
            "set_per_class": sets.per_class,
            "set_global": sets.global_,
            "set_random": sets.random.clone(),
            "set_random_draws": sets.random_draws,
            "set_per_class_specific": sets.per_class_specific,
            **{f"set_custom.{name}": ids for name, ids in sets.custom.items()},
        },
    )
    return sets
