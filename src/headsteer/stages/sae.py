"""Stage `sae`: one top-k SAE per extracted layer, on its CLS tokens, saved in SAELens v6 layout, plus
the reconstruction control (decision network of that layer reads x_hat instead of x).

Writes, per layer l, `RUN/sae/layer_<l>/sae/{cfg.json, sae_weights.safetensors}`, its `metrics.json`
(per-epoch log, test MSE, FVU, L0, dead fraction, reconstruction control) and a per-epoch
`checkpoint.safetensors`; a layer whose metrics.json exists is finished and skipped on resume.
`RUN/sae/metrics.json` holds the headline layer's metrics with every layer's under `by_layer`.

Divergence stops training with one line naming `sae.lr`: every training forward is checked for a
non-finite reconstruction (before that step's update), and every epoch's loss and weights before
its checkpoint is written, so no NaN reaches a checkpoint or a result file.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from headsteer.artifacts.activations import extracted_layers, hook_name, load_split
from headsteer.artifacts.io import checkpoint_state, load_checkpoint, read_json, save_checkpoint, write_json
from headsteer.config import RunConfig
from headsteer.core.errors import HeadsteerError
from headsteer.core.finite import diverged, first_nonfinite
from headsteer.core.runtime import progress, resolve_device
from headsteer.model import AdaViT
from headsteer.model.configured import PrunedModel, load_pruned
from headsteer.prune.evaluate import predict, summarize
from headsteer.sae.topk import TopKSAE, run_folder
from headsteer.sae.train import SAETrainer, evaluate_sae, geometric_median


def reconstruction_control(
    model: AdaViT, sae: TopKSAE, split, transform, layer: int, batch_size: int, device: torch.device, num_classes: int
) -> dict:
    """Accuracy / usage with the decision input of `layer` replaced by its SAE reconstruction."""
    with model.override_decision_input(layer, lambda cls: sae.reconstruct(cls.float()).to(cls.dtype)):
        preds, masks = predict(model, split, transform, batch_size, device, desc="reconstruction control")
    return summarize(preds, split.labels, masks, model.pruned_layers, num_classes)


def init_b_dec(sae: TopKSAE, x_train: torch.Tensor, how: str, seed: int) -> None:
    """Decoder bias at the geometric median (or mean) of up to 10k seeded training rows."""
    g = torch.Generator().manual_seed(seed)
    sample = x_train[torch.randperm(x_train.shape[0], generator=g)[:10000]]
    with torch.no_grad():
        sae.b_dec.copy_(geometric_median(sample) if how == "geometric_median" else sample.mean(0))


def divergence(cfg: RunConfig, folder: Path, what: str) -> HeadsteerError:
    """The one-line error of a diverged SAE of the layer folder `folder`: lower sae.lr."""
    kept = (folder / "checkpoint.safetensors").is_file() or any(folder.parent.glob("layer_*/metrics.json"))
    return diverged(f"{what} ({folder.name.replace('_', ' ')})", "sae.lr", cfg.sae.lr, kept)


@contextmanager
def stop_on_nonfinite(cfg: RunConfig, folder: Path, trainer: SAETrainer) -> Iterator[None]:
    """While training: a NaN or an infinity in any reconstruction (so in the loss) stops the step before its update."""

    def check(out) -> None:
        if not bool(torch.isfinite(out.recon)):
            raise divergence(cfg, folder, f"the reconstruction loss became non-finite at step {trainer.step + 1}")

    trainer.check_forward = check
    try:
        yield
    finally:
        trainer.check_forward = None


def check_epoch(cfg: RunConfig, folder: Path, sae: TopKSAE, stats, epoch: int) -> None:
    """An epoch's mean loss and the weights after it are finite (checked before its checkpoint is written)."""
    if not (math.isfinite(stats.mse) and math.isfinite(stats.fvu)):
        raise divergence(cfg, folder, f"the loss of epoch {epoch} became non-finite (mse {stats.mse})")
    bad = first_nonfinite(sae.named_parameters())
    if bad is not None:
        raise divergence(cfg, folder, f"weight {bad} became non-finite in epoch {epoch}")


def train(cfg: RunConfig, folder: Path, sae: TopKSAE, x_train: torch.Tensor) -> dict:
    """Train (or resume) the SAE for sae.epochs, checkpointing after every epoch; returns the state."""
    c = cfg.sae
    steps_per_epoch = math.ceil(x_train.shape[0] / c.batch_size)
    trainer = SAETrainer(sae, c, total_steps=c.epochs * steps_per_epoch)
    ckpt = folder / "checkpoint.safetensors"
    state = {"epoch": 0, "history": [], "since_fired": None, "step": 0, "seconds": 0.0}
    if ckpt.is_file():
        state = checkpoint_state(ckpt)
        load_checkpoint(ckpt, sae, trainer.optimizer)
        trainer.load_state_dict(state)
        print(f"[sae] resuming after epoch {state['epoch']}", flush=True)
    else:
        init_b_dec(sae, x_train, c.init_b_dec, cfg.seed)
    started = time.time() - state["seconds"]
    bar = progress(range((c.epochs - state["epoch"]) * steps_per_epoch), desc="sae")
    for epoch in range(state["epoch"], c.epochs):
        with stop_on_nonfinite(cfg, folder, trainer):
            stats = trainer.train_epoch(x_train, epoch, cfg.seed, bar)
        check_epoch(cfg, folder, sae, stats, epoch + 1)
        state["history"].append({"epoch": epoch + 1, **stats.__dict__})
        state.update(epoch=epoch + 1, seconds=time.time() - started, **trainer.state_dict())
        save_checkpoint(ckpt, sae, trainer.optimizer, state)
        if (epoch + 1) % max(1, c.epochs // 10) == 0 or epoch + 1 == c.epochs:
            print(
                f"[sae] epoch {epoch + 1}/{c.epochs}: mse {stats.mse:.5f}, fvu {stats.fvu:.4f}, "
                f"l0 {stats.l0:.1f}, dead {stats.dead_fraction:.3f}",
                flush=True,
            )
    bar.close()
    return state


def control_metrics(cfg: RunConfig, pm: PrunedModel, sae: TopKSAE, layer: int, device: torch.device, test) -> dict:
    """The reconstruction control beside the unsteered model's numbers."""
    nc = len(pm.data.classes)
    base = summarize(test.predictions, test.labels, test.masks.bool(), pm.model.pruned_layers, nc)
    recon = reconstruction_control(
        pm.model, sae, pm.data.test, pm.test_tf, layer, cfg.prune.eval_batch_size, device, nc
    )
    return {
        "accuracy": recon["accuracy"],
        "head_usage": recon["head_usage"],
        "head_usage_layer": recon["usage_per_layer"][layer],
        "accuracy_delta": recon["accuracy"] - base["accuracy"],
        "head_usage_delta": recon["head_usage"] - base["head_usage"],
        "head_usage_layer_delta": recon["usage_per_layer"][layer] - base["usage_per_layer"][layer],
        "baseline_accuracy": base["accuracy"],
        "baseline_head_usage": base["head_usage"],
        "baseline_head_usage_layer": base["usage_per_layer"][layer],
    }


def train_layer(cfg: RunConfig, pm: PrunedModel, folder: Path, layer: int, device: torch.device) -> dict:
    """Train, save and evaluate the SAE of one layer in `folder`; returns its metrics."""
    c = cfg.sae
    train_acts, test = load_split(cfg.out, "train", layer), load_split(cfg.out, "test", layer)
    d_in = train_acts.cls.shape[1]
    torch.manual_seed(cfg.seed)
    sae = TopKSAE(d_in, c.d_sae or c.expansion * d_in, c.k, hook_name=hook_name(layer), model_name=cfg.model.arch).to(
        device
    )
    folder.mkdir(exist_ok=True)
    state = train(cfg, folder, sae, train_acts.cls)
    sae.cpu().save(run_folder(cfg.out, layer))
    sae.to(device)
    test_stats = evaluate_sae(sae, test.cls, device=device)
    train_dead = state["history"][-1]["dead_fraction"]
    control = control_metrics(cfg, pm, sae, layer, device, test)
    metrics = {
        "d_in": d_in,
        "d_sae": sae.d_sae,
        "k": sae.k,
        "layer": layer,
        "epochs": c.epochs,
        "mse": test_stats.mse,
        "fvu": test_stats.fvu,
        "l0": test_stats.l0,
        "dead_fraction": train_dead,
        "never_fired_on_test": test_stats.dead_fraction,
        "reconstruction": control,
        "history": state["history"],
        "seconds": round(state["seconds"], 1),
    }
    write_json(folder / "metrics.json", metrics)
    print(
        f"[sae] layer {layer} test: mse {test_stats.mse:.5f}, fvu {test_stats.fvu:.4f}, l0 {test_stats.l0:.1f}, "
        f"dead {train_dead:.3f}; reconstruction control: acc {control['accuracy_delta'] * 100:+.2f} pts, usage "
        f"{control['head_usage_delta']:+.4f} (layer {layer}: {control['head_usage_layer_delta']:+.4f})",
        flush=True,
    )
    return metrics


def run(cfg: RunConfig, folder: Path) -> dict:
    device = resolve_device(cfg.device)
    pm = load_pruned(cfg, device)
    headline, layers = extracted_layers(cfg.out)
    by_layer = {}
    for layer in layers:
        sub = folder / f"layer_{layer}"
        done = sub / "metrics.json"  # a finished layer's marker; one of another shape is trained (resumed) again
        record = read_json(done) if done.is_file() else None
        finished = isinstance(record, dict) and "mse" in record
        by_layer[str(layer)] = record if finished else train_layer(cfg, pm, sub, layer, device)
    metrics = {**by_layer[str(headline)], "by_layer": by_layer}
    write_json(folder / "metrics.json", metrics)
    return metrics
