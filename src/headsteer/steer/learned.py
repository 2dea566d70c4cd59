"""Learned latent strengths: the strongest case for steering through the SAE.

Instead of a set of latents picked by how often they fire, one strength alpha_j per latent (per class and
latent for the class-conditioned version) is fitted on training images (`gate_fit`). The reading is
`post_topk` with a strength per latent: the steered code is z~_j = (1 + alpha_j) z_j, so the decision network
reads x~ = x_hat + sum_j alpha_j z_j d_j (d_j: decoder row j). Strengths stay >= -1 (alpha = -1 removes the
latent; below, the code would turn negative, which a ReLU SAE never emits): alpha = softplus(beta) - 1.

For a linear decision network W, the logits move by sum_j alpha_j z_j (W d_j): `gate_directions` gives the
(d_sae, H) matrix of the W d_j, and the fit runs in that H-dimensional space (exact, and k*H per image
instead of k*d). Any other decision network is run on x~ itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from headsteer.sae.topk import TopKSAE

BETA_ZERO = math.log(math.e - 1)
"""softplus(BETA_ZERO) - 1 = 0: the unsteered strength."""


def is_linear(decide: nn.Module) -> bool:
    """The decision network is one Linear layer (no LayerNorm, no hidden layer): AdaViT's, the default."""
    return isinstance(getattr(decide, "norm", None), nn.Identity) and isinstance(
        getattr(decide, "net", None), nn.Linear
    )


def gate_directions(decide: nn.Module, sae: TopKSAE, at: torch.Tensor) -> torch.Tensor:
    """(d_sae, H) how the decision logits move per unit of each latent: W d_j for a linear decision network,
    else J d_j with J the network's Jacobian at the input `at` (d,) (the training mean)."""
    W_dec = sae.W_dec.detach()
    if is_linear(decide):
        return W_dec @ decide.net.weight.detach().T
    J = torch.autograd.functional.jacobian(decide, at[None].to(W_dec.device))[0, :, 0]  # (H, d)
    return W_dec @ J.T


@dataclass
class Codes:
    """SAE codes of some rows, and what the decision network makes of their reconstruction."""

    values: torch.Tensor
    """(N, k) the code's non-zeros."""
    indices: torch.Tensor
    """(N, k) their latent ids."""
    base: torch.Tensor
    """(N, H) decision logits of the reconstruction x_hat (every strength 0)."""

    @classmethod
    @torch.no_grad()
    def of(cls, sae: TopKSAE, decide: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> "Codes":
        parts = [sae.encode_sparse(xb) for xb in x.to(sae.W_dec.device).split(batch_size)]
        values, indices = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        base = torch.cat(
            [
                decide(sae.decode_sparse(v, i))
                for v, i in zip(values.split(batch_size), indices.split(batch_size), strict=True)
            ]
        )
        return cls(values, indices, base)


class Strengths(nn.Module):
    """alpha (B, R, d_sae): B policies fitted together, each with one row of strengths for a global policy
    (R = 1) or one per class; `allowed` (B, R, d_sae) bool limits which strengths may move (the sparsity path).

    The parameter is the logit push theta_j = alpha_j p_j, with p_j (`push`, (d_sae,)) the push of latent j at
    alpha = 1: its mean activation times |W d_j|. Adam then moves every latent by about the same number of logit
    units per step, however weakly the gate reads it, and the L1 term and the path's ranking weigh latents by
    what they do to the logits, not by their raw strength. theta = softplus(beta) - p keeps alpha >= -1."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        push: torch.Tensor,
        allowed: torch.Tensor | None = None,
        init: torch.Tensor | None = None,
    ):
        super().__init__()
        self.register_buffer("push", push.clamp(min=1e-6).expand(shape).clone())
        start = self.push if init is None else (init + 1).clamp(min=1e-6) * self.push  # softplus(beta) = p(alpha + 1)
        self.beta = nn.Parameter(torch.where(start > 20, start, torch.log(torch.expm1(start.clamp(min=1e-12)))))
        self.register_buffer("allowed", torch.ones(shape, dtype=torch.bool) if allowed is None else allowed)

    def alpha(self) -> torch.Tensor:
        """(B, R, d_sae) the strengths, 0 where not allowed."""
        return (F.softplus(self.beta) / self.push - 1) * self.allowed

    def theta(self) -> torch.Tensor:
        """(B, R, d_sae) the logit pushes alpha_j p_j, 0 where not allowed."""
        return (F.softplus(self.beta) - self.push) * self.allowed

    def logits(self, codes: "Codes", rows: torch.Tensor, classes: torch.Tensor | None, G, decide, sae) -> torch.Tensor:
        """(B, r, H) decision logits of `rows` of `codes` under these strengths (see `strength_logits`)."""
        return strength_logits(self.alpha(), codes, rows, classes, G, decide, sae)

    def l1(self) -> torch.Tensor:
        """Sum of |theta| (logit units)."""
        return self.theta().abs().sum()


def strength_logits(
    alpha: torch.Tensor, codes: Codes, rows: torch.Tensor, classes: torch.Tensor | None, G, decide, sae
) -> torch.Tensor:
    """(B, r, H) decision logits of `rows` of `codes` when the code's latents are scaled by 1 + alpha, alpha
    (B, R, d_sae): row classes[n] of alpha for image n (classes (N,), per-class strengths) or row 0 (None); G:
    gate_directions for a linear decision network (exact), None to run `decide` on the steered embedding."""
    which = torch.zeros_like(rows) if classes is None else classes[rows]
    idx, vals = codes.indices[rows], codes.values[rows]  # (r, k)
    scaled = alpha[:, which.to(alpha.device)[:, None], idx] * vals  # (B, r, k) alpha_j z_j
    if G is not None:
        return codes.base[rows] + torch.einsum("brk,rkh->brh", scaled, G[idx])
    x = sae.decode_sparse(vals, idx) + torch.einsum("brk,rkd->brd", scaled, sae.W_dec[idx])  # (B, r, d)
    return decide(x.flatten(0, 1)).view(alpha.shape[0], rows.numel(), -1)


class FreePairs:
    """The fit's sparse view of `strength_logits` for a linear gate: every (policy b, row, code slot) whose
    strength is free, with its logit direction z * W d_j. logits = base + the sum of alpha * direction over a
    row's pairs. With a sparsity path most slots are held at 0, so a step touches only the free ones."""

    def __init__(self, allowed: torch.Tensor, codes: Codes, rows: torch.Tensor, classes: torch.Tensor | None, G):
        which = torch.zeros_like(rows) if classes is None else classes[rows]
        idx, vals = codes.indices[rows], codes.values[rows]  # (r, k)
        b, r, k = allowed[:, which[:, None], idx].nonzero(as_tuple=True)  # the free (policy, row, slot) triples
        self.rows, self.b, self.cls, self.lat = rows, b, which[r], idx[r, k]
        self.direction = vals[r, k][:, None] * G[self.lat]  # (P, H)
        self.slot = b * rows.numel() + r
        self.base, self.B = codes.base[rows], allowed.shape[0]

    def logits(self, alpha: torch.Tensor) -> torch.Tensor:
        """(B, r, H), equal to strength_logits(alpha, ...) up to float rounding."""
        push = alpha[self.b, self.cls, self.lat][:, None] * self.direction  # (P, H)
        out = self.base.repeat(self.B, 1).index_add(0, self.slot, push)  # (B * r, H)
        return out.view(self.B, self.rows.numel(), -1)


class CodeMatrix:
    """The fit's view of `strength_logits` for a linear gate when every strength is free (the unrestricted fit):
    the rows' codes as a sparse (r, U) matrix over the U (class, latent) pairs they use, so the logits of all B
    policies are one sparse product, base + Z (alpha_u W d_u). With every strength free, FreePairs would touch
    B * r * k pairs one by one; this is several times faster on a CPU. Torch has no op for it: the sparse product
    is hand-assembled here."""

    def __init__(self, codes: Codes, rows: torch.Tensor, classes: torch.Tensor | None, G: torch.Tensor, d_sae: int):
        which = torch.zeros_like(rows) if classes is None else classes[rows]
        idx, vals = codes.indices[rows], codes.values[rows]  # (r, k)
        r, k = idx.shape
        used, col = (which[:, None] * d_sae + idx).flatten().unique(return_inverse=True)  # (U,), (r * k,)
        at = torch.stack([torch.arange(r, device=idx.device).repeat_interleave(k), col])
        self.Z = torch.sparse_coo_tensor(at, vals.flatten(), (r, used.numel()), check_invariants=True).coalesce()
        self.used, self.G = used, G[used % d_sae]  # (U,), (U, H)
        self.base = codes.base[rows]  # (r, H)

    def logits(self, alpha: torch.Tensor) -> torch.Tensor:
        """(B, r, H), equal to strength_logits(alpha, ...) up to float rounding; alpha (B, R, d_sae)."""
        B, H = alpha.shape[0], self.G.shape[1]
        a = alpha.reshape(B, -1)[:, self.used]  # (B, U)
        W = (a.T[:, :, None] * self.G[:, None, :]).reshape(-1, B * H)  # (U, B * H)
        out = torch.sparse.mm(self.Z, W).view(self.base.shape[0], B, H)  # (r, B, H)
        return self.base + out.permute(1, 0, 2)


def top_allowed(score: torch.Tensor, m: int) -> torch.Tensor:
    """(..., d_sae) bool: the m entries of largest |score| in each row of score (..., d_sae) (ties: lower id)."""
    order = torch.argsort(-score.abs(), dim=-1, stable=True)[..., :m]
    return torch.zeros_like(score, dtype=torch.bool).scatter_(-1, order, True)


def mean_activation(codes: "Codes", n: int) -> torch.Tensor:
    """(n,) mean value of each of the n latents where it fires in `codes` (0 where it never does)."""
    vals, idx = codes.values.flatten(), codes.indices.flatten()
    fired = vals > 0
    total = torch.zeros(n, device=vals.device).index_add_(0, idx[fired], vals[fired])
    count = torch.zeros(n, device=vals.device).index_add_(0, idx[fired], torch.ones_like(vals[fired]))
    return total / count.clamp(min=1)


def pushes(codes: "Codes", G: torch.Tensor) -> torch.Tensor:
    """(d_sae,) p_j: the mean activation of latent j where it fires (over `codes`) times |G_j| (gate_directions)."""
    return mean_activation(codes, G.shape[0]) * G.norm(dim=1).to(codes.values.device)


def named(alpha: torch.Tensor, limit: int = 64) -> list[dict]:
    """The `limit` non-zero strengths of alpha (R, d_sae) of largest |alpha|, largest first (ties: lower row,
    then lower latent id): [{row, latent, alpha}]."""
    rows, cols = alpha.nonzero(as_tuple=True)
    order = torch.argsort(-alpha[rows, cols].abs(), stable=True)[:limit]
    return [{"row": int(rows[i]), "latent": int(cols[i]), "alpha": float(alpha[rows[i], cols[i]])} for i in order]
