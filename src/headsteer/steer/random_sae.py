"""The untrained-SAE control: does steering need a trained SAE, or would any dictionary of the same shape do?

An SAE with the trained one's shape and k, never trained: random unit-norm decoder rows, the encoder tied to
the decoder (W_enc = W_dec^T), b_enc = 0 and b_dec = the mean of the training CLS tokens (Gao et al.'s
initialisation, which `TopKSAE` starts from). Every SAE analysis that runs on the trained SAE can run on it.
"""

from __future__ import annotations

import torch

from headsteer.sae.topk import TopKSAE


def untrained_sae(like: TopKSAE, train_cls: torch.Tensor, seed: int) -> TopKSAE:
    """An untrained SAE shaped like `like` (d_in, d_sae, k), b_dec = the mean of train_cls (N, d_in); seeded."""
    with torch.random.fork_rng(devices=[]):  # the caller's random stream is untouched
        torch.manual_seed(seed)
        sae = TopKSAE(like.d_in, like.d_sae, like.k, like.hook_name, like.model_name)
    with torch.no_grad():
        sae.b_dec.copy_(train_cls.float().mean(0))
    return sae.to(like.W_dec.device).eval()


SEED_OFFSET = 47
"""The control's seed is the run's seed + SEED_OFFSET (the steer stage's and the API's are the same SAE)."""


def control_sae(like: TopKSAE, train_cls: torch.Tensor, run_seed: int) -> TopKSAE:
    """The run's untrained control: `untrained_sae` seeded from the run's seed."""
    return untrained_sae(like, train_cls, run_seed + SEED_OFFSET)
