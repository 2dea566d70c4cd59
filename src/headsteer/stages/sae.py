"""Stage `sae`: top-k SAE on the extracted CLS tokens, saved in SAELens v6 layout, plus the
reconstruction control (decision network of the steered layer reads x_hat instead of x).

Writes `RUN/sae/sae/{cfg.json, sae_weights.safetensors}`, `metrics.json` (per-epoch log, test MSE,
FVU, L0, dead fraction, reconstruction control) and a per-epoch `checkpoint.safetensors`.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from headsteer.config import RunConfig
from headsteer.data import iterate
from headsteer.engine import progress, resolve_device, summarize
from headsteer.errors import HeadsteerError
from headsteer.io import checkpoint_state, load_checkpoint, read_json, save_checkpoint, write_json
from headsteer.model import AdaViT
from headsteer.sae.topk import TopKSAE
from headsteer.sae.train import SAETrainer, evaluate_sae, geometric_median
from headsteer.stages.extract import load_activations, load_pruned


@torch.inference_mode()
def reconstruction_control(model: AdaViT, sae: TopKSAE, split, transform, layer: int, batch_size: int,
                           device: torch.device, num_classes: int) -> dict:
    """Accuracy / usage with the decision input of `layer` replaced by its SAE reconstruction."""
    preds, masks = [], []
    with model.override_decision_input(layer, lambda cls: sae(cls.float()).x_hat.to(cls.dtype)):
        for images, _ in progress(iterate(split, batch_size), desc="reconstruction control",
                                  total=math.ceil(len(split) / batch_size)):
            out = model(transform(images).to(device))
            preds.append(out.logits.argmax(1).cpu())
            masks.append(out.masks.bool().cpu())
    return summarize(torch.cat(preds), split.labels, torch.cat(masks), model.pruned_layers, num_classes)


def run(cfg: RunConfig, folder: Path) -> dict:
    device = resolve_device(cfg.device)
    c = cfg.sae
    train = load_activations(cfg.out, "train")
    test = load_activations(cfg.out, "test")
    extract_meta = read_json(Path(cfg.out) / "extract" / "metrics.json")
    x_train = train["cls"]  # (N, d)
    d_in = x_train.shape[1]
    d_sae = c.d_sae or c.expansion * d_in
    if c.k > d_sae:
        raise HeadsteerError(f"sae.k={c.k} is larger than d_sae={d_sae} (= sae.expansion {c.expansion} x d_in {d_in}); "
                             "lower sae.k or raise sae.expansion / sae.d_sae")
    torch.manual_seed(cfg.seed)
    sae = TopKSAE(d_in, d_sae, c.k, hook_name=extract_meta["hook_name"], model_name=cfg.model.arch).to(device)
    steps_per_epoch = math.ceil(x_train.shape[0] / c.batch_size)
    trainer = SAETrainer(sae, c, total_steps=c.epochs * steps_per_epoch)
    ckpt = folder / "checkpoint.safetensors"
    state = {"epoch": 0, "history": [], "since_fired": None, "step": 0, "seconds": 0.0}
    if ckpt.is_file():
        state = checkpoint_state(ckpt)
        load_checkpoint(ckpt, sae, trainer.optimizer)
        trainer.since_fired = torch.tensor(state["since_fired"], dtype=torch.long)
        trainer.step = state["step"]
        print(f"[sae] resuming after epoch {state['epoch']}")
    else:
        g = torch.Generator().manual_seed(cfg.seed)
        sample = x_train[torch.randperm(x_train.shape[0], generator=g)[:10000]]
        with torch.no_grad():
            sae.b_dec.copy_(geometric_median(sample) if c.init_b_dec == "geometric_median" else sample.mean(0))
    started = time.time() - state["seconds"]
    bar = progress(range((c.epochs - state["epoch"]) * steps_per_epoch), desc="sae")
    for epoch in range(state["epoch"], c.epochs):
        stats = trainer.train_epoch(x_train, epoch, cfg.seed, bar)
        state["history"].append({"epoch": epoch + 1, **stats.__dict__})
        state.update(epoch=epoch + 1, since_fired=trainer.since_fired.tolist(), step=trainer.step,
                     seconds=time.time() - started)
        save_checkpoint(ckpt, sae, trainer.optimizer, state)
        if (epoch + 1) % max(1, c.epochs // 10) == 0 or epoch + 1 == c.epochs:
            print(f"[sae] epoch {epoch + 1}/{c.epochs}: mse {stats.mse:.5f}, fvu {stats.fvu:.4f}, l0 {stats.l0:.1f}, "
                  f"dead {stats.dead_fraction:.3f}", flush=True)
    bar.close()
    sae.cpu().save(folder / "sae")
    sae.to(device)
    test_stats = evaluate_sae(sae, test["cls"], device=device)
    train_dead = state["history"][-1]["dead_fraction"]

    # reconstruction control: x_hat instead of x in the steered layer's decision network
    ds, model, test_tf = load_pruned(cfg, device)
    layer = extract_meta["layer"]
    base = summarize(test["predictions"], test["labels"], test["masks"].bool(), model.pruned_layers, len(ds.classes))
    recon = reconstruction_control(model, sae, ds.test, test_tf, layer, cfg.prune.eval_batch_size, device,
                                   len(ds.classes))
    control = {
        "accuracy": recon["accuracy"], "head_usage": recon["head_usage"],
        "head_usage_layer": recon["usage_per_layer"][layer],
        "accuracy_delta": recon["accuracy"] - base["accuracy"],
        "head_usage_delta": recon["head_usage"] - base["head_usage"],
        "head_usage_layer_delta": recon["usage_per_layer"][layer] - base["usage_per_layer"][layer],
        "baseline_accuracy": base["accuracy"], "baseline_head_usage": base["head_usage"],
        "baseline_head_usage_layer": base["usage_per_layer"][layer],
    }
    metrics = {"d_in": d_in, "d_sae": d_sae, "k": sae.k, "layer": layer, "epochs": c.epochs,
               "mse": test_stats.mse, "fvu": test_stats.fvu, "l0": test_stats.l0,
               "dead_fraction": train_dead, "never_fired_on_test": test_stats.dead_fraction,
               "reconstruction": control, "history": state["history"], "seconds": round(time.time() - started, 1)}
    write_json(folder / "metrics.json", metrics)
    print(f"[sae] test: mse {test_stats.mse:.5f}, fvu {test_stats.fvu:.4f}, l0 {test_stats.l0:.1f}, dead {train_dead:.3f}; "
          f"reconstruction control: acc {control['accuracy_delta'] * 100:+.2f} pts, usage {control['head_usage_delta']:+.4f} "
          f"(layer {layer}: {control['head_usage_layer_delta']:+.4f})")
    return metrics
