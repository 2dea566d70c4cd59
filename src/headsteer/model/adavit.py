"""AdaViT-style dynamic head pruning around any timm VisionTransformer.

Per pruned block l, a decision network reads the CLS token of the block's residual input x_l[:, 0]
and emits head logits a_l (B, H). Training: Gumbel-Sigmoid hard masks with straight-through
gradient; eval: the deterministic mask sigmoid(a) > 0.5. A masked head contributes zero before
`proj` (Eq. 1). `override_decision_input` replaces the decision input of one layer (how steering
acts) without touching the residual stream.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import torch
import torch.nn as nn
from timm.models.vision_transformer import Block, VisionTransformer

from headsteer.core.errors import HeadsteerError
from headsteer.model.decision import DecisionNet, deterministic_mask, gumbel_sigmoid_mask
from headsteer.model.gated_attention import GatedAttention


@dataclass
class AdaViTOutput:
    logits: torch.Tensor
    """(B, num_classes) class logits."""
    masks: torch.Tensor
    """(B, L, H) head masks used in the forward pass (1 = kept); all ones for layers without a
    decision network or before `start` in `forward_from`."""
    decision_logits: torch.Tensor
    """(B, L, H) head logits a; +inf (always keep) for layers without a decision network."""
    decision_masks: torch.Tensor
    """(B, L, H) noise-free masks 1[a > 0] with the straight-through gradient of sigmoid(a / tau);
    equal to `masks` in eval mode. The usage loss may use these (see PruneConfig.usage_on)."""
    captured: dict[int, torch.Tensor] = field(default_factory=dict)
    """Block index -> (B, N, d) residual input of that block, for the indices passed as `capture`."""


def block_forward(blk: Block, x: torch.Tensor, head_mask: Optional[torch.Tensor], skip: bool = False) -> torch.Tensor:
    """timm's pre-norm Block.forward, with the head mask passed to the attention."""
    x = x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x), head_mask=head_mask, skip=skip)))
    return block_mlp(blk, x)


def block_forward_cls(blk: Block, x: torch.Tensor, head_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """`block_forward` for the CLS row alone (keys and values still from every token): (B, N, d) -> (B, 1, d).
    Enough for the last block under class-token pooling, where no later block reads the other rows."""
    o = blk.attn.head_outputs(blk.norm1(x), query_rows=slice(0, 1))  # (B, H, 1, D)
    return block_mlp(blk, x[:, :1] + blk.drop_path1(blk.ls1(blk.attn.project(o, head_mask))))


def block_mlp(blk: Block, x: torch.Tensor) -> torch.Tensor:
    """The second half of a timm Block: x + MLP(norm2(x)), for x (B, N, d) after the attention."""
    return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


class AdaViT(nn.Module):
    def __init__(
        self,
        vit: VisionTransformer,
        pruned_layers: list[int],
        decision_hidden: int = 0,
        decision_norm: bool = False,
        decision_init_bias: float = 3.0,
        tau: float = 5.0,
    ):
        super().__init__()
        if not isinstance(vit, VisionTransformer) or vit.cls_token is None:
            raise HeadsteerError(
                f"{type(vit).__name__} is not a timm VisionTransformer with a CLS token; "
                "choose a vit_* architecture (model.arch)"
            )
        for i, blk in enumerate(vit.blocks):
            if type(blk) is not Block or not isinstance(blk.attn, GatedAttention):
                raise HeadsteerError(
                    f"block {i} of this architecture is a {type(blk).__name__}; only timm's "
                    "pre-norm Block with standard attention is supported (e.g. vit_small_patch16_224)"
                )
        self.vit = vit
        self.depth = len(vit.blocks)
        self.num_heads = vit.blocks[0].attn.num_heads
        self.embed_dim = vit.embed_dim
        self.pruned_layers = sorted({self.resolve_layer(i, "model.pruned_layers entry") for i in pruned_layers})
        self.decisions = nn.ModuleDict(
            {
                str(i): DecisionNet(self.embed_dim, self.num_heads, decision_hidden, decision_norm, decision_init_bias)
                for i in self.pruned_layers
            }
        )
        self.tau = tau
        self.gating = True
        """False = dense model: every head kept, decision networks not run."""
        self.noise_scale = 1.0
        """Scale of the Gumbel noise in training mode (annealed by the trainer)."""
        self.skip_pruned_heads = False
        """Eval mode only: do no qkv / attention / proj work for dropped (sample, head) pairs."""
        self._overrides: dict[int, tuple[Callable[[torch.Tensor], torch.Tensor], bool]] = {}

    # ---------------------------------------------------------------------------------------------
    def resolve_layer(self, layer: int, key: str = "layer") -> int:
        """Map a possibly negative block index to 0..depth-1; the one check of a layer index, whose
        error names the config `key` it came from."""
        if not -self.depth <= layer < self.depth:
            raise HeadsteerError(
                f"{key}={layer} does not exist: the model has {self.depth} blocks "
                f"(valid: 0..{self.depth - 1} or -{self.depth}..-1)"
            )
        return layer % self.depth

    def steerable_layer(self, layer: int, key: str = "layer") -> int:
        """`resolve_layer`, also requiring a decision network to steer and a CLS input that depends on
        the image: the CLS entering block 0 is the class token plus its position embedding, the same
        for every image, so no SAE can describe it."""
        resolved = self.resolve_layer(layer, key)
        if resolved not in self.pruned_layers:
            raise HeadsteerError(
                f"{key}={layer} has no decision network to steer (pruned layers: {self.pruned_layers}); "
                "choose a pruned layer or add it to model.pruned_layers"
            )
        if resolved == 0:
            raise HeadsteerError(
                f"{key}={layer}: the CLS token entering block 0 is the same for every image, so an SAE "
                "cannot describe it; choose a later layer"
            )
        return resolved

    def decision_parameters(self) -> list[nn.Parameter]:
        return list(self.decisions.parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.vit.parameters())

    @contextmanager
    def override_decision_input(
        self, layer: int, fn: Callable[[torch.Tensor], torch.Tensor], replace_stream_cls: bool = False
    ) -> Iterator[None]:
        """Within the block, the decision network of `layer` reads fn(cls) instead of cls, (B, d) -> (B, d).

        With `replace_stream_cls`, the residual stream's CLS token is replaced by fn(cls) too.
        """
        layer = self.resolve_layer(layer)
        if layer not in self.pruned_layers:
            raise HeadsteerError(f"layer {layer} has no decision network; pruned layers: {self.pruned_layers}")
        self._overrides[layer] = (fn, replace_stream_cls)
        try:
            yield
        finally:
            self._overrides.pop(layer, None)

    # ---------------------------------------------------------------------------------------------
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, d) tokens entering block 0."""
        vit = self.vit
        x = vit.patch_embed(images)
        x = vit._pos_embed(x)
        x = vit.patch_drop(x)
        return vit.norm_pre(x)

    def head_mask(self, layer: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decide the heads of block `layer` from its residual input x (B, N, d).

        Returns (mask, decision_logits, decision_mask, x) where x has its CLS token replaced when an
        override asks for it.
        """
        cls = x[:, 0]  # (B, d)
        override = self._overrides.get(layer)
        if override is not None:
            fn, replace_stream = override
            cls = fn(cls)
            if replace_stream:
                x = torch.cat([cls[:, None], x[:, 1:]], dim=1)
        a = self.decisions[str(layer)](cls)  # (B, H)
        if self.training:
            mask = gumbel_sigmoid_mask(a, self.tau, self.noise_scale)
            det = deterministic_mask(a, self.tau)
        else:
            mask = det = deterministic_mask(a)
        return mask, a, det, x

    def forward_from(
        self,
        x: torch.Tensor,
        start: int = 0,
        capture: tuple[int, ...] = (),
        fixed_masks: Optional[torch.Tensor] = None,
        force: Optional[dict[int, torch.Tensor]] = None,
        cls_only_last: bool = False,
    ) -> AdaViTOutput:
        """Run blocks start..L-1 on tokens x (B, N, d), then the norm and the head.

        fixed_masks (B, L, H): use these head masks instead of the decision networks' (benchmarks,
        controlled experiments). force {layer: (B, H) masks}: these layers keep the given heads, the
        others decide as usual (sensitivity analysis, steering tails). cls_only_last: compute the last
        block for the CLS row only (`cls_pooled` models; the logits are the same up to float rounding).
        """
        force = force or {}
        B = x.shape[0]
        ones = x.new_ones(B, self.num_heads)
        inf = torch.full_like(ones, float("inf"))
        masks, logits_all, det_all, captured = [], [], [], {}
        capture = tuple(self.resolve_layer(i) for i in capture)
        for i, blk in enumerate(self.vit.blocks):
            if i < start:
                masks.append(ones), logits_all.append(inf), det_all.append(ones)
                continue
            if i in capture:
                captured[i] = x
            if fixed_masks is not None or i in force:
                mask = det = (force[i] if i in force else fixed_masks[:, i]).to(x.dtype)
                a = inf
            elif self.gating and i in self.pruned_layers:
                mask, a, det, x = self.head_mask(i, x)
            else:
                mask, a, det = None, inf, ones
            if cls_only_last and i == self.depth - 1:
                x = block_forward_cls(blk, x, mask)
            else:
                x = block_forward(blk, x, mask, skip=self.skip_pruned_heads and not self.training)
            masks.append(ones if mask is None else mask), logits_all.append(a), det_all.append(det)
        logits = self.head_logits(x)
        return AdaViTOutput(
            logits=logits,
            masks=torch.stack(masks, 1),
            decision_logits=torch.stack(logits_all, 1),
            decision_masks=torch.stack(det_all, 1),
            captured=captured,
        )

    def tokens_entering(self, images: torch.Tensor, layer: int) -> torch.Tensor:
        """(B, N, d) residual stream entering block `layer`: what `forward(images, capture=(layer,))`
        captures, without running block `layer` and the blocks after it (earlier blocks decide as usual)."""
        layer = self.resolve_layer(layer)
        x = self.embed(images)
        for i, blk in enumerate(self.vit.blocks[:layer]):
            mask = None
            if self.gating and i in self.pruned_layers:
                mask, _, _, x = self.head_mask(i, x)
            x = block_forward(blk, x, mask, skip=self.skip_pruned_heads and not self.training)
        return x

    @property
    def cls_pooled(self) -> bool:
        """Whether the head reads the CLS token alone (class-token pooling, no attention pooling)."""
        return self.vit.global_pool == "token" and self.vit.attn_pool is None

    def head_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm, pooling and classifier: tokens leaving the last block (B, N, d) -> (B, num_classes)."""
        return self.vit.forward_head(self.vit.norm(x))

    def forward(
        self, images: torch.Tensor, capture: tuple[int, ...] = (), fixed_masks: Optional[torch.Tensor] = None
    ) -> AdaViTOutput:
        return self.forward_from(self.embed(images), 0, capture, fixed_masks)
