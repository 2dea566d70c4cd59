"""Build an AdaViT from a ModelConfig through timm (weights from the hub or a local file)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from headsteer.config import ModelConfig
from headsteer.core.errors import HeadsteerError
from headsteer.model.adavit import AdaViT
from headsteer.model.gated_attention import GatedAttention

GEOMETRY = ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio")


def _first_line_of_mismatch(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)


def _file_head_classes(path: Path) -> int | None:
    """Number of classes of the `head.weight` stored in a weights file, when it can be read cheaply."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return f.get_slice("head.weight").get_shape()[0] if "head.weight" in f.keys() else None
        if path.suffix in (".pth", ".pt", ".bin"):
            sd = torch.load(path, map_location="cpu", weights_only=True)
            sd = sd.get("state_dict", sd.get("model", sd)) if isinstance(sd, dict) else {}
            head = sd.get("head.weight")
            return int(head.shape[0]) if head is not None else None
    except Exception:  # unreadable: let timm's loader report it
        return None
    return None


UNSUPPORTED = (
    "model.arch='{arch}' is not a timm VisionTransformer with standard blocks and a CLS token ({kind}); "
    "choose e.g. vit_small_patch16_224, deit_small_patch16_224, deit3_small_patch16_224, "
    "vit_small_patch14_reg4_dinov2 or vit_base_patch16_clip_224"
)


def build_model(cfg: ModelConfig, num_classes: int, in_chans: int) -> AdaViT:
    """timm ViT with gated attention (weights loaded strictly by timm) + decision networks."""
    if cfg.arch not in timm.list_models():
        close = [m for m in timm.list_models("vit_*") if cfg.arch.split("_")[1:2] and cfg.arch.split("_")[1] in m][:8]
        raise HeadsteerError(
            f"unknown timm architecture model.arch='{cfg.arch}'; try e.g. "
            f"{', '.join(close or ['vit_tiny_patch16_224', 'vit_small_patch16_224'])}"
        )
    kwargs: dict = dict(
        num_classes=num_classes, in_chans=in_chans, attn_layer=GatedAttention, drop_path_rate=cfg.drop_path_rate
    )
    kwargs.update({k: getattr(cfg, k) for k in GEOMETRY if getattr(cfg, k) is not None})
    if cfg.loads_pretrained:
        kwargs["pretrained"] = True
        if cfg.pretrained_file is not None:
            path = Path(cfg.pretrained_file).expanduser().resolve()
            if not path.is_file():
                raise HeadsteerError(
                    f"model.pretrained_file {path} not found; point it at a weights file "
                    f"for {cfg.arch} (.safetensors, .pth or .npz)"
                )
            overlay = dict(file=str(path))
            if _file_head_classes(path) == num_classes:  # our own checkpoints: keep their head too
                overlay["num_classes"] = num_classes
            kwargs["pretrained_cfg_overlay"] = overlay
    try:
        vit = timm.create_model(cfg.arch, **kwargs)
    except TypeError:  # a model class without timm's ViT arguments (attn_layer, ...): Swin, EVA, CNNs
        raise HeadsteerError(UNSUPPORTED.format(arch=cfg.arch, kind="its timm class takes no attn_layer")) from None
    except (RuntimeError, ValueError, KeyError) as exc:
        if cfg.pretrained_file is not None:
            raise HeadsteerError(
                f"pretrained file {cfg.pretrained_file} does not match architecture {cfg.arch} with "
                f"{ {k: v for k, v in kwargs.items() if k in GEOMETRY} } ({_first_line_of_mismatch(exc)}); "
                "use weights saved from that architecture or change model.arch / the geometry fields"
            ) from None
        raise
    except OSError as exc:  # hub download without network
        raise HeadsteerError(
            f"could not fetch pretrained weights for {cfg.arch} ({type(exc).__name__}); this machine may have "
            "no network: download them elsewhere and set model.pretrained_file=PATH"
        ) from None
    if cfg.num_heads is not None and vit.embed_dim % cfg.num_heads:
        raise HeadsteerError(f"model.embed_dim={vit.embed_dim} is not divisible by model.num_heads={cfg.num_heads}")
    if not isinstance(vit, VisionTransformer) or vit.cls_token is None:
        raise HeadsteerError(UNSUPPORTED.format(arch=cfg.arch, kind=f"{type(vit).__name__}, no CLS token"))
    layers = cfg.pruned_layers if cfg.pruned_layers is not None else list(range(len(vit.blocks)))
    model = AdaViT(vit, layers, cfg.decision_hidden, cfg.decision_norm, cfg.decision_init_bias, cfg.tau)
    model.skip_pruned_heads = cfg.skip_pruned_heads
    return model


def meta_model(cfg: ModelConfig) -> AdaViT:
    """The model's shape alone: built on the meta device, no weights loaded, no memory used."""
    with torch.device("meta"):
        return build_model(replace(cfg, pretrained=False, pretrained_file=None), num_classes=2, in_chans=3)


def _geometry(cfg: ModelConfig) -> tuple[int, int, int, int, int]:
    """(depth, heads, width, patch, image size) of the model `cfg` builds."""
    vit = meta_model(cfg).vit
    return (
        len(vit.blocks),
        vit.blocks[0].attn.num_heads,
        vit.embed_dim,
        vit.patch_embed.patch_size[0],
        vit.patch_embed.img_size[0],
    )


def model_name(cfg: ModelConfig) -> str:
    """`model.arch`, or, when config fields change its geometry, the geometry really built."""
    if all(getattr(cfg, k) is None for k in GEOMETRY):
        return cfg.arch
    built = _geometry(cfg)
    if built == _geometry(replace(cfg, **{k: None for k in GEOMETRY})):
        return cfg.arch
    depth, heads, width, patch, size = built
    shape = f"{depth} blocks × {heads} heads × {width} dims, patch {patch}, {size} px"
    return f"ViT {shape} (timm {cfg.arch} with this geometry)"


def normalization(model: AdaViT, cfg: ModelConfig, dataset_mean: tuple, dataset_std: tuple) -> tuple[tuple, tuple]:
    """Pretrained weights keep the normalisation they were trained with; scratch models use the data's."""
    if cfg.loads_pretrained:
        data_cfg = timm.data.resolve_model_data_config(model.vit)
        mean, std = tuple(data_cfg["mean"]), tuple(data_cfg["std"])
        in_chans = model.vit.patch_embed.proj.in_channels
        if len(mean) != in_chans:
            mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
        return mean, std
    return tuple(dataset_mean), tuple(dataset_std)


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load a model.safetensors written by the prune stage, with a clear error on mismatch."""
    from headsteer.artifacts.io import read_tensors

    state = read_tensors(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise HeadsteerError(
            f"weights {path} do not match the configured model ({_first_line_of_mismatch(exc)}); "
            "use the config that trained them"
        ) from None
