"""The model of a run: built from the config for training, or loaded trained from the run folder."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import timm
import torch

from headsteer.config import ExtractConfig, RunConfig
from headsteer.core.errors import HeadsteerError
from headsteer.data import BatchTransform, ImageDataset, check_classes, iterate, load_dataset
from headsteer.model.adavit import AdaViT
from headsteer.model.build import build_model, load_weights, meta_model, normalization
from headsteer.sae.topk import TopKSAE


@dataclass
class ConfiguredModel:
    model: AdaViT
    """The configured AdaViT on the run's device (fresh or pretrained weights)."""
    train_tf: BatchTransform
    """Training batch transform (augmentation as configured)."""
    test_tf: BatchTransform
    """Evaluation batch transform (no augmentation)."""


@dataclass
class PrunedModel:
    data: ImageDataset
    """The run's dataset."""
    model: AdaViT
    """The trained model of RUN/prune, in eval mode."""
    test_tf: BatchTransform
    """Evaluation batch transform."""


def build_for(cfg: RunConfig, ds: ImageDataset, device: torch.device) -> ConfiguredModel:
    """The configured model on `device` (seeded init), and its train / eval batch transforms."""
    check_classes(ds, cfg.data)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, len(ds.classes), ds.in_chans).to(device)
    side = ds.native_size
    check_image_side(side, model, f"the images are {side} x {side},", "set data.image_size=N to resize them")
    if cfg.model.compile:
        compile_blocks(model)
    img_size = model.vit.patch_embed.img_size[0]
    mean, std = normalization(model, cfg.model, ds.mean, ds.std)
    pretrained = {}  # a pretrained model's eval resize and crop, from timm's data config
    if cfg.model.loads_pretrained:
        data_cfg = timm.data.resolve_model_data_config(model.vit)
        pretrained = {"crop_pct": data_cfg["crop_pct"], "interpolation": data_cfg["interpolation"]}
    return ConfiguredModel(
        model,
        BatchTransform(
            img_size, mean, std, augment=cfg.data.augment, interpolation=pretrained.get("interpolation", "bilinear")
        ),
        BatchTransform(img_size, mean, std, **pretrained),
    )


def compile_blocks(model: AdaViT) -> None:
    """torch.compile, in place, every block's attention and MLP (the parts that hold the compute; the
    decision networks and the per-block glue stay eager). State-dict keys are unchanged."""
    for blk in model.vit.blocks:
        blk.attn.compile()
        blk.mlp.compile()


def load_pruned(cfg: RunConfig, device: torch.device) -> PrunedModel:
    """The dataset and the trained model that the prune stage wrote to RUN/prune/model.safetensors."""
    ds = load_dataset(cfg.data)
    built = build_for(cfg, ds, device)
    load_weights(built.model, Path(cfg.out) / "prune" / "model.safetensors")
    return PrunedModel(ds, built.model.eval(), built.test_tf)


def captured_tokens(
    cfg: RunConfig, pm: PrunedModel, layer: int, rows: torch.Tensor | None = None, split: str = "test"
) -> torch.Tensor:
    """(N, T, d) tokens entering `layer` over the images of `split` (or its rows given), on the CPU."""
    device = next(pm.model.parameters()).device
    whole = getattr(pm.data, split)
    part = whole if rows is None else type(whole)(whole.images[rows], whole.labels[rows])
    with torch.inference_mode():
        return torch.cat(
            [
                pm.model.tokens_entering(pm.test_tf(images).to(device), layer).cpu()
                for images, _ in iterate(part, cfg.prune.eval_batch_size)
            ]
        )


def study_layers(model: AdaViT, cfg: ExtractConfig) -> tuple[int, list[int]]:
    """(headline layer, sorted layers to extract): extract.layers ('all' = every pruned layer after 0)
    plus the headline extract.layer, each checked to be steerable."""
    headline = model.steerable_layer(cfg.layer, "extract.layer")
    if cfg.layers == "all":
        listed = [i for i in model.pruned_layers if i > 0]
    else:
        listed = [model.steerable_layer(i, "extract.layers entry") for i in cfg.layers or []]
    return headline, sorted({headline, *listed})


def shape_only(cfg: RunConfig) -> AdaViT:
    """The configured model built on the meta device (no weights, no memory): its shape alone."""
    try:
        return meta_model(cfg.model)
    except AssertionError:  # timm's Attention: 'dim should be divisible by num_heads'
        width = meta_model(replace(cfg.model, num_heads=1)).embed_dim
        heads = cfg.model.num_heads or meta_model(replace(cfg.model, embed_dim=None)).num_heads
        raise HeadsteerError(
            f"model.embed_dim={width} is not divisible by model.num_heads={heads}; every head gets "
            "embed_dim / num_heads channels: change one of them"
        ) from None


def check_image_side(side: int, model: AdaViT, what: str, fix: str) -> None:
    """Refuse images (`what`, `side` pixels wide) smaller than one patch of the model: each would hold
    less detail than a single token, then be scaled up to the model's input."""
    patch, img = model.vit.patch_embed.patch_size[0], model.vit.patch_embed.img_size[0]
    if side < patch:
        raise HeadsteerError(
            f"{what} smaller than one {patch} x {patch} patch of the model, so every image would hold less detail "
            f"than one token before being scaled up to the model's {img} x {img} input; {fix} (at least {patch})"
        )


def check_up_front(cfg: RunConfig) -> None:
    """Every check that needs the model's shape but no data or weights, before any stage trains: the
    geometry, the steered layers, data.image_size against the patch size, sae.k and steer.set_size
    against the SAE's width d_sae."""
    model = shape_only(cfg)
    study_layers(model, cfg.extract)
    if cfg.data.image_size is not None:
        size = cfg.data.image_size
        check_image_side(size, model, f"data.image_size={size} makes images {size} x {size},", "raise it")
    d_sae = cfg.sae.d_sae or cfg.sae.expansion * model.embed_dim
    with torch.device("meta"):
        TopKSAE(model.embed_dim, d_sae, cfg.sae.k)  # the SAE's own check of k against d_sae
    for name, ids in cfg.steer.custom_sets.items():
        if max(ids) >= d_sae:
            raise HeadsteerError(
                f"steer.custom_sets.{name} holds latent {max(ids)}, but the SAE has {d_sae} latents "
                f"(ids 0..{d_sae - 1}); fix the ids"
            )
    if cfg.steer.set_size is not None and cfg.steer.set_size > d_sae:
        raise HeadsteerError(
            f"steer.set_size={cfg.steer.set_size} is larger than the SAE's d_sae={d_sae} (d_in {model.embed_dim}); "
            "lower steer.set_size (null = sae.k) or raise sae.expansion / sae.d_sae"
        )
