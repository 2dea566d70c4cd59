"""Top-k sparse autoencoder (paper Eqs. 2-4; recipe of Gao et al. 2024), saved in SAELens v6 layout.

z = ReLU(TopK(W_enc^T (x - b_dec) + b_enc)),  x_hat = W_dec^T z + b_dec.

Written by hand (about 100 lines, torch only) rather than depending on SAELens, which pulls in
TransformerLens and a language-model stack; the files it writes load in SAELens
(`SAE.load_from_disk`). Weight layout follows SAELens: W_enc (d_in, d_sae), W_dec (d_sae, d_in).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from headsteer.core.errors import HeadsteerError

SAELENS_VERSION = "6.12.1"  # the SAELens release whose on-disk layout these files follow
CFG_NAME, WEIGHTS_NAME = "cfg.json", "sae_weights.safetensors"


@dataclass
class SAEOutput:
    x_hat: torch.Tensor
    """(B, d_in) reconstruction."""
    z: torch.Tensor
    """(B, d_sae) sparse code, at most k non-zeros per row."""
    pre_acts: torch.Tensor
    """(B, d_sae) encoder pre-activations W_enc^T (x - b_dec) + b_enc (used by steering and AuxK)."""


def sum_rows(values: torch.Tensor, indices: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """sum_j values[b, j] * W[indices[b, j]] -> (B, d) for values, indices (B, m) and W (n, d): a code with m
    non-zeros per row times W, without the (B, n) code. embedding_bag sums the m rows directly, and its
    backward touches only those rows (and the m values), so forward and backward cost B * m * d, not B * n * d."""
    return F.embedding_bag(indices, W, per_sample_weights=values, mode="sum")


def topk_relu(pre_acts: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest entries per row (ReLU on the kept values), zero the rest."""
    vals, idx = pre_acts.topk(k, dim=-1)
    return torch.zeros_like(pre_acts).scatter_(-1, idx, vals.relu())


class TopKSAE(nn.Module):
    def __init__(self, d_in: int, d_sae: int, k: int, hook_name: str = "", model_name: str = ""):
        super().__init__()
        if not 1 <= k <= d_sae:  # the one check of k against d_sae (d_sae is known only here, from d_in)
            raise HeadsteerError(
                f"sae.k={k} must be in 1..d_sae={d_sae} (d_in {d_in}); lower sae.k or raise sae.expansion / sae.d_sae"
            )
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        self.hook_name, self.model_name = hook_name, model_name
        W_dec = torch.randn(d_sae, d_in)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)  # (d_sae, d_in), unit-norm rows
        self.W_enc = nn.Parameter(W_dec.T.clone())  # (d_in, d_sae), W_enc = W_dec^T at init
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        # (B, d_sae); F.linear adds b_enc inside the matmul: half the time of `@ W_enc + b_enc` on a CPU
        return F.linear(x - self.b_dec, self.W_enc.T, self.b_enc)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return topk_relu(self.pre_acts(x), self.k)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec  # (B, d_in)

    def decode_sparse(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Decode a code given as its non-zeros, values and latent indices (B, k): sum_j v_j W_dec[i_j] +
        b_dec, without building the (B, d_sae) code."""
        return sum_rows(values, indices, self.W_dec) + self.b_dec

    def encode_sparse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The code of x (B, d_in) as its k kept entries: (values after the ReLU, latent indices), (B, k) each,
        largest pre-activation first."""
        vals, idx = self.pre_acts(x).topk(self.k, dim=-1)
        return vals.relu(), idx

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x_hat for inputs x (B, d_in) through the sparse decode, as the steering sweep computes it."""
        return self.decode_sparse(*self.encode_sparse(x))

    def forward(self, x: torch.Tensor) -> SAEOutput:
        pre = self.pre_acts(x)
        z = topk_relu(pre, self.k)
        return SAEOutput(x_hat=self.decode(z), z=z, pre_acts=pre)

    # --- the decoder constraint of Gao et al.: unit-norm rows, gradient parallel to them removed ---
    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        if self.W_dec.grad is not None:
            w = self.W_dec  # (d_sae, d_in), unit rows
            self.W_dec.grad -= (self.W_dec.grad * w).sum(dim=1, keepdim=True) * w

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)

    # --- SAELens v6 folder: cfg.json + sae_weights.safetensors ---
    def saelens_cfg(self) -> dict:
        return {
            "architecture": "topk",
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "k": self.k,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": True,
            "normalize_activations": "none",
            "reshape_activations": "none",
            "rescale_acts_by_decoder_norm": False,
            "metadata": {
                "sae_lens_version": SAELENS_VERSION,
                "sae_lens_training_version": SAELENS_VERSION,
                "model_name": self.model_name,
                "hook_name": self.hook_name,
                "hook_head_index": None,
                "prepend_bos": False,
                "context_size": 1,
            },
        }

    def save(self, folder: str | Path) -> None:
        from headsteer.artifacts.io import write_json, write_tensors

        folder = Path(folder)
        write_tensors(
            folder / WEIGHTS_NAME, {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        )
        write_json(folder / CFG_NAME, self.saelens_cfg())

    @classmethod
    def of_run(cls, run_dir: str | Path, layer: int, expected_d_in: Optional[int] = None) -> "TopKSAE":
        """The SAE the `sae` stage trained on `layer` of a run (RUN/sae/layer_<l>/sae)."""
        return cls.load(run_folder(run_dir, layer), expected_d_in)

    @classmethod
    def load(cls, folder: str | Path, expected_d_in: Optional[int] = None) -> "TopKSAE":
        from headsteer.artifacts.io import read_tensors

        folder = Path(folder)
        cfg_path = folder / CFG_NAME
        if not cfg_path.is_file():
            raise HeadsteerError(
                f"{cfg_path} not found: not an SAE folder (cfg.json + {WEIGHTS_NAME}); run `headsteer sae`"
            )
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("architecture") != "topk":
            raise HeadsteerError(
                f"SAE in {folder} has architecture {cfg.get('architecture')!r}; only 'topk' is supported"
            )
        if expected_d_in is not None and cfg["d_in"] != expected_d_in:
            raise HeadsteerError(
                f"SAE in {folder} has d_in={cfg['d_in']} but the model's residual width is "
                f"{expected_d_in}; train an SAE on this model's activations (`headsteer sae`)"
            )
        if cfg.get("normalize_activations", "none") != "none" or not cfg.get("apply_b_dec_to_input", True):
            raise HeadsteerError(
                f"SAE in {folder} uses input normalisation or no b_dec on the input; "
                "only normalize_activations='none', apply_b_dec_to_input=true are supported"
            )
        meta = cfg.get("metadata", {})
        sae = cls(cfg["d_in"], cfg["d_sae"], cfg["k"], meta.get("hook_name", ""), meta.get("model_name", ""))
        tensors = read_tensors(folder / WEIGHTS_NAME)
        try:
            sae.load_state_dict({k: tensors[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec")}, strict=True)
        except (KeyError, RuntimeError) as exc:
            raise HeadsteerError(
                f"SAE weights in {folder} do not match its cfg.json ({exc}); re-run `headsteer sae`"
            ) from None
        return sae


def run_folder(run_dir: str | Path, layer: int) -> Path:
    """Where a run keeps the SAE of `layer`, in SAELens layout."""
    return Path(run_dir) / "sae" / f"layer_{layer}" / "sae"
