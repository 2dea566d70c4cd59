"""Pipeline stages; each `run(cfg, folder)` reads earlier stages' files and writes its own.

No stage imports another: they talk only through the files of the run folder. `run_all` and
`run_stage` check everything that can be checked before training, hold the run folder's lock for the
whole command, and skip a finished stage only when its config is unchanged and its artifacts still
match done.json; a damaged one is redone from its last checkpoint, and every later stage after it.
"""

from __future__ import annotations

import importlib
import time
from contextlib import nullcontext
from pathlib import Path

from headsteer.artifacts import manifest
from headsteer.artifacts.integrity import STAGES, damage, inputs
from headsteer.config import RunConfig
from headsteer.core import distributed
from headsteer.core.errors import HeadsteerError
from headsteer.core.runtime import configure_threads
from headsteer.model.configured import check_up_front
from headsteer.stages.common import (
    RUNNING,
    Redo,
    check_foreign,
    command_for,
    finished,
    mark_done,
    prepare,
    stage_config,
    unfinished_reason,
)
from headsteer.stages.runlock import run_lock


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


def _lock(cfg: RunConfig):
    """The run folder's lock, taken by rank 0 (torchrun's other ranks work under it)."""
    return run_lock(cfg.out) if distributed.info().is_main else nullcontext()


def _start(cfg: RunConfig, name: str, wanted: dict, force: bool, skip_done: bool, upstream_ran: bool) -> Redo | None:
    """How the stage starts (common.Redo), or None when it is finished, intact and may be skipped."""
    folder = Path(cfg.out) / name
    done = finished(folder, wanted, inputs(cfg.out, name))
    problems = damage(folder) if done else {}
    if skip_done and not force and not upstream_ran and done and not problems:
        return None
    if problems and distributed.info().is_main:
        rel, what = next(iter(problems.items()))
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        later = ", then every later stage" if skip_done and name != STAGES[-1] else ""
        print(f"[{name}] {folder / rel} {what}{more} since the stage finished: redoing {name}{later}", flush=True)
    return "over" if force or upstream_ran else "again" if done else "resume"


def _run_stage(
    cfg: RunConfig, name: str, force: bool, skip_done: bool, command: str, upstream_ran: bool, again: str = ""
) -> bool:
    """Run stage `name` unless it may be skipped; True when it ran. `again`: the command line that resumes
    it once interrupted (the interrupt message names it when `force` would start it over)."""
    configure_threads(cfg.threads)
    dist = distributed.info()
    folder = Path(cfg.out) / name
    wanted = stage_config(cfg, name)
    redo = _start(cfg, name, wanted, force, skip_done, upstream_ran)
    if redo is None:
        if dist.is_main:
            print(f"[{name}] already done in {cfg.out}/{name} with this config; skipping", flush=True)
        return False
    distributed.barrier()  # every rank has decided before rank 0 changes the folder
    if dist.is_main:
        prepare(cfg, name, wanted, inputs(cfg.out, name), redo, force, command)
        print(f"[{name}] started -> {folder}", flush=True)
    distributed.barrier()
    started = time.time()
    RUNNING.update(out=str(cfg.out), stage=name, force=force, again=again)
    with manifest.recording(folder):
        if dist.is_main or name in DISTRIBUTED_STAGES:
            importlib.import_module(f"headsteer.stages.{name}").run(cfg, folder)
        distributed.barrier()
        if dist.is_main:
            mark_done(cfg, name, folder, wanted, time.time() - started)
            print(f"[{name}] done in {time.time() - started:.0f} s", flush=True)
    RUNNING.clear()
    return True


def check_upstream(cfg: RunConfig, name: str, command: str) -> None:
    """Before one stage runs alone: every earlier stage finished with this config, its artifacts intact;
    else one line naming the command that redoes it."""
    for stage in STAGES[: STAGES.index(name)]:
        folder = Path(cfg.out) / stage
        redo = command_for(command, stage, cfg.out)
        wanted, made_from = stage_config(cfg, stage), inputs(cfg.out, stage)
        if not finished(folder, wanted, made_from):
            why = unfinished_reason(folder, wanted, made_from)
            raise HeadsteerError(f"the {stage} stage in {folder} {why}; run `{redo}` first (or `headsteer run`)")
        problems = damage(folder)
        if problems:
            rel, what = next(iter(problems.items()))
            raise HeadsteerError(
                f"{folder / rel} {what} since the {stage} stage finished; run `{redo}` to redo it (or `headsteer "
                "run`, which also redoes every later stage)"
            )


def run_stage(cfg: RunConfig, name: str, force: bool = False, skip_done: bool = True, command: str = "") -> bool:
    """Run one stage unless it is finished, intact, with the same config; True when it ran.

    `command` is the command line that asked for it, recorded in the stage's config.json."""
    check_up_front(cfg)
    check_foreign(Path(cfg.out) / name)
    with _lock(cfg):
        check_upstream(cfg, name, command)
        return _run_stage(cfg, name, force, skip_done, command, False, command_for(command, name, cfg.out))


def run_all(cfg: RunConfig, force: bool = False, command: str = "") -> None:
    """Every stage in order; once one has run, every later one runs again from scratch (its inputs changed)."""
    check_up_front(cfg)
    names = available()
    for name in names:
        check_foreign(Path(cfg.out) / name)
    with _lock(cfg):
        ran = False
        for name in names:
            ran = _run_stage(cfg, name, force, True, command, ran, command or command_for("", "run", cfg.out)) or ran
