"""Run-directory bookkeeping shared by the stages.

Each stage owns `RUN/<stage>/` holding `config.json` (the config sections the stage depends on, the
git SHA), its artifacts, `metrics.json`, and `done.json` written last. A finished stage whose config
is unchanged is skipped; a folder made by a different config is refused unless `force` is given.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path

from headsteer import distributed
from headsteer.config import RunConfig
from headsteer.config_loader import config_diff
from headsteer.errors import HeadsteerError
from headsteer.io import git_sha, read_json, write_json

STAGES = ["prune", "extract", "sae", "steer", "report"]
# Config sections each stage's result depends on (a change upstream invalidates downstream stages).
SECTIONS = {
    "prune": ["seed", "data", "model", "prune"],
    "extract": ["seed", "data", "model", "prune", "extract"],
    "sae": ["seed", "data", "model", "prune", "extract", "sae"],
    "steer": ["seed", "data", "model", "prune", "extract", "sae", "steer"],
    "report": ["seed", "data", "model", "prune", "extract", "sae", "steer"],
}


def stage_config(cfg: RunConfig, stage: str) -> dict:
    """The config sections `stage` depends on, plus the number of training processes (under torchrun
    the global batch is batch_size x world_size, so it changes the result)."""
    full = asdict(cfg)
    out = {key: full[key] for key in SECTIONS[stage] if key in full}
    out["world_size"] = distributed.info().world_size
    return out


def is_done(cfg: RunConfig, stage: str) -> bool:
    folder = Path(cfg.out) / stage
    if not (folder / "done.json").is_file() or not (folder / "config.json").is_file():
        return False
    return read_json(folder / "config.json").get("config") == stage_config(cfg, stage)


def make_folder(folder: Path) -> None:
    """mkdir -p, with a one-line error when the path cannot be a folder (a file in the way, no permission)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HeadsteerError(
            f"cannot create the run folder {folder} ({exc.strerror or exc}); "
            "choose another --out (or `out=` in the config)"
        ) from None


def prepare(cfg: RunConfig, stage: str, force: bool = False, command: str = "") -> Path:
    """Create (or check) the stage folder; refuse a folder made by another config unless `force`."""
    folder = Path(cfg.out) / stage
    wanted = stage_config(cfg, stage)
    cfg_file = folder / "config.json"
    if cfg_file.is_file():
        old = read_json(cfg_file).get("config", {})
        if old != wanted:
            if not force:
                changes = "; ".join(config_diff(old, wanted)[:5])
                raise HeadsteerError(
                    f"run folder {folder} was made by a different config ({changes}); pass --force to "
                    f"redo the stage there, or --out to write elsewhere"
                )
            shutil.rmtree(folder)
    elif folder.exists() and force:
        shutil.rmtree(folder)
    make_folder(folder)
    if not cfg_file.is_file():
        write_json(
            cfg_file,
            {
                "stage": stage,
                "config": wanted,
                "full_config": asdict(cfg),
                "git_sha": git_sha(),
                "command": command,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
    return folder


def mark_done(folder: Path, seconds: float) -> None:
    write_json(
        folder / "done.json",
        {"git_sha": git_sha(), "seconds": round(seconds, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")},
    )
