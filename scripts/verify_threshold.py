"""Check the threshold baseline of a finished run against an independent computation.

For the threshold point whose steered-layer usage is nearest the usage that per-class steering reaches
at the largest α (the matched usage of the verdict), add its shift b to the bias of the steered
layer's decision network in the saved model, run the whole model on the test set, and compare
accuracy and usage with results.json.

    python scripts/verify_threshold.py configs/demo.yaml [key=value ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from headsteer.config.loader import load_config
from headsteer.model.configured import load_pruned
from headsteer.prune.evaluate import predict


def main(argv: list[str]) -> None:
    cfg = load_config(argv[0], argv[1:])
    results = json.loads((Path(cfg.out) / "report" / "results.json").read_text())
    st = results["steering"]
    layer, t = st["layer"], st["threshold"]
    target = st["curves"]["true"]["per_class"]["head_usage"][st["alphas"].index(max(st["alphas"]))]
    k = min(range(len(t["values"])), key=lambda i: abs(t["head_usage"][i] - target))
    pm = load_pruned(cfg, torch.device("cpu"))
    net = pm.model.decisions[str(layer)].net
    last = net[-1] if isinstance(net, torch.nn.Sequential) else net  # the Linear that emits the head logits
    with torch.no_grad():
        last.bias += t["values"][k]  # a_h + b for every head: the threshold shift
    pred, masks = predict(pm.model, pm.data.test, pm.test_tf, cfg.prune.eval_batch_size, torch.device("cpu"))
    acc = (pred == pm.data.test.labels).float().mean().item()
    usage = masks[:, layer].float().mean().item()
    print(f"threshold shift b = {t['values'][k]:+.4f} (usage nearest {target:.3f})")
    print(f"  results.json: accuracy {100 * t['accuracy'][k]:.2f} %, usage {t['head_usage'][k]:.4f}")
    print(f"  full forward: accuracy {100 * acc:.2f} %, usage {usage:.4f}")
    print(f"  difference: {100 * (acc - t['accuracy'][k]):+.3f} pts, usage {usage - t['head_usage'][k]:+.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
