"""The SAE trainer against its peers: headsteer's, SAELens's `SAETrainer` and eai-sparsify's `Trainer`
on the same activations, in the same batches (headsteer's order), for the same epochs; CPU seconds of
the training (process time), then FVU and never-firing latents on the test split, and each peer's
ratios to headsteer.

Usage: python bench/bench_sae_train.py --run RUN_DIR [--layer L] [--epochs N] [--repeats R] [--quick]

Activations: RUN/extract/layer_L/{train,test} of a finished run (the demo: --run runs/demo --layer 1,
its SAE settings are the defaults below). Without --run, a synthetic set (sums of sparse random atoms,
labelled "synthetic" in the table and the file name); --quick always uses a tiny synthetic set.
The peers run when the `bench` extra is installed (pip install -e '.[bench]'), otherwise each is
skipped with a line saying so. 1 torch thread unless --threads says otherwise.

Matched to headsteer's settings: SAELens gets the learning rate, its linear decay to 0 over the last
20 % of steps, AuxK (coefficient, k_aux = d_in / 2) and the dead-latent window (in steps of one batch),
and keeps its own initialisation, decoder-norm handling and its fixed gradient clipping at 1.0.
eai-sparsify gets Adam at headsteer's learning rate, AuxK with headsteer's coefficient and window,
and keeps its own schedule (linear decay to 0, warm-up --sparsify-warmup steps) and initialisation.
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from headsteer.benchmark import parse, parser, save, table
from headsteer.config import SAEConfig
from headsteer.sae.topk import TopKSAE
from headsteer.sae.train import SAETrainer, epoch_batches, evaluate_reconstruction, evaluate_sae, firing_counts
from headsteer.stages.sae import init_b_dec

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ["trainer", "cpu_s", "fvu_test", "dead_test_pct", "cpu_ratio", "fvu_ratio", "dead_ratio"]
DEMO = {"expansion": 8, "k": 32, "epochs": 20, "batch_size": 1024}  # configs/demo.yaml's sae section
QUICK = {"expansion": 4, "k": 8, "epochs": 2, "batch_size": 256}


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


def load_run(run: Path, layer: int) -> Data:
    from headsteer.activations import load_split

    train, test = (load_split(run, split, layer).cls for split in ("train", "test"))
    return Data(train, test, f"{run} layer {layer} ({train.shape[0]} x {train.shape[1]})")


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


TRAINERS = {  # name -> (module that must be importable, train(setup) -> evaluate(test) -> SAEStats)
    "headsteer": (None, train_headsteer),
    "SAELens SAETrainer, matched": ("sae_lens", train_saelens),
    "eai-sparsify Trainer, Adam + AuxK": ("sparsify", train_sparsify),
}


def available(module: str | None) -> str | None:
    """None when `module` imports (or is None), else why not."""
    if module is None:
        return None
    try:
        __import__(module)
    except ImportError as exc:
        return f"not installed ({exc.name}); pip install -e '.[bench]'"
    return None


def version(module: str | None) -> str | None:
    """The installed release of a peer (None for headsteer, named by the git commit in the result file)."""
    from importlib.metadata import version as dist_version

    return None if module is None else dist_version({"sae_lens": "sae-lens", "sparsify": "eai-sparsify"}[module])


def measure(setup: Setup, repeats: int) -> dict[str, dict]:
    """Train with every available trainer `repeats` times, round-robin (drift of the machine's speed hits
    all alike); FVU and never-firing latents of the last repeat's SAE on the test split."""
    names = [name for name, (module, _) in TRAINERS.items() if available(module) is None]
    for name, (module, _) in TRAINERS.items():
        if name not in names:
            print(f"{name}: skipped, {available(module)}")
    times: dict[str, list] = {name: [] for name in names}
    models = {}
    for _ in range(repeats):
        for name in names:
            cpu, wall, models[name] = cpu_timed(lambda: TRAINERS[name][1](setup))  # noqa: B023
            times[name].append((round(cpu, 2), round(wall, 2)))
    out = {}
    for name in names:
        stats = models[name](setup.data.test)
        out[name] = {
            "cpu_s": [t[0] for t in times[name]],
            "wall_s": [t[1] for t in times[name]],
            "fvu": stats.fvu,
            "dead": stats.dead_fraction,
            "version": version(TRAINERS[name][0]),
        }
    return out


def rows_of(results: dict[str, dict]) -> list[dict]:
    """Table rows: median CPU seconds, FVU, dead %, and each trainer's ratios to headsteer's values."""
    ref = results["headsteer"]

    def ratio(a: float, b: float) -> float | str:
        return round(a / b, 2) if b > 0 else "-"

    rows = []
    for name, r in results.items():
        cpu = statistics.median(r["cpu_s"])
        rows.append(
            {
                "trainer": name if r["version"] is None else f"{name} ({r['version']})",
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
    p.add_argument("--run", type=Path, help="finished run whose extracted activations to use (default: synthetic)")
    p.add_argument("--layer", type=int, default=1, help="extracted layer of --run (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=DEMO["epochs"], help="epochs of every trainer (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=2, help="timed trainings per trainer (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sparsify-warmup", type=int, default=0, help="eai-sparsify's warm-up steps (default: %(default)s)")
    args = parse(p, argv, repeats=1, run=None, epochs=QUICK["epochs"])
    torch.set_num_threads(1 if args.quick else args.threads)
    if args.device == "cpu":
        os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")  # sparsify's Triton decoder is for GPUs
    if args.quick:
        data = synthetic(2048, 512, 32)
    elif args.run is not None:
        data = load_run(args.run, args.layer)
    else:
        data = synthetic(60000, 10000, 192)
    args.acts = "run" if args.run is not None and not args.quick else "synthetic"
    cfg = SAEConfig(**{**(QUICK if args.quick else DEMO), "epochs": args.epochs})
    batches = [i for e in range(cfg.epochs) for i in epoch_batches(data.train.shape[0], cfg.batch_size, e, args.seed)]
    print(
        f"activations: {data.label}; d_sae {cfg.expansion}x, k {cfg.k}, {cfg.epochs} epochs of batch {cfg.batch_size}"
    )
    sys.stdout.flush()
    setup = Setup(data, cfg, batches, args.seed, args.device, args.sparsify_warmup)
    results = measure(setup, args.repeats)
    rows = rows_of(results)
    table(rows, COLUMNS)
    payload = {"cpu": cpu_model(), "activations": data.label, "sae": vars(cfg), "trainers": results, "rows": rows}
    save("sae_train", args, payload, full={"acts": "run"})


if __name__ == "__main__":
    main()
