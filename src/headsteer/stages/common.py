"""Run-directory bookkeeping shared by the stages.

Each stage owns `RUN/<stage>/`, holding its marker and manifest (`.headsteer-manifest`, see
headsteer.artifacts.manifest), `config.json` (the config sections the stage depends on, the git SHA; for prune
also the data fingerprint), its artifacts, `metrics.json`, and `done.json` written last with the
size and blake2b digest of every artifact (headsteer.artifacts.integrity). A finished stage whose
config is unchanged, whose artifacts still match done.json and whose earlier stages were not redone
since it started is skipped. A folder made by a different config is refused unless
`force` is given, or unless it holds nothing valid yet (a first attempt that failed early). Cleaning
a folder removes only what its manifest lists; a folder without a marker that holds anything is
never written into nor cleaned.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Literal

from headsteer.artifacts import manifest
from headsteer.artifacts.atomic import make_folder, remove_stale_temps
from headsteer.artifacts.integrity import artifacts, damage, read_record, stale
from headsteer.artifacts.io import git_sha, write_json, write_text
from headsteer.config import RunConfig
from headsteer.config.loader import config_diff
from headsteer.core import distributed
from headsteer.core.errors import HeadsteerError
from headsteer.data import UNAVAILABLE, data_fingerprint

# Config sections each stage's result depends on (a change upstream invalidates downstream stages).
SECTIONS = {
    "prune": ["seed", "data", "model", "prune"],
    "extract": ["seed", "data", "model", "prune", "extract"],
    "sae": ["seed", "data", "model", "prune", "extract", "sae"],
    "steer": ["seed", "data", "model", "prune", "extract", "sae", "steer"],
    "report": ["seed", "data", "model", "prune", "extract", "sae", "steer"],
}
RUNNING: dict = {}
"""{'out': run folder, 'stage': name, 'force': bool, 'again': the command that resumes it} while a stage
runs (what an interrupted command resumes, and how)."""
CHECKPOINT = "checkpoint.safetensors"

Redo = Literal["resume", "again", "over"]
"""How a stage starts: `resume` keeps everything (an unfinished stage continues); `again` removes
all but its intact checkpoints (a finished stage re-run, or one whose artifacts were damaged);
`over` removes everything it wrote (--force, or an earlier stage ran again)."""


def stage_config(cfg: RunConfig, stage: str) -> dict:
    """The config sections `stage` depends on, plus the number of training processes (under torchrun
    the global batch is batch_size x world_size, so it changes the result); prune adds the data's
    fingerprint, so changed data invalidates it (and, through it, every later stage) like a changed config."""
    full = asdict(cfg)
    out = {key: full[key] for key in SECTIONS[stage] if key in full}
    out["world_size"] = distributed.info().world_size
    if stage == "prune":
        out["data_fingerprint"] = data_fingerprint(cfg.data)
    return out


def command_for(command: str, stage: str, out: str) -> str:
    """The command line that runs `stage` with the config and overrides of `command` ('headsteer run ...')."""
    words = shlex.split(command) if command else ["headsteer", "run", "CONFIG", "--out", out]
    if words[:2] == ["headsteer", "run"]:
        words[1] = stage
    return shlex.join(words)


def check_foreign(folder: Path) -> None:
    """Refuse a stage folder that headsteer did not make: it holds something but carries no marker."""
    if folder.exists() and not folder.is_dir():
        raise HeadsteerError(f"{folder} is a file where a stage folder belongs; move it away or choose another --out")
    if folder.is_dir() and not manifest.has_marker(folder) and any(folder.iterdir()):
        raise HeadsteerError(
            f"{folder} holds files but no {manifest.MARKER}, so headsteer did not make it (or a version before "
            "markers did), and never writes into or deletes such a folder: move it away or choose another --out"
        )


def _recorded(folder: Path) -> dict | None:
    """config.json of a stage folder ({} when unreadable or not a stage record), None without one."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        return read_record(path)
    except HeadsteerError:
        return {}


def finished(folder: Path, wanted: dict, inputs: dict[str, str]) -> bool:
    """The stage finished in `folder` with the config `wanted`, from the earlier stages' results
    `inputs` (integrity.inputs); its artifacts may still be damaged (integrity.damage)."""
    record = _recorded(folder) or {}
    return (
        manifest.has_marker(folder)
        and (folder / "done.json").is_file()
        and record.get("config") == wanted
        and not stale(record.get("inputs"), inputs)
    )


def unfinished_reason(folder: Path, wanted: dict, inputs: dict[str, str]) -> str:
    """Why `finished` is False, as a phrase following the stage's name."""
    record = _recorded(folder)
    if record == {}:
        return f"has an unreadable {folder / 'config.json'} (or one headsteer did not write)"
    if record is None or not (folder / "done.json").is_file():
        return "has not finished"
    if record.get("config") != wanted:
        return "was made by a different config"
    return f"was made from an earlier result of the {', '.join(stale(record.get('inputs'), inputs))} stage"


def holds_results(folder: Path) -> bool:
    """Anything besides its config that headsteer wrote is in `folder` (a checkpoint, an artifact)."""
    return any((folder / rel).is_file() for rel in manifest.listed(folder) if rel != "config.json")


def _inside(folder: Path, rel: str) -> bool:
    """`rel` names a path in `folder` (no '..', no absolute path, no linked folder leading out of it)."""
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        return False
    return (folder / p).parent.resolve().is_relative_to(folder.resolve())


def clean(folder: Path, keep: Callable[[str], bool] = lambda rel: False) -> None:
    """Delete what headsteer wrote in `folder` (the files its manifest lists, their dead writers' temp
    files, the folders that leaves empty) except what `keep` keeps. Nothing else is touched."""
    kept, parents = [], set()
    try:
        for rel in manifest.listed(folder):
            path = folder / rel
            if not _inside(folder, rel):
                continue
            if keep(rel) and path.is_file():
                kept.append(rel)
                continue
            if path.is_file() or path.is_symlink():
                path.unlink()
            remove_stale_temps(path)
            parents.update(p for p in Path(rel).parents if p != Path("."))
        for sub in sorted(parents, key=lambda p: -len(p.parts)):  # deepest first
            if (folder / sub).is_dir() and not any((folder / sub).iterdir()):
                (folder / sub).rmdir()
    except OSError as exc:  # a read-only folder: the files not yet removed stay, still listed
        raise HeadsteerError(
            f"cannot remove {exc.filename or folder} to redo the {folder.name} stage ({exc.strerror or exc}); make "
            f"{folder} writable (chmod -R u+w {shlex.quote(str(folder))}) or choose another --out"
        ) from None
    write_text(folder / manifest.MARKER, manifest.HEADER + "".join(f"{rel}\n" for rel in kept))
    others = [str(p.relative_to(folder)) for p in sorted(folder.rglob("*")) if p.is_file()]
    others = [rel for rel in others if rel not in kept and rel != manifest.MARKER]
    if others:
        print(
            f"[{folder.name}] kept {len(others)} file(s) headsteer did not write: {', '.join(others[:3])}", flush=True
        )


def prepare(
    cfg: RunConfig, stage: str, wanted: dict, inputs: dict[str, str], redo: Redo, force: bool = False, command: str = ""
) -> Path:
    """Make (or check) the stage folder and clean it as `redo` says. A folder made by another config is
    refused unless `force`, or unless it holds nothing valid (then it simply starts over); one made from
    earlier results that were redone since (`inputs`) starts over, whatever its config: its results
    belong to earlier results that are gone (what an interrupted `run --force` leaves after its stage)."""
    folder = Path(cfg.out) / stage
    check_foreign(folder)
    record = _recorded(folder)
    if record == {}:  # which config (and which earlier results) made the folder is unknown
        print(
            f"[{stage}] {folder / 'config.json'} is unreadable or not a stage record: starting {stage} over", flush=True
        )
        record, redo = None, "over"
    old = record.get("config") if record is not None else None
    redone = stale((record or {}).get("inputs"), inputs)  # earlier stages redone since this one was made
    if old is not None and old != wanted:
        if holds_results(folder) and not force and not (redone and "inputs" in record):
            changes = "; ".join(config_diff(old, wanted)[:5])
            raise HeadsteerError(
                f"run folder {folder} was made by a different config ({changes}); pass --force to "
                f"redo the stage there, or --out to write elsewhere"
            )
        redo = "over"
    if record is not None and redone and holds_results(folder):
        why = (
            f"the {', '.join(redone)} stage was redone since this one started"
            if "inputs" in record
            else f"{folder / 'config.json'} does not record the earlier results it was made from (an older headsteer)"
        )
        print(f"[{stage}] {why}: starting {stage} over", flush=True)
        redo = "over"
    if redo == "over" and folder.is_dir():
        clean(folder)
    elif redo == "again":
        bad = damage(folder)
        clean(folder, keep=lambda rel: rel.endswith(CHECKPOINT) and rel not in bad)
    make_folder(folder)
    manifest.create(folder)
    (folder / "done.json").unlink(missing_ok=True)
    if not (folder / "config.json").is_file() or old != wanted or redone:
        _write_config(cfg, stage, folder, wanted, inputs, command)
    return folder


def _write_config(cfg: RunConfig, stage: str, folder: Path, wanted: dict, inputs: dict, command: str) -> None:
    record = {
        "stage": stage,
        "config": wanted,
        "inputs": inputs,
        "full_config": asdict(cfg),
        "git_sha": git_sha(),
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with manifest.recording(folder):
        write_json(folder / "config.json", record)


def mark_done(cfg: RunConfig, stage: str, folder: Path, wanted: dict, seconds: float) -> None:
    """Write done.json (the artifacts' sizes and digests). Data that could not be read when the stage
    started (a CIFAR-100 download) gets its fingerprint recorded now that it is there."""
    if wanted.get("data_fingerprint") == UNAVAILABLE:
        record = read_record(folder / "config.json")
        write_json(folder / "config.json", {**record, "config": stage_config(cfg, stage)})
    write_json(
        folder / "done.json",
        {
            "git_sha": git_sha(),
            "seconds": round(seconds, 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "artifacts": artifacts(folder),
        },
    )
