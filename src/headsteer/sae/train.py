"""Training the top-k SAE: geometric-median b_dec, AuxK on dead latents, decoder-norm constraint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from headsteer.config import SAEConfig
from headsteer.sae.topk import SAEOutput, TopKSAE


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


def auxk_loss(
    x: torch.Tensor, x_hat: torch.Tensor, pre_acts: torch.Tensor, dead: torch.Tensor, k_aux: int, W_dec: torch.Tensor
) -> torch.Tensor:
    """Gao et al.'s AuxK: reconstruct the residual x - x_hat with the top-k_aux DEAD latents only."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return x.new_zeros(())
    k = min(k_aux, n_dead)
    # raw pre-activations (no ReLU) of the top-k dead latents: a latent whose pre-activations are all
    # negative still gets a gradient toward explaining the residual (as SAELens does)
    vals, idx = pre_acts.masked_fill(~dead, float("-inf")).topk(k, dim=-1)
    z_aux = torch.zeros_like(pre_acts).scatter_(-1, idx, vals)  # (B, d_sae), non-zero only on dead latents
    residual = (x - x_hat).detach()
    scale = min(n_dead / k_aux, 1.0)
    return scale * (z_aux @ W_dec - residual).pow(2).sum(-1).mean()


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
    """Running MSE / FVU / L0 sums over batches (FVU against the mean of the whole set)."""

    def __init__(self, mean: torch.Tensor, d_sae: int):
        self.mean = mean  # (d_in,)
        self.sq_err = self.total_var = self.l0 = 0.0
        self.n = 0
        self.fired = torch.zeros(d_sae, dtype=torch.bool, device=mean.device)

    @torch.no_grad()
    def add(self, x: torch.Tensor, x_hat: torch.Tensor, z: torch.Tensor) -> None:
        self.sq_err += (x_hat - x).detach().pow(2).sum().item()
        self.total_var += (x - self.mean.to(x.device)).pow(2).sum().item()
        active = z > 0
        self.l0 += active.sum().item()
        self.fired |= active.any(0).to(self.fired.device)
        self.n += x.shape[0]

    @property
    def fvu(self) -> float:
        return self.sq_err / max(self.total_var, 1e-12)

    def stats(self, dead_fraction: float | None = None, auxk: float = 0.0) -> SAEStats:
        """dead_fraction None = the latents that never fired on the batches seen."""
        n, d_in = max(1, self.n), self.mean.shape[0]
        dead = 1.0 - self.fired.float().mean().item() if dead_fraction is None else dead_fraction
        return SAEStats(mse=self.sq_err / (n * d_in), fvu=self.fvu, l0=self.l0 / n, dead_fraction=dead, auxk=auxk)


class SAETrainer:
    """Adam on the SAE with a constant learning rate that decays linearly over the last 20 % of steps."""

    def __init__(self, sae: TopKSAE, cfg: SAEConfig, total_steps: int):
        self.sae, self.cfg, self.total_steps = sae, cfg, max(1, total_steps)
        self.optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
        self.k_aux = cfg.k_aux if cfg.k_aux is not None else max(1, sae.d_in // 2)
        self.since_fired = torch.zeros(sae.d_sae, dtype=torch.long)  # samples since each latent last fired
        self.step = 0

    def state_dict(self) -> dict:
        """The trainer's own JSON-able state (the SAE and the optimizer are checkpointed apart)."""
        return {"since_fired": self.since_fired.tolist(), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.since_fired = torch.tensor(state["since_fired"], dtype=torch.long)
        self.step = state["step"]

    def lr_at(self, step: int) -> float:
        decay_start = int(0.8 * self.total_steps)
        if step < decay_start:
            return self.cfg.lr
        return self.cfg.lr * max(0.0, (self.total_steps - step) / max(1, self.total_steps - decay_start))

    def train_step(self, x: torch.Tensor) -> tuple[SAEOutput, torch.Tensor]:
        """One Adam step on the batch x (B, d_in); returns the forward output and the AuxK loss."""
        sae, cfg = self.sae, self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        out = sae(x)
        recon = (out.x_hat - x).pow(2).sum(-1).mean()
        dead = (self.since_fired >= cfg.dead_window).to(x.device)
        aux = auxk_loss(x, out.x_hat, out.pre_acts, dead, self.k_aux, sae.W_dec)
        loss = recon + cfg.auxk_coef * aux
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_grad()
        self.optimizer.step()
        sae.normalize_decoder()
        self.step += 1
        fired = (out.z > 0).any(0).cpu()
        self.since_fired += x.shape[0]
        self.since_fired[fired] = 0
        return out, aux

    def train_epoch(self, acts: torch.Tensor, epoch: int, seed: int, bar=None) -> SAEStats:
        self.sae.train()
        g = torch.Generator().manual_seed(seed * 9973 + epoch)
        order = torch.randperm(acts.shape[0], generator=g)
        meter = ReconstructionMeter(acts.mean(0), self.sae.d_sae)
        aux_sum = 0.0
        for idx in order.split(self.cfg.batch_size):
            x = acts[idx].to(self.sae.W_dec.device)
            out, aux = self.train_step(x)
            meter.add(x, out.x_hat, out.z)
            aux_sum += aux.item() * x.shape[0]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(fvu=f"{meter.fvu:.3f}")
        dead_frac = (self.since_fired >= self.cfg.dead_window).float().mean().item()
        return meter.stats(dead_fraction=dead_frac, auxk=aux_sum / max(1, meter.n))


@torch.no_grad()
def evaluate_sae(
    sae: TopKSAE, acts: torch.Tensor, batch_size: int = 4096, device: Optional[torch.device] = None
) -> SAEStats:
    """Reconstruction quality of `sae` on activations (N, d_in)."""
    sae.eval()
    device = device or sae.W_dec.device
    meter = ReconstructionMeter(acts.mean(0).to(device), sae.d_sae)
    for x in acts.split(batch_size):
        x = x.to(device)
        out = sae(x)
        meter.add(x, out.x_hat, out.z)
    return meter.stats()
