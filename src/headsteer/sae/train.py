"""Training the top-k SAE: geometric-median b_dec, AuxK on dead latents, decoder-norm constraint.

Past the encoder's matmul, a step is sparse both ways: a row's k latents (and AuxK's k_aux dead
latents) are decoded by summing their decoder rows (`sum_rows`), and the backward reaches the
encoder only through those latents (`gather_pre_acts`). The dense path, a (B, d_sae) code times
W_dec and its transposes, gives the same gradients at several times the cost (tests/test_sae.py
checks one against the other).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from headsteer.config import SAEConfig
from headsteer.sae.topk import TopKSAE, sum_rows


def geometric_median(x: torch.Tensor, iters: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm on x (N, d): the point minimising the sum of Euclidean distances."""
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(1e-8)  # (N,)
        y_next = (w[:, None] * x).sum(0) / w.sum()
        if (y_next - y).norm() <= tol * max(1.0, y.norm().item()):
            return y_next
        y = y_next
    return y


class _GatherPreActs(torch.autograd.Function):
    """pre[b, idx[b, j]] of pre = (x - b_dec) @ W_enc + b_enc, differentiable in W_enc, b_enc and b_dec."""

    @staticmethod
    def forward(ctx, pre, x, W_enc, b_enc, b_dec, idx):
        ctx.save_for_backward(x, W_enc, b_dec, idx)
        return pre.gather(1, idx)  # (B, m)

    @staticmethod
    def backward(ctx, grad):
        x, W_enc, b_dec, idx = ctx.saved_tensors
        (B, m), d_sae = idx.shape, W_enc.shape[1]
        rows = torch.arange(B, device=idx.device).repeat_interleave(m)  # (B*m,) the row of each entry
        # G (d_sae, B) holds grad at the selected (latent, row) pairs; dL/dW_enc^T = G @ (x - b_dec)
        with warnings.catch_warnings():  # the indices are valid by construction; some CUDA builds of torch
            warnings.filterwarnings("ignore", message="Sparse invariant checks", category=UserWarning)  # warn
            G = torch.sparse_coo_tensor(
                torch.stack([idx.flatten(), rows]), grad.flatten(), (d_sae, B), check_invariants=False
            )
            grad_W_enc = torch.sparse.mm(G, x - b_dec).T  # (d_in, d_sae)
        grad_b_enc = grad.new_zeros(d_sae).index_add_(0, idx.flatten(), grad.flatten())  # (d_sae,)
        grad_b_dec = -(W_enc @ grad_b_enc)  # d pre[b, i] / d b_dec = -W_enc[:, i]
        return None, None, grad_W_enc, grad_b_enc, grad_b_dec, None


def gather_pre_acts(sae: TopKSAE, x: torch.Tensor, pre: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(B, m) the pre-activations pre[b, idx[b, j]] of inputs x (B, d_in), with gradients to the encoder.

    `pre` (B, d_sae) is computed without autograd; the backward builds only the m selected latents'
    share of each gradient, at a cost of B * m * d_in instead of the B * d_sae * d_in of a dense matmul."""
    return _GatherPreActs.apply(pre, x, sae.W_enc, sae.b_enc, sae.b_dec, idx)


def auxk_latents(pre: torch.Tensor, dead: torch.Tensor, k_aux: int) -> torch.Tensor:
    """(B, min(k_aux, n_dead)) per row, the dead latents (indices in `dead`, (n_dead,)) with the largest
    pre-activations in pre (B, d_sae): every dead latent when there are at most k_aux of them."""
    if dead.numel() <= k_aux:
        return dead.expand(pre.shape[0], -1)
    return dead[pre[:, dead].topk(k_aux, dim=-1, sorted=False).indices]


@dataclass
class TrainForward:
    """What one training forward pass computes (losses differentiable, the rest detached)."""

    x_hat: torch.Tensor
    """(B, d_in) reconstruction."""
    values: torch.Tensor
    """(B, k) the code's kept values, after the ReLU."""
    indices: torch.Tensor
    """(B, k) their latents."""
    recon: torch.Tensor
    """Reconstruction loss: squared error summed over d_in, mean over the batch."""
    auxk: torch.Tensor
    """Gao et al.'s AuxK (times min(1, n_dead / k_aux)): the residual x - x_hat reconstructed from the
    top-k_aux dead latents' raw pre-activations, without b_dec; 0 when `dead` is None or empty."""


def train_forward(sae: TopKSAE, x: torch.Tensor, dead: Optional[torch.Tensor], k_aux: int) -> TrainForward:
    """The sparse training forward on x (B, d_in); dead: (n_dead,) indices of the dead latents, or None
    to skip AuxK. AuxK uses raw pre-activations (no ReLU) as SAELens does, so a latent whose
    pre-activations are all negative still gets a gradient toward explaining the residual."""
    with torch.no_grad():
        pre = sae.pre_acts(x)  # (B, d_sae)
        idx = pre.topk(sae.k, dim=-1, sorted=False).indices  # (B, k)
        aux_idx = auxk_latents(pre, dead, k_aux) if dead is not None and dead.numel() else idx[:, :0]  # (B, m)
    vals = gather_pre_acts(sae, x, pre, torch.cat([idx, aux_idx], 1))  # one backward for both sets
    values, aux_values = vals[:, : sae.k].relu(), vals[:, sae.k :]
    x_hat = sae.decode_sparse(values, idx)  # (B, d_in)
    recon = (x_hat - x).pow(2).sum(-1).mean()
    auxk = x.new_zeros(())
    if aux_idx.shape[1]:
        residual = (x - x_hat).detach()  # (B, d_in)
        scale = min(dead.numel() / k_aux, 1.0)
        auxk = scale * (sum_rows(aux_values, aux_idx, sae.W_dec) - residual).pow(2).sum(-1).mean()
    return TrainForward(x_hat=x_hat.detach(), values=values.detach(), indices=idx, recon=recon, auxk=auxk)


def firing_counts(values: torch.Tensor, indices: torch.Tensor, d_sae: int) -> torch.Tensor:
    """(d_sae,) how many rows of a sparse code (values, indices (B, k)) each latent is active (> 0) in."""
    return torch.zeros(d_sae, dtype=torch.long, device=indices.device).index_add_(
        0, indices.flatten(), (values > 0).flatten().long()
    )


@dataclass
class SAEStats:
    mse: float
    """Mean squared error per element."""
    fvu: float
    """Fraction of variance unexplained: sum (x - x_hat)^2 / sum (x - mean x)^2."""
    l0: float
    """Mean number of non-zero latents per sample."""
    dead_fraction: float
    """Training: latents that did not fire in the last `dead_window` samples; evaluation: latents
    that never fired on the evaluated set."""
    auxk: float = 0.0
    """Mean AuxK loss (training only)."""


class ReconstructionMeter:
    """Running MSE / FVU / L0 sums over batches (FVU against the mean of the whole set), kept as
    tensors on the batches' device and read once, in `stats`."""

    def __init__(self, mean: torch.Tensor, d_sae: int):
        self.mean = mean  # (d_in,)
        self.sums = torch.zeros(4, dtype=torch.float64, device=mean.device)  # sq_err, total_var, l0, auxk
        self.n = 0
        self.fired = torch.zeros(d_sae, dtype=torch.bool, device=mean.device)

    @torch.no_grad()
    def add(self, x: torch.Tensor, x_hat: torch.Tensor, fires: torch.Tensor, auxk: Optional[torch.Tensor] = None):
        """A batch x (B, d_in), its reconstruction and `firing_counts` (d_sae,); auxk: the batch's AuxK loss."""
        sq_err, total_var = (x_hat - x).pow(2).sum(), (x - self.mean).pow(2).sum()
        aux = auxk.detach() * x.shape[0] if auxk is not None else sq_err.new_zeros(())
        self.sums += torch.stack([sq_err, total_var, fires.sum(), aux]).double()
        self.fired |= fires > 0
        self.n += x.shape[0]

    @property
    def fvu(self) -> float:
        sq_err, total_var = self.sums[:2].tolist()
        return sq_err / max(total_var, 1e-12)

    def stats(self, dead_fraction: float | None = None) -> SAEStats:
        """dead_fraction None = the latents that never fired on the batches seen."""
        sq_err, _, l0, aux = self.sums.tolist()
        n, d_in = max(1, self.n), self.mean.shape[0]
        dead = 1.0 - self.fired.float().mean().item() if dead_fraction is None else dead_fraction
        return SAEStats(mse=sq_err / (n * d_in), fvu=self.fvu, l0=l0 / n, dead_fraction=dead, auxk=aux / n)


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int) -> tuple[torch.Tensor, ...]:
    """The row indices of each batch of an epoch over n rows: a fresh seeded permutation per epoch."""
    g = torch.Generator().manual_seed(seed * 9973 + epoch)
    return torch.randperm(n, generator=g).split(batch_size)


class SAETrainer:
    """Adam on the SAE with a constant learning rate that decays linearly over the last 20 % of steps;
    the decoder's is `decoder_lr_scale` times the rest's."""

    def __init__(self, sae: TopKSAE, cfg: SAEConfig, total_steps: int):
        self.sae, self.cfg, self.total_steps = sae, cfg, max(1, total_steps)
        groups = [
            {"params": [sae.W_enc, sae.b_enc, sae.b_dec], "lr_scale": 1.0},
            {"params": [sae.W_dec], "lr_scale": cfg.decoder_lr_scale},
        ]
        self.optimizer = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999))
        self.k_aux = cfg.k_aux if cfg.k_aux is not None else max(1, sae.d_in // 2)
        # samples since each latent last fired
        self.since_fired = torch.zeros(sae.d_sae, dtype=torch.long, device=sae.W_dec.device)
        self.step = 0
        self.check_forward: Optional[Callable[[TrainForward], None]] = None
        """Called with every training forward before its update (the sae stage stops on a non-finite loss)."""

    def state_dict(self) -> dict:
        """The trainer's own JSON-able state (the SAE and the optimizer are checkpointed apart)."""
        return {"since_fired": self.since_fired.tolist(), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.since_fired = torch.tensor(state["since_fired"], dtype=torch.long, device=self.sae.W_dec.device)
        self.step = state["step"]

    def lr_at(self, step: int) -> float:
        decay_start = int(0.8 * self.total_steps)
        if step < decay_start:
            return self.cfg.lr
        return self.cfg.lr * max(0.0, (self.total_steps - step) / max(1, self.total_steps - decay_start))

    def dead_latents(self) -> Optional[torch.Tensor]:
        """(n_dead,) indices of the latents that have not fired for dead_window samples; None when AuxK is
        off (coefficient 0), so that a step spends nothing on it."""
        if self.cfg.auxk_coef == 0:
            return None
        return (self.since_fired >= self.cfg.dead_window).nonzero().squeeze(1)

    def train_step(self, x: torch.Tensor) -> tuple[TrainForward, torch.Tensor]:
        """One Adam step on the batch x (B, d_in); returns the forward pass and its `firing_counts`."""
        sae, cfg = self.sae, self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step) * group["lr_scale"]
        out = train_forward(sae, x, self.dead_latents(), self.k_aux)
        if self.check_forward is not None:
            self.check_forward(out)  # may stop training before this step's update
        loss = out.recon + cfg.auxk_coef * out.auxk
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_grad()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
        self.optimizer.step()
        sae.normalize_decoder()
        self.step += 1
        fires = firing_counts(out.values, out.indices, sae.d_sae)
        self.since_fired = torch.where(fires > 0, 0, self.since_fired + x.shape[0])
        return out, fires

    def train_epoch(self, acts: torch.Tensor, epoch: int, seed: int, bar=None) -> SAEStats:
        self.sae.train()
        meter = ReconstructionMeter(acts.mean(0).to(self.sae.W_dec.device), self.sae.d_sae)
        for idx in epoch_batches(acts.shape[0], self.cfg.batch_size, epoch, seed):
            x = acts[idx].to(self.sae.W_dec.device)
            out, fires = self.train_step(x)
            meter.add(x, out.x_hat, fires, out.auxk)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.set_postfix(fvu=f"{meter.fvu:.3f}")
        dead_frac = (self.since_fired >= self.cfg.dead_window).float().mean().item()
        return meter.stats(dead_fraction=dead_frac)


@torch.no_grad()
def evaluate_reconstruction(
    reconstruct, acts: torch.Tensor, d_sae: int, batch_size: int = 4096, device: Optional[torch.device] = None
) -> SAEStats:
    """Reconstruction quality on activations (N, d_in) of any SAE given as reconstruct(x) -> (x_hat,
    `firing_counts` (d_sae,)) for a batch x (B, d_in)."""
    meter = ReconstructionMeter(acts.mean(0).to(device), d_sae)
    for x in acts.split(batch_size):
        x = x.to(device)
        x_hat, fires = reconstruct(x)
        meter.add(x, x_hat, fires)
    return meter.stats()


@torch.no_grad()
def evaluate_sae(
    sae: TopKSAE, acts: torch.Tensor, batch_size: int = 4096, device: Optional[torch.device] = None
) -> SAEStats:
    """Reconstruction quality of `sae` on activations (N, d_in)."""
    sae.eval()

    def reconstruct(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = sae.encode_sparse(x)
        return sae.decode_sparse(values, indices), firing_counts(values, indices, sae.d_sae)

    return evaluate_reconstruction(reconstruct, acts, sae.d_sae, batch_size, device or sae.W_dec.device)
