"""Eq. 5: amplify the SAE latents in S by a strength alpha, re-apply top-k, decode.

The paper's Eq. 5 is garbled, so three readings are offered (`headsteer.steer.names.Mode`):
- `pre_topk` (default): u = W_enc^T (x - b_dec) + b_enc; u_i <- f u_i for i in S; z~ = TopK(u).
- `post_topk`: z = TopK(u); z~_i = f z_i for i in S (the sparse code is rescaled, no re-selection).
- `additive`: z~ = TopK(z + alpha * max_j(z_j) * 1_S), so latents outside the code can enter it.
The multiplicative factor is f = max(0, 1 + alpha): alpha = -1 removes S, and alpha < -1 changes
nothing more (a negative factor would flip signs: strongly negative pre-activations would enter the
top-k, and `post_topk` would emit negative codes that a ReLU SAE never emits).
alpha = 0 gives z~ = z in every mode, i.e. the plain SAE reconstruction.

Codes are handled sparsely, as (values, indices) of their k non-zeros: only the latents of S and the
top k + |S| pre-activations can end up in a steered code, so the top-k runs over k + 2|S| candidates
instead of all d_sae latents (`Candidates`, computed once per input), and `TopKSAE.decode_sparse`
sums k decoder rows. Top-k here is torch.topk, except where the additive mode makes exact ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from headsteer.sae.topk import TopKSAE
from headsteer.steer.names import MODE_NAMES, Mode

MODES = MODE_NAMES


def factor(alpha: float) -> float:
    """The multiplicative modes' factor max(0, 1 + alpha)."""
    return max(0.0, 1.0 + alpha)


@dataclass
class Candidates:
    """What steering needs of the encoder pre-activations pre (B, d_sae), computed once."""

    pre: torch.Tensor
    """(B, d_sae) encoder pre-activations."""
    values: torch.Tensor
    """(B, m) the m = k + |S| largest pre-activations, sorted (the unsteered code is the first k)."""
    indices: torch.Tensor
    """(B, m) their latent indices."""

    def rows(self, sl: slice) -> "Candidates":
        return Candidates(self.pre[sl], self.values[sl], self.indices[sl])

    @classmethod
    def of(cls, pre: torch.Tensor, k: int, set_size: int) -> "Candidates":
        values, indices = pre.topk(min(pre.shape[-1], k + set_size), dim=-1)
        return cls(pre, values, indices)


def _table(idx: torch.Tensor, d_sae: int) -> torch.Tensor:
    """(B, d_sae) bool membership table of index rows idx (B, a): a scatter, then membership is a gather."""
    return torch.zeros(idx.shape[0], d_sae, dtype=torch.bool, device=idx.device).scatter_(1, idx, True)


def _additive(
    cand: Candidates,
    set_idx: torch.Tensor,
    alpha: float,
    code_v: torch.Tensor,
    code_i: torch.Tensor,
    in_S: torch.Tensor,
):
    """TopK(z + alpha max(z) 1_S) with exact ties ranked by pre-activation (larger first), then index.

    Candidates: the code's k latents (sorted by pre-activation, as topk returns them) and the latents of
    S outside the code, which all get the same value alpha max(z), ordered here by (pre-activation
    desc, index asc). One stable sort by value then gives the dense reference's order.
    code_v, code_i: (B, k) the unsteered code; in_S: (B, d_sae) membership table of S."""
    k = code_i.shape[1]
    add = alpha * code_v.max(dim=-1, keepdim=True).values  # (B, 1)
    set_asc = set_idx.sort(dim=1).values
    set_ord = set_asc.gather(1, cand.pre.gather(1, set_asc).argsort(dim=1, descending=True, stable=True))
    in_code = _table(code_i, cand.pre.shape[1]).gather(1, set_ord)  # (B, |S|)
    values = torch.cat(
        [code_v + add * in_S.gather(1, code_i), add.expand_as(set_ord).masked_fill(in_code, float("-inf"))], 1
    )
    pos = values.argsort(dim=1, descending=True, stable=True)[:, :k]
    return values.gather(1, pos).relu(), torch.cat([code_i, set_ord], 1).gather(1, pos)


class SetSteering:
    """The steered codes of rows whose latents S are set_idx (B, |S|), at any alpha: what does not depend on
    alpha (which candidates are in S, the pre-activations of S) is computed once, so a sweep over alpha pays
    only for the top-k and the rescaling at each point.

    `additive` with alpha > 1 gives every latent of S a value above every latent outside it, so with
    |S| >= k the code holds only latents of S (the rest is erased); ties among them go to the larger
    encoder pre-activation, then the lower index.
    """

    def __init__(self, cand: Candidates, set_idx: torch.Tensor, mode: str, k: int):
        if mode not in MODES:
            raise ValueError(f"unknown steering mode {mode!r}; choose one of {MODES}")
        self.cand, self.set_idx, self.mode, self.k = cand, set_idx, mode, k
        if mode == Mode.PRE_TOPK:
            in_S = _table(set_idx, cand.pre.shape[1])  # (B, d_sae)
            self.others = cand.values.masked_fill(in_S.gather(1, cand.indices), float("-inf"))  # S taken apart
            self.pre_S = cand.pre.gather(1, set_idx)  # (B, |S|), rescaled at each alpha
            self.ids = torch.cat([cand.indices, set_idx], 1)  # (B, m + |S|)
            return
        self.code_v, self.code_i = cand.values[:, :k].relu(), cand.indices[:, :k]  # the unsteered code
        if mode == Mode.POST_TOPK:
            self.in_code = _table(set_idx, cand.pre.shape[1]).gather(1, self.code_i)  # (B, k)

    def code(self, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The steered code as (values (B, k), indices (B, k))."""
        f = factor(alpha)
        if self.mode == Mode.PRE_TOPK:
            vals, pos = torch.cat([self.others, f * self.pre_S], 1).topk(self.k, dim=-1)
            return vals.relu(), self.ids.gather(1, pos)
        if self.mode == Mode.POST_TOPK:
            return torch.where(self.in_code, f * self.code_v, self.code_v), self.code_i
        if alpha == 0:
            return self.code_v, self.code_i
        in_S = _table(self.set_idx, self.cand.pre.shape[1])  # not kept: (B, d_sae) per set
        return _additive(self.cand, self.set_idx, alpha, self.code_v, self.code_i, in_S)


def steer_sparse(
    cand: Candidates, set_idx: torch.Tensor, alpha: float, mode: str, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The steered code as (values (B, k), indices (B, k)), for the latents S of each row, set_idx (B, |S|),
    at one alpha (`SetSteering` for many)."""
    return SetSteering(cand, set_idx, mode, k).code(alpha)


def _per_set_size(pre: torch.Tensor, in_set: torch.Tensor, alpha: float, mode: str, k: int):
    """Sparse steered codes (values, indices), each (B, k), for bool masks in_set (B, d_sae) whose rows may hold
    different numbers of latents: rows are steered in groups of equal |S|."""
    counts = in_set.sum(1)
    values = pre.new_zeros(pre.shape[0], k)
    indices = torch.zeros(pre.shape[0], k, dtype=torch.long, device=pre.device)
    for size in counts.unique().tolist():
        rows = (counts == size).nonzero().squeeze(1)
        set_idx = in_set[rows].nonzero()[:, 1].view(rows.numel(), size)  # (r, size), row-major order kept
        values[rows], indices[rows] = steer_sparse(Candidates.of(pre[rows], k, size), set_idx, alpha, mode, k)
    return values, indices


def steer_codes(pre_acts: torch.Tensor, in_set: torch.Tensor, alpha: float, mode: str, k: int) -> torch.Tensor:
    """pre_acts: (B, d_sae); in_set: (B, d_sae) bool, the latents S of each row; returns the dense steered
    code z~ (B, d_sae) (small inputs, tests)."""
    vals, idx = _per_set_size(pre_acts, in_set, alpha, mode, k)
    return torch.zeros_like(pre_acts).scatter_(-1, idx, vals)


def steer(sae: TopKSAE, x: torch.Tensor, in_set: torch.Tensor, alpha: float, mode: str) -> torch.Tensor:
    """Steered embedding x~ = W_dec^T z~ + b_dec for inputs x (B, d_in); in_set: (B, d_sae) bool."""
    return sae.decode_sparse(*_per_set_size(sae.pre_acts(x), in_set, alpha, mode, sae.k))
