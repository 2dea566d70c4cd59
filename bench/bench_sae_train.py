"""The SAE trainer against its peers: headsteer's, SAELens's `SAETrainer` and eai-sparsify's `Trainer`
on the same activations, in the same batches (headsteer's order), for the same epochs; CPU seconds of
each training (process time, 1 torch thread), then FVU and never-firing latents on the test split,
and each trainer's ratios to headsteer's.

Usage: python bench/bench_sae_train.py [--run RUN_DIR] [--layer L] [--config YAML] [--trainers a,b]
                                       [--repeats R] [--quick] [key.sub=value ...]

Activations: RUN/extract/layer_L/{train,test} (default: runs/demo, layer 1); a synthetic set of the
demo's size when the run has no such layer (said so, and saved as `sae_train_acts-synthetic_cpu.json`),
a tiny one with --quick. Settings: the config's `sae` section and `seed` (default configs/demo.yaml;
configs/smoke.yaml with --quick), plus dotted overrides (`sae.grad_clip=null seed=1`). A run with
overrides, or without every trainer, prints its table and saves nothing.

The peers run when the `bench` extra is installed (pip install -e '.[bench]'), else each is skipped
with a line saying so. Matched to headsteer's settings: SAELens gets the learning rate, its linear
decay to 0 over the last 20 % of steps, AuxK (coefficient; k_aux = d_in / 2 in both) and the dead
window (in steps of one batch), and keeps its own initialisation, decoder-norm handling (activations
rescaled by the decoder norms) and its gradient clipping, fixed at 1.0. eai-sparsify gets Adam at
headsteer's learning rate, AuxK at headsteer's coefficient and dead window, and keeps its own
schedule (linear decay to 0 from the first step after --sparsify-warmup steps), initialisation and
AuxK on ReLU'd pre-activations.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from harness import parse, parser, save, table
from headsteer.config import SAEConfig
from headsteer.config.loader import load_config
from headsteer.core.errors import HeadsteerError
from headsteer.sae.topk import TopKSAE
from headsteer.sae.train import SAETrainer, epoch_batches, evaluate_reconstruction, evaluate_sae, firing_counts
from headsteer.stages.sae import init_b_dec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
COLUMNS = ["trainer", "cpu_s", "fvu_test", "dead_test_pct", "cpu_ratio", "fvu_ratio", "dead_ratio"]


@dataclass
class Data:
    train: torch.Tensor
    """(N, d) training activations."""
    test: torch.Tensor
    """(N_test, d) test activations."""
    label: str
    """Where they come from, for the table and the result file."""


def synthetic(n: int, n_test: int, d: int, seed: int = 0) -> Data:
    """Sums of 4 of 4d random unit atoms with positive weights, plus noise: a stand-in with structure."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(4 * d, d, generator=g), dim=1)  # (4d, d)
    picks = torch.rand(n + n_test, 4 * d, generator=g).topk(4, dim=1).indices  # (N, 4)
    x = (torch.rand(n + n_test, 4, 1, generator=g) * atoms[picks]).sum(1) + 0.05 * torch.randn(
        n + n_test, d, generator=g
    )
    return Data(x[:n], x[n:], f"synthetic ({n} x {d}, 4 of {4 * d} atoms)")


def activations(args) -> tuple[Data, str]:
    """(the activations, "run" or "synthetic"): the run's extracted layer, or a synthetic set when --quick
    (tiny) or when the run has no such layer (demo-sized, and said so)."""
    from headsteer.artifacts.activations import load_split

    if args.quick:
        return synthetic(2048, 512, 32), "synthetic"
    folder = args.run / "extract" / f"layer_{args.layer}"
    if not folder.is_dir():
        print(f"{folder} not found: synthetic activations instead (pass --run with a finished run)")
        return synthetic(60000, 10000, 192), "synthetic"
    train, test = (load_split(args.run, split, args.layer).cls for split in ("train", "test"))
    return Data(train, test, f"{args.run} layer {args.layer} ({train.shape[0]} x {train.shape[1]})"), "run"


def cpu_timed(fn) -> tuple[float, float, object]:
    """(CPU seconds, wall seconds, result) of fn(); CPU = user + system time of this process."""
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    out = fn()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, time.perf_counter() - t0, out


@dataclass
class Setup:
    """What every trainer gets: the data, headsteer's SAE settings, every step's rows and the seed."""

    data: Data
    cfg: SAEConfig
    batches: list[torch.Tensor]
    """Row indices of every step, epoch after epoch, in headsteer's order (`epoch_batches`)."""
    seed: int
    device: str
    sparsify_warmup: int


def train_headsteer(s: Setup):
    """headsteer's SAETrainer as the `sae` stage runs it (b_dec at the geometric median)."""
    torch.manual_seed(s.seed)
    d = s.data.train.shape[1]
    sae = TopKSAE(d, s.cfg.expansion * d, s.cfg.k).to(s.device)
    trainer = SAETrainer(sae, s.cfg, total_steps=len(s.batches))
    init_b_dec(sae, s.data.train, s.cfg.init_b_dec, s.seed)
    for epoch in range(s.cfg.epochs):
        trainer.train_epoch(s.data.train, epoch, s.seed)  # its batches are s.batches, by construction

    return lambda test: evaluate_sae(sae, test)


def train_saelens(s: Setup):
    """SAELens's SAETrainer on a TopKTrainingSAE, fed s.batches."""
    from sae_lens import SAETrainer as LensTrainer
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    torch.manual_seed(s.seed)
    d, c, steps = s.data.train.shape[1], s.cfg, len(s.batches)
    sae = TopKTrainingSAE(
        TopKTrainingSAEConfig(d_in=d, d_sae=c.expansion * d, k=c.k, aux_loss_coefficient=c.auxk_coef, device=s.device)
    )
    cfg = SAETrainerConfig(
        total_training_samples=sum(len(b) for b in s.batches),
        train_batch_size_samples=c.batch_size,
        lr=c.lr,
        lr_end=c.lr,  # the constant schedule decays from lr
        lr_decay_steps=steps - int(0.8 * steps),
        dead_feature_window=math.ceil(c.dead_window / c.batch_size),  # in steps
        feature_sampling_window=steps + 1,  # no sparsity logging inside the run
        device=s.device,
    )
    LensTrainer(cfg, sae, (s.data.train[idx].to(s.device) for idx in s.batches)).fit()

    def reconstruct(x):
        z = sae.encode(x)  # (B, d_sae)
        return sae.decode(z), (z > 0).sum(0)

    return lambda test: evaluate_reconstruction(reconstruct, test, sae.cfg.d_sae, device=s.device)


class RowsModel(torch.nn.Module):
    """What eai-sparsify's Trainer hooks in place of a language model: input_ids are row numbers of the
    activations, and the module `rows` outputs those rows, one "token" each."""

    def __init__(self, acts: torch.Tensor):
        super().__init__()
        self.acts = acts  # (N, d)
        self.rows = torch.nn.Identity()
        self.dummy_inputs = {"input_ids": torch.zeros(1, 1, dtype=torch.long)}

    @property
    def base_model(self) -> torch.nn.Module:
        return self

    @property
    def device(self) -> torch.device:
        return self.acts.device

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.rows(self.acts[input_ids])  # (1, B, d)


def train_sparsify(s: Setup):
    """eai-sparsify's Trainer (Adam, AuxK), one dataset item per step holding that step's rows."""
    from sparsify import SparseCoderConfig, TrainConfig, Trainer

    c = s.cfg
    coder = SparseCoderConfig(expansion_factor=c.expansion, k=c.k)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            coder,
            batch_size=1,  # one item = one step's batch of rows
            optimizer="adam",
            lr=c.lr,
            lr_warmup_steps=s.sparsify_warmup,
            auxk_alpha=c.auxk_coef,
            dead_feature_threshold=c.dead_window,
            hookpoints=["rows"],
            init_seeds=[s.seed],
            log_to_wandb=False,
            save_every=len(s.batches) + 2,  # no checkpoint inside the run (it saves once, at the end)
            save_dir=tmp,
        )
        trainer = Trainer(cfg, [{"input_ids": idx} for idx in s.batches], RowsModel(s.data.train.to(s.device)))
        trainer.fit()
    sae = trainer.saes["rows"]

    def reconstruct(x):
        top = sae.encode(x)
        return sae.decode(top.top_acts, top.top_indices), firing_counts(top.top_acts, top.top_indices, sae.num_latents)

    return lambda test: evaluate_reconstruction(reconstruct, test, sae.num_latents, device=s.device)


@dataclass
class Peer:
    label: str
    """Its row in the table."""
    module: str | None
    """What must import for it to run (None: headsteer, always there)."""
    dist: str | None
    """Its distribution on PyPI, whose installed version the table names."""
    train: Callable[[Setup], Callable]
    """train(setup) -> evaluate(test) -> SAEStats."""


TRAINERS = {
    "headsteer": Peer("headsteer", None, None, train_headsteer),
    "saelens": Peer("SAELens SAETrainer, matched", "sae_lens", "sae-lens", train_saelens),
    "sparsify": Peer("eai-sparsify Trainer, Adam + AuxK", "sparsify", "eai-sparsify", train_sparsify),
}


def missing(peer: Peer) -> str | None:
    """None when the peer can run, else why not."""
    if peer.module is None:
        return None
    try:
        __import__(peer.module)
    except ImportError as exc:
        return f"not installed ({exc.name}); pip install -e '.[bench]'"
    return None


def trainer_list(text: str) -> list[str]:
    """--trainers: a comma list of TRAINERS' names."""
    names = text.split(",")
    bad = [name for name in names if name not in TRAINERS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown trainer(s) {', '.join(bad)}; choose from {', '.join(TRAINERS)}")
    return names


def measure(setup: Setup, names: list[str], repeats: int) -> dict[str, dict]:
    """Train with each named trainer `repeats` times, round-robin (drift of the machine's speed hits all
    alike); FVU and never-firing latents of the last repeat's SAE on the test split."""
    from importlib.metadata import version

    times: dict[str, list] = {name: [] for name in names}
    evaluators = {}
    for _ in range(repeats):
        for name in names:
            cpu, wall, evaluators[name] = cpu_timed(lambda: TRAINERS[name].train(setup))  # noqa: B023
            times[name].append((round(cpu, 2), round(wall, 2)))
    out = {}
    for name in names:
        stats, dist = evaluators[name](setup.data.test), TRAINERS[name].dist
        out[name] = {
            "label": TRAINERS[name].label + (f" ({version(dist)})" if dist else ""),
            "cpu_s": [t[0] for t in times[name]],
            "wall_s": [t[1] for t in times[name]],
            "fvu": stats.fvu,
            "dead": stats.dead_fraction,
        }
    return out


def rows_of(results: dict[str, dict]) -> list[dict]:
    """Table rows: median CPU seconds, FVU, dead %, and each trainer's ratios to headsteer's values ("-"
    where headsteer did not run or its value is 0)."""
    ref = results.get("headsteer", {"cpu_s": [0.0], "fvu": 0.0, "dead": 0.0})

    def ratio(a: float, b: float) -> float | str:
        return round(a / b, 2) if b > 0 else "-"

    rows = []
    for r in results.values():
        cpu = statistics.median(r["cpu_s"])
        rows.append(
            {
                "trainer": r["label"],
                "cpu_s": round(cpu, 1),
                "fvu_test": round(r["fvu"], 5),
                "dead_test_pct": round(100 * r["dead"], 1),
                "cpu_ratio": ratio(cpu, statistics.median(ref["cpu_s"])),
                "fvu_ratio": ratio(r["fvu"], ref["fvu"]),
                "dead_ratio": ratio(r["dead"], ref["dead"]),
            }
        )
    return rows


def cpu_model() -> str:
    """The CPU's model name as lscpu shows it (the result file's machine block has no CPU model)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, RESULTS)
    p.add_argument("overrides", nargs="*", help="dotted config overrides (sae.grad_clip=null seed=1): not saved")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml", help="its sae section and seed")
    p.add_argument("--run", type=Path, default=ROOT / "runs" / "demo", help="finished run (default: %(default)s)")
    p.add_argument("--layer", type=int, default=1, help="extracted layer of --run (default: %(default)s)")
    p.add_argument("--trainers", type=trainer_list, default=list(TRAINERS), help=f"comma list of {', '.join(TRAINERS)}")
    p.add_argument("--repeats", type=int, default=2, help="timed trainings per trainer (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    p.add_argument("--sparsify-warmup", type=int, default=0, help="eai-sparsify's warm-up steps (default: %(default)s)")
    args = parse(p, argv, repeats=1, config=ROOT / "configs" / "smoke.yaml")
    torch.set_num_threads(1 if args.quick else args.threads)
    if args.device == "cpu":
        os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")  # sparsify's Triton decoder is for GPUs
    cfg = load_config(args.config, args.overrides)
    data, args.acts = activations(args)
    batches = [
        i for e in range(cfg.sae.epochs) for i in epoch_batches(len(data.train), cfg.sae.batch_size, e, cfg.seed)
    ]
    c = cfg.sae
    print(f"activations: {data.label}; d_sae {c.expansion}x, k {c.k}, {c.epochs} epochs of batch {c.batch_size}")
    names = [name for name in args.trainers if missing(TRAINERS[name]) is None]
    for name in [name for name in args.trainers if name not in names]:
        print(f"{TRAINERS[name].label}: skipped, {missing(TRAINERS[name])}")
    sys.stdout.flush()
    setup = Setup(data, c, batches, cfg.seed, args.device, args.sparsify_warmup)
    results = measure(setup, names, args.repeats)
    rows = rows_of(results)
    table(rows, COLUMNS)
    why_not = "custom settings" if args.overrides else "not every trainer ran" if len(names) < len(TRAINERS) else ""
    if why_not and not args.quick:
        print(f"results not saved: {why_not}")
        return
    payload = {"cpu": cpu_model(), "activations": data.label, "sae": vars(c), "trainers": results, "rows": rows}
    save("sae_train", args, payload, full={"acts": "run"})


if __name__ == "__main__":
    try:
        main()
    except HeadsteerError as exc:  # a bad override or run folder: one line, as the CLI prints it
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
