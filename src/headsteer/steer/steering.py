"""Eq. 5: amplify the SAE latents in S by a strength alpha, re-apply top-k, decode.

The paper's Eq. 5 is garbled, so three readings are offered (DESIGN.md section 4):
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
    """What steering needs of the encoder pre-activations pre (B, n), computed once."""

    pre: torch.Tensor
    """(B, n) encoder pre-activations."""
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


def _table(idx: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n) bool membership table of index rows idx (B, a): a scatter, then membership is a gather."""
    return torch.zeros(idx.shape[0], n, dtype=torch.bool, device=idx.device).scatter_(1, idx, True)


def _additive(
    c: Candidates, S: torch.Tensor, alpha: float, code_v: torch.Tensor, code_i: torch.Tensor, in_S: torch.Tensor
):
    """TopK(z + alpha max(z) 1_S) with exact ties ranked by pre-activation (larger first), then index.

    Candidates: the code's k latents (sorted by pre-activation, as topk returns them) and the latents of
    S outside the code, which all get the same value alpha max(z), ordered here by (pre-activation
    desc, index asc). One stable sort by value then gives the dense reference's order.
    code_v, code_i: (B, k) the unsteered code; in_S: (B, n) membership table of S."""
    k = code_i.shape[1]
    add = alpha * code_v.max(dim=-1, keepdim=True).values  # (B, 1)
    S_asc = S.sort(dim=1).values
    S_ord = S_asc.gather(1, c.pre.gather(1, S_asc).argsort(dim=1, descending=True, stable=True))
    in_code = _table(code_i, c.pre.shape[1]).gather(1, S_ord)  # (B, |S|)
    values = torch.cat(
        [code_v + add * in_S.gather(1, code_i), add.expand_as(S_ord).masked_fill(in_code, float("-inf"))], 1
    )
    pos = values.argsort(dim=1, descending=True, stable=True)[:, :k]
    return values.gather(1, pos).relu(), torch.cat([code_i, S_ord], 1).gather(1, pos)


def steer_sparse(c: Candidates, S: torch.Tensor, alpha: float, mode: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The steered code as (values (B, k), indices (B, k)), for index sets S (B, |S|) of each row.

    `additive` with alpha > 1 gives every latent of S a value above every latent outside it, so with
    |S| >= k the code holds only latents of S (the rest is erased); ties among them go to the larger
    encoder pre-activation, then the lower index.
    """
    if mode not in MODES:
        raise ValueError(f"unknown steering mode {mode!r}; choose one of {MODES}")
    f, in_S = factor(alpha), _table(S, c.pre.shape[1])  # (B, n)
    if mode == Mode.PRE_TOPK:
        others = c.values.masked_fill(in_S.gather(1, c.indices), float("-inf"))  # S is rescaled: taken apart
        vals, pos = torch.cat([others, f * c.pre.gather(1, S)], 1).topk(k, dim=-1)
        return vals.relu(), torch.cat([c.indices, S], 1).gather(1, pos)
    code_v, code_i = c.values[:, :k].relu(), c.indices[:, :k]
    if mode == Mode.POST_TOPK:
        return torch.where(in_S.gather(1, code_i), f * code_v, code_v), code_i
    if alpha == 0:
        return code_v, code_i
    return _additive(c, S, alpha, code_v, code_i, in_S)


def _per_set_size(pre: torch.Tensor, S: torch.Tensor, alpha: float, mode: str, k: int):
    """Sparse steered codes (values, indices), each (B, k), for bool masks S (B, n) whose rows may hold
    different numbers of latents: rows are steered in groups of equal |S|."""
    counts = S.sum(1)
    values = pre.new_zeros(pre.shape[0], k)
    indices = torch.zeros(pre.shape[0], k, dtype=torch.long, device=pre.device)
    for c in counts.unique().tolist():
        rows = (counts == c).nonzero().squeeze(1)
        idx_S = S[rows].nonzero()[:, 1].view(rows.numel(), c)  # (r, c), row-major order kept
        values[rows], indices[rows] = steer_sparse(Candidates.of(pre[rows], k, c), idx_S, alpha, mode, k)
    return values, indices


def steer_codes(pre_acts: torch.Tensor, S: torch.Tensor, alpha: float, mode: str, k: int) -> torch.Tensor:
    """pre_acts: (B, n); S: (B, n) bool; returns the dense steered code z~ (B, n) (small inputs, tests)."""
    vals, idx = _per_set_size(pre_acts, S, alpha, mode, k)
    return torch.zeros_like(pre_acts).scatter_(-1, idx, vals)


def steer(sae: TopKSAE, x: torch.Tensor, S: torch.Tensor, alpha: float, mode: str) -> torch.Tensor:
    """Steered embedding x~ = W_dec^T z~ + b_dec for inputs x (B, d_in); S: (B, n) bool."""
    return sae.decode_sparse(*_per_set_size(sae.pre_acts(x), S, alpha, mode, sae.k))
