"""Pipeline stages; each `run(cfg, folder)` reads earlier stages' files and writes its own.

No stage imports another: they talk only through the files of the run folder.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import torch

from headsteer import distributed
from headsteer.config import RunConfig
from headsteer.model.configured import check_steered_layers
from headsteer.stages.common import STAGES, is_done, mark_done, prepare


def available() -> list[str]:
    """Stages implemented so far, in pipeline order."""
    out = []
    for name in STAGES:
        try:
            importlib.import_module(f"headsteer.stages.{name}")
            out.append(name)
        except ModuleNotFoundError:
            break
    return out


DISTRIBUTED_STAGES = ("prune", "extract")
"""Stages every torchrun process takes part in; the others run on rank 0 while the rest wait."""


def run_stage(cfg: RunConfig, name: str, force: bool = False, skip_done: bool = True, command: str = "") -> bool:
    """Run one stage unless it is finished with the same config; True when it ran.

    `command` is the command line that asked for it, recorded in the stage's config.json."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    dist = distributed.info()
    if skip_done and not force and is_done(cfg, name):
        if dist.is_main:
            print(f"[{name}] already done in {cfg.out}/{name} with this config; skipping", flush=True)
        return False
    folder = Path(cfg.out) / name
    if dist.is_main:
        folder = prepare(cfg, name, force, command)
        (folder / "done.json").unlink(missing_ok=True)
        print(f"[{name}] started -> {folder}", flush=True)
    distributed.barrier()
    started = time.time()
    if dist.is_main or name in DISTRIBUTED_STAGES:
        importlib.import_module(f"headsteer.stages.{name}").run(cfg, folder)
    distributed.barrier()
    if dist.is_main:
        mark_done(folder, time.time() - started)
        print(f"[{name}] done in {time.time() - started:.0f} s", flush=True)
    return True


def run_all(cfg: RunConfig, force: bool = False, command: str = "") -> None:
    check_steered_layers(cfg)
    for name in available():
        run_stage(cfg, name, force, command=command)
