"""AdaViT head pruning on timm ViTs: gated attention (Eq. 1), decision networks, model builder."""

from headsteer.model.adavit import AdaViT, AdaViTOutput, block_forward, block_mlp
from headsteer.model.build import build_model, load_weights, normalization
from headsteer.model.decision import DecisionNet, deterministic_mask, gumbel_sigmoid_mask
from headsteer.model.gated_attention import GatedAttention

__all__ = [
    "AdaViT",
    "AdaViTOutput",
    "block_forward",
    "block_mlp",
    "build_model",
    "load_weights",
    "normalization",
    "DecisionNet",
    "deterministic_mask",
    "gumbel_sigmoid_mask",
    "GatedAttention",
]
