"""Checks of config values beyond their types, called by each section's ``__post_init__``: every number
in its range (one table, `RANGES`), every float finite, and no setting the chosen dataset ignores.

A wrong value is one line naming the key, its value and what it may be, before any stage folder is made.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from headsteer.core.errors import HeadsteerError

ALL = ("[1, inf)", "all")
DEFAULT = ("[1, inf)", "the architecture's default")
RANGES: dict[str, dict[str, Any]] = {
    "": {"seed": "[0, inf)", "threads": ("[1, inf)", "torch's default")},
    "data": {
        "num_workers": "[0, inf)",
        "image_size": ("[1, inf)", "the images' own size"),
        "train_limit": ("[1, inf)", "all images"),
        "test_limit": ("[1, inf)", "all images"),
    },
    "model": {
        **dict.fromkeys(("img_size", "patch_size", "embed_dim", "depth", "num_heads"), DEFAULT),
        "mlp_ratio": ("(0, inf)", "the architecture's default"),
        "drop_path_rate": "[0, 1)",
        "decision_hidden": "[0, inf)",
        "tau": "(0, inf)",
    },
    "prune": {
        **dict.fromkeys(("dense_epochs", "joint_epochs", "checkpoint_every"), "[0, inf)"),
        **dict.fromkeys(("batch_size", "eval_batch_size"), "[1, inf)"),
        **dict.fromkeys(("dense_lr", "joint_lr", "decision_lr_scale"), "(0, inf)"),
        **dict.fromkeys(("weight_decay", "usage_weight"), "[0, inf)"),
        **dict.fromkeys(("warmup_frac", "label_smoothing"), "[0, 1)"),
        **dict.fromkeys(("noise_initial", "noise_final"), "[0, 1]"),
        "max_steps_per_epoch": ("[1, inf)", "full epochs"),
    },
    "extract": dict.fromkeys(("batch_size", "chunk_size"), "[1, inf)"),
    "sae": {
        **dict.fromkeys(("expansion", "k", "epochs", "batch_size", "dead_window"), "[1, inf)"),
        **dict.fromkeys(("lr", "decoder_lr_scale"), "(0, inf)"),
        "d_sae": ("[1, inf)", "expansion x d_in"),
        "auxk_coef": "[0, inf)",
        "k_aux": ("[1, inf)", "d_in // 2"),
        "grad_clip": ("(0, inf)", "no clipping"),
    },
    "steer": {
        **dict.fromkeys(("batch_size", "top_n", "random_draws", "bootstrap"), "[1, inf)"),
        "threshold_levels": "[2, inf)",
        "set_size": ("[1, inf)", "sae.k"),
        "min_class_freq": "[0, 1]",
        "study_images": ("[2, inf)", "all"),
        **dict.fromkeys(("effect_images", "oracle_images", "sensitivity_images"), ALL),
        "reach_factor": "(1, inf)",
        **dict.fromkeys(("reach_tol", "reach_cap"), "(0, inf)"),
        **dict.fromkeys(("stake_floor_pts", "low_usage_loss_pts"), "[0, inf)"),
        "fit_images": ("[8, inf)", "all"),
        "fit_holdout": "(0, 1)",
        **dict.fromkeys(("fit_steps", "learned_steps", "learned_refit_steps"), "[1, inf)"),
        **dict.fromkeys(("fit_lr", "fit_usage_weight"), "(0, inf)"),
        "learned_l1": "[0, inf)",
        **dict.fromkeys(("low_usage_max", "focus_usage"), "[0, 1]"),
    },
}
"""{section: {field: interval, or (interval, what null means)}}; the top level is section ''."""


def _inside(value: float, interval: str) -> bool:
    lo, hi = (float(part.strip(" [()]")) for part in interval.split(","))
    above = value >= lo if interval[0] == "[" else value > lo
    below = value <= hi if interval[-1] == "]" else value < hi
    return above and below


def _words(interval: str) -> str:
    """'[1, inf)' -> '>= 1', '(0, inf)' -> '> 0', else 'in [0, 1)'."""
    lo, hi = (part.strip(" [()]") for part in interval.split(","))
    if hi == "inf":
        return f"{'>=' if interval[0] == '[' else '>'} {lo}"
    return f"in {interval}"


def _nonfinite(value: Any) -> tuple[str, float] | None:
    """('' or '[i]', the value) of a NaN or infinity in a float or a list of floats; None when finite."""
    if isinstance(value, float) and not math.isfinite(value):
        return "", value
    if isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, float) and not math.isfinite(v):
                return f"[{i}]", v
    return None


def check_ranges(section: str, cfg: Any) -> None:
    """Refuse a non-finite float anywhere in the section `cfg`, and a number outside its RANGES entry."""
    prefix = f"{section}." if section else ""
    for f in dataclasses.fields(cfg):
        bad = _nonfinite(getattr(cfg, f.name))
        if bad:
            raise HeadsteerError(f"{prefix}{f.name}{bad[0]}={bad[1]} is not a finite number; give a number")
    for name, entry in RANGES[section].items():
        interval, null = (entry, None) if isinstance(entry, str) else entry
        value = getattr(cfg, name)
        if value is not None and not _inside(value, interval):
            also = f" (or null for {null})" if null else ""
            raise HeadsteerError(f"{prefix}{name}={value} must be {_words(interval)}{also}")


ONLY_FOR = {
    "image_size": (("imagefolder", "hf"), None),
    "in_memory": (("imagefolder", "hf"), "auto"),
    "image_column": (("hf",), "image"),
    "label_column": (("hf",), "label"),
    "download": (("cifar100",), False),
}
"""{data field: (the datasets that use it, its default)}: another dataset would ignore a changed value.
in_memory=true is what fashion_mnist and cifar100 do anyway, so only false is refused there."""


def check_dataset_settings(data: Any) -> None:
    """Refuse a data setting the chosen dataset would ignore (data.image_size for Fashion-MNIST, ...)."""
    for name, (datasets, default) in ONLY_FOR.items():
        value = getattr(data, name)
        if data.name in datasets or value == default or (name == "in_memory" and value is True):
            continue
        fix = "model.img_size sets the model's input size, to which every image is resized; " * (name == "image_size")
        raise HeadsteerError(
            f"data.{name}={value!r} does nothing for data.name={data.name} (only for {' and '.join(datasets)}); "
            f"{fix}remove data.{name}"
        )
