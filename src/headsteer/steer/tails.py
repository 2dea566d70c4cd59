"""What the network does after the steered layer's head mask, computed once per (image, head pattern).

Steering acts only on the decision of layer l: the attention of l, the blocks after it, their own
decisions and the head all run on the unsteered stream, so an image's prediction (and the heads kept
after l) is a function of the image and the head pattern of layer l alone. A pattern is one of 2^H, and
a sweep revisits the same few patterns over and over; `OutcomeCache` runs the tail once per (image,
pattern) it meets and answers every later point by lookup. Two tails run the network after the mask:
- `FinalBlockTail` (l is the last block, CLS-token pooling): the per-head attention outputs of the
  CLS query do not depend on the mask (it multiplies them afterwards), so they are cached; a pattern
  then costs proj + MLP + head on the CLS row only.
- `GeneralTail` (any layer): caches the tokens entering block l and the per-head attention outputs of
  block l (every token's query); a pattern then costs block l's projection and MLP plus blocks
  l+1..L-1, the later layers deciding for themselves; under CLS-token pooling the last block runs for
  the CLS row only (its keys and values still come from every token).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterable

import torch

from headsteer.model import AdaViT, block_mlp


class FinalBlockTail:
    """Cached last block: per-head CLS attention outputs (N, H, 1, D) and the CLS residual (N, 1, d)."""

    def __init__(self, model: AdaViT, token_batches: Iterable[torch.Tensor]):
        self.model = model
        self.layer = model.depth - 1
        blk = model.vit.blocks[self.layer]
        outs, cls, dev = [], [], next(model.parameters()).device
        with torch.inference_mode():
            for x in token_batches:  # (B, N, d) entering the last block, on any device
                x = x.to(dev)
                outs.append(blk.attn.head_outputs(blk.norm1(x), query_rows=slice(0, 1)))  # (B, H, 1, D)
                cls.append(x[:, :1])
        self.head_out = torch.cat(outs)  # (N, H, 1, D)
        self.cls = torch.cat(cls)  # (N, 1, d)
        self.decision_input = self.cls[:, 0]  # (N, d)

    @staticmethod
    def supported(model: AdaViT, layer: int) -> bool:
        return layer == model.depth - 1 and model.cls_pooled

    @torch.inference_mode()
    def logits(self, mask: torch.Tensor, idx) -> torch.Tensor:
        """Class logits (b, C) of samples `idx` (slice or index tensor) when layer l keeps heads `mask` (b, H)."""
        return self.differentiable_logits(mask, idx)

    def differentiable_logits(self, mask: torch.Tensor, idx) -> torch.Tensor:
        """`logits` under autograd (a soft mask's gradient; see `trainable`)."""
        blk = self.model.vit.blocks[self.layer]
        y = self.cls[idx] + blk.drop_path1(blk.ls1(blk.attn.project(self.head_out[idx], mask)))  # (b, 1, d)
        return self.model.head_logits(block_mlp(blk, y))

    def run_masked(self, mask: torch.Tensor, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (b, C), heads kept in pruned layers after l (b,)): none after the last block."""
        return self.logits(mask, idx), torch.zeros(mask.shape[0], dtype=torch.long)


class GeneralTail:
    """Cached tokens entering layer l and the per-head attention outputs of block l (which the mask only
    multiplies afterwards); a pattern costs block l's projection and MLP, then blocks l+1..L-1, whose
    decision networks decide for themselves."""

    def __init__(self, model: AdaViT, layer: int, token_batches: Iterable[torch.Tensor]):
        self.model, self.layer = model, layer
        blk = model.vit.blocks[layer]
        tokens, outs, dev = [], [], next(model.parameters()).device
        with torch.inference_mode():
            for x in token_batches:  # (B, T, d) entering block l, on any device: kept on the model's
                x = x.to(dev)
                tokens.append(x)
                outs.append(blk.attn.head_outputs(blk.norm1(x)))  # (B, H, T, D)
        self.tokens = torch.cat(tokens)  # (N, T, d)
        self.head_out = torch.cat(outs)  # (N, H, T, D)
        self.decision_input = self.tokens[:, 0]  # (N, d)

    @torch.inference_mode()
    def run_masked(self, mask: torch.Tensor, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (b, C), heads kept in pruned layers after l (b,)) with layer l keeping `mask` (b, H)."""
        out = self._forward(mask, idx)
        after = [i for i in self.model.pruned_layers if i > self.layer]
        return out.logits, out.masks[:, after].sum(dim=(1, 2)).long().cpu()

    def differentiable_logits(self, mask: torch.Tensor, idx) -> torch.Tensor:
        """Class logits (b, C) under autograd (a soft mask's gradient; see `trainable`)."""
        return self._forward(mask, idx).logits

    def _forward(self, mask: torch.Tensor, idx):
        blk = self.model.vit.blocks[self.layer]
        y = self.tokens[idx] + blk.drop_path1(blk.ls1(blk.attn.project(self.head_out[idx], mask)))  # (b, T, d)
        return self.model.forward_from(block_mlp(blk, y), self.layer + 1, cls_only_last=self.model.cls_pooled)


def trainable(tail):
    """A copy of `tail` whose cached tensors are ordinary ones (the cache holds inference tensors, which
    autograd may not save), for fits that backpropagate through the frozen network after the mask."""
    out = copy.copy(tail)
    for name in ("head_out", "cls", "tokens"):
        if hasattr(tail, name):
            setattr(out, name, getattr(tail, name).clone())
    return out


def make_tail(model: AdaViT, layer: int, token_batches: Iterable[torch.Tensor]):
    """The cheapest exact tail for `layer`."""
    if FinalBlockTail.supported(model, layer):
        return FinalBlockTail(model, token_batches)
    return GeneralTail(model, layer, token_batches)


@dataclass
class Outcome:
    """What the network does for every test image under given head masks of the steered layer."""

    pred: torch.Tensor
    """(N,) predicted class."""
    kept_after: torch.Tensor
    """(N,) heads kept in the pruned layers after the steered one."""


class OutcomeCache:
    """Predictions per (image, head pattern of layer l), each computed once, in batches."""

    def __init__(self, tail, batch_size: int = 4096):
        self.tail, self.batch_size = tail, batch_size
        self.num_heads = tail.model.num_heads
        self.n = tail.decision_input.shape[0]
        self._pred: dict[int, torch.Tensor] = {}  # pattern -> (N,) class, -1 = not computed yet
        self._after: dict[int, torch.Tensor] = {}
        self.computed = 0
        """(image, pattern) pairs run through the tail so far."""

    def pattern_ids(self, masks: torch.Tensor) -> torch.Tensor:
        """(N, H) 0/1 masks -> (N,) integer pattern id (bit h = head h kept)."""
        bits = 2 ** torch.arange(self.num_heads, device=masks.device)
        return ((masks > 0).long() * bits).sum(1).cpu()

    @torch.inference_mode()  # the tables are inference tensors: created and updated only in here
    def __call__(self, masks: torch.Tensor) -> Outcome:
        """Outcome under steered-layer masks (N, H) (one row per test image, in order)."""
        ids = self.pattern_ids(masks)
        groups = [(p, (ids == p).nonzero().squeeze(1)) for p in ids.unique().tolist()]
        self._fill(groups)
        pred = torch.empty(self.n, dtype=torch.long)
        after = torch.empty(self.n, dtype=torch.long)
        for p, rows in groups:
            pred[rows], after[rows] = self._pred[p][rows], self._after[p][rows]
        return Outcome(pred, after)

    @torch.inference_mode()
    def predict(self, pattern: int, rows: torch.Tensor) -> torch.Tensor:
        """(n,) predicted class of the images `rows` when layer l keeps the heads of `pattern` (bit h = head h)."""
        self._fill([(pattern, rows)])
        return self._pred[pattern][rows]

    def computed_pairs(self) -> dict[str, torch.Tensor]:
        """Every (image, pattern) outcome computed so far, flat (int32 each): `pattern`, `row`, `pred`,
        `kept_after`; what a later cache of the same tail can start from (`add_pairs`)."""
        cols: dict[str, list[torch.Tensor]] = {"pattern": [], "row": [], "pred": [], "kept_after": []}
        for p, pred in self._pred.items():
            rows = (pred >= 0).nonzero().squeeze(1)
            cols["pattern"].append(torch.full_like(rows, p))
            cols["row"].append(rows)
            cols["pred"].append(pred[rows])
            cols["kept_after"].append(self._after[p][rows])
        return {k: torch.cat(v).int() if v else torch.zeros(0, dtype=torch.int32) for k, v in cols.items()}

    @torch.inference_mode()
    def add_pairs(self, pairs: dict[str, torch.Tensor]) -> None:
        """Take the outcomes another cache of the same tail computed (`computed_pairs`) as computed here."""
        pattern, row, pred, after = (pairs[k].long() for k in ("pattern", "row", "pred", "kept_after"))
        for p in pattern.unique().tolist():
            sel = pattern == p
            if p not in self._pred:
                self._pred[p] = torch.full((self.n,), -1, dtype=torch.long)
                self._after[p] = torch.zeros(self.n, dtype=torch.long)
            self._pred[p][row[sel]], self._after[p][row[sel]] = pred[sel], after[sel]

    def _fill(self, groups: list[tuple[int, torch.Tensor]]) -> None:
        """Run the tail on every (image, pattern) pair of `groups` not computed yet, all patterns together in
        batches of `batch_size` rows (each row with its own mask), so a point that meets many patterns on a few
        images each still makes wide batches."""
        todo_rows, todo_ids = [], []
        for p, rows in groups:
            if p not in self._pred:
                self._pred[p] = torch.full((self.n,), -1, dtype=torch.long)
                self._after[p] = torch.zeros(self.n, dtype=torch.long)
            todo = rows[self._pred[p][rows] < 0]
            todo_rows.append(todo)
            todo_ids.append(torch.full_like(todo, p))
        rows, ids = torch.cat(todo_rows), torch.cat(todo_ids)
        if rows.numel() == 0:
            return
        bits = torch.arange(self.num_heads)
        dev = self.tail.decision_input.device
        for r, i in zip(rows.split(self.batch_size), ids.split(self.batch_size), strict=True):
            mask = ((i[:, None] >> bits) & 1).float()  # (b, H)
            logits, after = self.tail.run_masked(mask.to(dev), r.to(dev))
            pred, after = logits.argmax(1).cpu(), after.cpu()
            for p in i.unique().tolist():
                sel = i == p
                self._pred[p][r[sel]], self._after[p][r[sel]] = pred[sel], after[sel]
        self.computed += rows.numel()
