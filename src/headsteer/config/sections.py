"""Typed run configuration: one dataclass per section, a docstring per field, range checks.

Each value is checked once, in its section's ``__post_init__`` (values that depend on the model, such
as a layer index or k against d_sae, are checked where the model is known). Reading YAML and
``key.sub=value`` overrides into these classes is ``headsteer.config.loader``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

from headsteer.config.checks import check_dataset_settings, check_ranges
from headsteer.config.steer import SteerConfig
from headsteer.core.errors import HeadsteerError

__all__ = ["DataConfig", "ModelConfig", "PruneConfig", "ExtractConfig", "SAEConfig", "SteerConfig", "RunConfig"]


@dataclass
class DataConfig:
    name: Literal["fashion_mnist", "cifar100", "imagefolder", "hf"] = "fashion_mnist"
    """'fashion_mnist' (default, Debian package), 'cifar100' (the paper's), 'imagefolder' (root/train/<class>/*,
    root/test|val/<class>/*) or 'hf' (a Hugging Face DatasetDict saved with save_to_disk at root)."""
    root: Optional[str] = None
    """Folder holding the data files; None = the dataset's default location (imagefolder: required)."""
    in_memory: Union[bool, Literal["auto"]] = "auto"
    """imagefolder, hf: decode every image once into memory (true), or per batch from disk (false, streaming
    path); 'auto' = in memory up to 4 GiB of uint8 training images."""
    num_workers: int = 2
    """DataLoader workers decoding training batches on the streaming path (0 = in the main process)."""
    image_column: str = "image"
    """hf: the column holding the images (PIL images or anything PIL reads)."""
    label_column: str = "label"
    """hf: the column holding the class labels (a ClassLabel feature gives the class names)."""
    image_size: Optional[int] = None
    """imagefolder, hf: resize (shorter side) + centre-crop every image to N x N; None = their own (equal) size."""
    download: bool = False
    """CIFAR-100 only: let torchvision download into `root` when the files are missing."""
    train_limit: Optional[int] = None
    """Use only N training images (tests and quick looks): each class keeps its share, the images chosen
    with a fixed seed (the same whatever `seed`); a class left with none is an error. None = all."""
    test_limit: Optional[int] = None
    """Use only N test images, chosen as train_limit's; None = all."""
    augment: bool = True
    """Random crop (padding) + horizontal flip on training batches."""

    def __post_init__(self) -> None:
        check_ranges("data", self)
        check_dataset_settings(self)


@dataclass
class ModelConfig:
    arch: str = "vit_tiny_patch16_224"
    """timm model name of the backbone; the geometry fields below override its defaults."""
    pretrained: bool = False
    """Load timm's pretrained weights (from the hub, or from `pretrained_file`)."""
    pretrained_file: Optional[str] = None
    """Local weights file (.safetensors/.pth/.npz) loaded strictly into `arch` (used whatever `pretrained` says)."""
    img_size: Optional[int] = None
    """Input resolution; None = the architecture's default."""
    patch_size: Optional[int] = None
    """Patch size; None = the architecture's default."""
    embed_dim: Optional[int] = None
    """Width d; None = the architecture's default."""
    depth: Optional[int] = None
    """Number of blocks; None = the architecture's default."""
    num_heads: Optional[int] = None
    """Attention heads per block; None = the architecture's default."""
    mlp_ratio: Optional[float] = None
    """MLP hidden width / d; None = the architecture's default."""
    drop_path_rate: float = 0.0
    """Stochastic depth rate."""
    pruned_layers: Optional[list[int]] = None
    """Blocks that get a decision network (negative = from the end); None = every block (paper)."""
    decision_hidden: int = 0
    """Hidden width of the decision MLP; 0 = a single Linear(d, H) as in AdaViT."""
    decision_norm: bool = False
    """LayerNorm on the decision input before the decision network."""
    decision_init_bias: float = 3.0
    """Initial bias of the head logits (3.0 = every head kept with probability 0.95 at start)."""
    tau: float = 5.0
    """Gumbel-Sigmoid temperature (AdaViT: 5); only scales the straight-through gradient."""
    skip_pruned_heads: bool = False
    """Eval: no qkv/attention/proj work for dropped heads (samples grouped by head pattern); pays off from ViT-S up."""

    compile: bool = False
    """torch.compile each block's attention and MLP (for GPUs; the first steps pay for compilation)."""

    def __post_init__(self) -> None:
        check_ranges("model", self)
        if self.embed_dim is not None and self.num_heads is not None and self.embed_dim % self.num_heads:
            raise HeadsteerError(
                f"model.embed_dim={self.embed_dim} is not divisible by model.num_heads={self.num_heads}; every head "
                "gets embed_dim / num_heads channels: change one of them"
            )

    @property
    def loads_pretrained(self) -> bool:
        """Weights come from timm's pretrained config (the hub) or from `pretrained_file`."""
        return self.pretrained or self.pretrained_file is not None


@dataclass
class PruneConfig:
    dense_epochs: int = 3
    """Epochs of dense training before the decision networks switch on (0 with pretrained weights)."""
    dense_lr: float = 1e-3
    """Peak learning rate of the dense phase."""
    joint_epochs: int = 2
    """Epochs of joint training of ViT + decision networks."""
    joint_lr: float = 3e-4
    """Peak learning rate of the ViT during joint training."""
    decision_lr_scale: float = 10.0
    """Decision networks train at joint_lr x this (their straight-through gradient is scaled by 1/tau)."""
    batch_size: int = 256
    """Training batch size (per process)."""
    eval_batch_size: int = 1000
    """Evaluation batch size."""
    weight_decay: float = 0.05
    """AdamW weight decay (not applied to biases, norms, tokens)."""
    warmup_frac: float = 0.1
    """Fraction of each phase's steps spent in linear warm-up before cosine decay."""
    label_smoothing: float = 0.1
    """Label smoothing of the cross-entropy."""
    target_usage: float = 0.7
    """Target head-usage ratio gamma (fraction of heads kept); 0.7 = 30 % pruned (paper)."""
    usage_weight: float = 2.0
    """Weight lambda of the usage loss (AdaViT: 2)."""
    usage_loss: Literal["per_layer", "global"] = "per_layer"
    """'per_layer': every pruned layer is pulled to gamma; 'global': only the mean over layers is."""
    usage_on: Literal["deterministic", "noisy"] = "deterministic"
    """Usage term on the noise-free eval decision sigmoid(a)>0.5 (no train/eval gap) or the noisy mask (AdaViT)."""
    noise_initial: float = 1.0
    """Gumbel noise scale at the start of joint training (1 = AdaViT; 0 = deterministic masks)."""
    noise_final: float = 0.0
    """Gumbel noise scale at the end of joint training; it anneals linearly from noise_initial."""
    checkpoint_every: int = 200
    """Also checkpoint every this many steps inside an epoch (single process); 0 = at epoch ends only."""
    amp: Literal["none", "bf16", "fp16"] = "none"
    """Mixed precision of the training forward: autocast to bf16, or fp16 with a GradScaler; none = float32."""
    max_steps_per_epoch: Optional[int] = None
    """Cut every epoch after this many steps (tests); None = full epochs."""

    def __post_init__(self) -> None:
        check_ranges("prune", self)
        if not 0.0 < self.target_usage <= 1.0:
            raise HeadsteerError(
                f"prune.target_usage={self.target_usage} is outside (0, 1]; the share of heads KEPT (0.7: 30 % pruned)"
            )


@dataclass
class ExtractConfig:
    layer: int = -1
    """Headline layer: block whose residual-input CLS gets the full steering analysis (negative = from end)."""
    layers: Union[list[int], Literal["all"], None] = None
    """Layers of the layer study (same extraction pass, own SAE, reduced sweep): a list, or 'all' = every
    pruned block after block 0 (its CLS input is image-independent); None = the headline layer alone."""
    batch_size: int = 1000
    """Images per forward pass."""
    chunk_size: int = 10000
    """Rows per .safetensors chunk on disk (bounds memory; chunks are the resume unit)."""

    def __post_init__(self) -> None:
        check_ranges("extract", self)
        if isinstance(self.layers, list) and not self.layers:
            raise HeadsteerError("extract.layers is an empty list; list at least one block, or use 'all' or null")


@dataclass
class SAEConfig:
    expansion: int = 8
    """d_sae = expansion x d_in when d_sae is null (paper: 384 -> 3072, 8x)."""
    d_sae: Optional[int] = None
    """Number of latents; None = expansion x d_in."""
    k: int = 64
    """Active latents per sample (paper: 64)."""
    epochs: int = 100
    """Passes over the extracted training activations (paper: 100)."""
    batch_size: int = 4096
    """Activations per step."""
    lr: float = 1e-3
    """Adam learning rate (decays linearly to 0 over the last 20 % of steps); see decoder_lr_scale."""
    decoder_lr_scale: float = 3.0
    """The decoder's learning rate is lr x this. Its rows are held at unit norm, so a step turns them by
    about lr x sqrt(d_in) radians whatever the scale of the code; on the demo's layer 1, 3x gave a test FVU
    of 0.0024-0.0028 over three seeds, against 0.0029-0.0034 at 1x (docs/sae_trainer.md)."""
    auxk_coef: float = 1.0 / 4.0
    """Weight of the AuxK loss on dead latents; 0 turns AuxK off. Gao et al. 2024 use 1/32 with a 10M-token
    window; with this dead_window, 1/4 left 1-2 % of the demo's latents silent on its test split, where 1/32
    and a 100k window left 17-20 % (docs/sae_trainer.md)."""
    k_aux: Optional[int] = None
    """Dead latents used by AuxK; None = d_in // 2."""
    dead_window: int = 10000
    """A latent is dead (AuxK trains it) when it has not fired during this many training samples: it fires
    less often than about once in dead_window samples."""
    init_b_dec: Literal["geometric_median", "mean"] = "geometric_median"
    """Initial decoder bias."""
    grad_clip: Optional[float] = 1.0
    """Clip the global norm of the SAE's gradients (after the decoder projection) to this; None = no clipping.
    Chosen on the demo's layer 1 (docs/sae_trainer.md), seeds 0 and 1: 0.5, 1 and 2 reach the same test FVU
    (0.0024-0.0025) with 1-2 % of latents silent on test; without clipping 0.0032-0.0036, at 4 0.0026. 1 is
    the middle of that plateau (and the value SAELens hard-codes)."""

    def __post_init__(self) -> None:
        check_ranges("sae", self)


@dataclass
class RunConfig:
    out: str = "runs/demo"
    """Run directory; one sub-folder per stage."""
    seed: int = 0
    """Seed of every random choice (data order, augmentation, Gumbel noise, init); >= 0."""
    device: str = "auto"
    """'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N'."""
    threads: Optional[int] = None
    """CPU threads for torch; None = torch's default, one per CPU core (a fixed count, so runs repeat bitwise).
    On a machine other programs keep busy, threads=1 is often faster (a hint is printed then)."""
    data: DataConfig = field(default_factory=DataConfig)
    """The dataset."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The ViT and its decision networks."""
    prune: PruneConfig = field(default_factory=PruneConfig)
    """Dense + joint training (stage `prune`)."""
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    """CLS-token extraction (stage `extract`)."""
    sae: SAEConfig = field(default_factory=SAEConfig)
    """Top-k sparse autoencoder (stage `sae`)."""
    steer: SteerConfig = field(default_factory=SteerConfig)
    """Steering sweep and analyses (stage `steer`)."""

    def __post_init__(self) -> None:
        check_ranges("", self)
        check_out_path(self.out)


LONGEST_INSIDE_RUN = 100
"""Characters the longest path headsteer writes inside a run folder adds to it (a temp file of a chunk)."""


def _limits(path: Path) -> tuple[int, int]:
    """(PATH_MAX, NAME_MAX) of the file system that holds `path` (asked of its nearest existing folder)."""
    probe = path
    while not os.path.isdir(probe) and probe != probe.parent:  # isdir: False (no error) for over-long names
        probe = probe.parent
    try:
        return os.pathconf(probe, "PC_PATH_MAX"), os.pathconf(probe, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 4096, 255


def check_out_path(out: str) -> None:
    """Refuse a run folder whose name, or the paths headsteer writes inside it, the file system cannot hold."""
    path = Path(os.path.abspath(os.path.expanduser(out)))
    path_max, name_max = _limits(path)
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise HeadsteerError(
                f"out: the folder name '{part[:24]}...' is {len(os.fsencode(part))} bytes, more than this file "
                f"system's {name_max}; choose a shorter --out"
            )
    if len(os.fsencode(str(path))) + LONGEST_INSIDE_RUN > path_max:
        raise HeadsteerError(
            f"out: {str(path)[:40]}... is {len(os.fsencode(str(path)))} bytes long; with the files inside a run folder "
            f"that passes this file system's limit of {path_max}; choose a shorter --out"
        )
