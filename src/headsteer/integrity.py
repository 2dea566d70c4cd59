"""What a finished stage's files promise, and how to check it cheaply.

- `done.json` (written last) records the size and blake2b digest of every artifact of the stage;
- `config.json` records the `inputs` of the stage: the digest of each earlier stage's done.json when
  this one started. An earlier stage that was redone since (a new done.json) makes this one stale.
"""

from __future__ import annotations

import os
from pathlib import Path

from headsteer import manifest
from headsteer.errors import HeadsteerError
from headsteer.io import file_digest, read_json

STAGES = ["prune", "extract", "sae", "steer", "report"]
BOOKKEEPING = ("config.json", "done.json")
"""Files of a stage folder that are not artifacts (no digest in done.json)."""


def artifacts(folder: Path) -> dict[str, dict]:
    """{relative path: {size, blake2b}} of every file headsteer wrote in `folder` (bookkeeping aside)."""
    out = {}
    for rel in manifest.listed(folder):
        path = folder / rel
        if rel not in BOOKKEEPING and path.is_file():
            out[rel] = {"size": os.path.getsize(path), "blake2b": file_digest(path)}
    return out


def inputs(run_dir: str | Path, stage: str) -> dict[str, str]:
    """{earlier stage: digest of its done.json}: the finished results `stage` is computed from."""
    out = {}
    for earlier in STAGES[: STAGES.index(stage)]:
        done = Path(run_dir) / earlier / "done.json"
        if done.is_file():
            out[earlier] = file_digest(done)
    return out


def stale(recorded: dict | None, current: dict[str, str]) -> list[str]:
    """The earlier stages whose results changed since a stage recorded `recorded` as its inputs."""
    recorded = recorded or {}
    return [s for s in sorted(set(recorded) | set(current), key=STAGES.index) if recorded.get(s) != current.get(s)]


def damage(folder: Path) -> dict[str, str]:
    """{relative path: what happened to it} for the artifacts of a finished stage that no longer match
    its done.json (missing, or another size or content); empty when all are intact."""
    try:
        recorded = read_json(folder / "done.json").get("artifacts")
    except HeadsteerError:
        return {"done.json": "is unreadable"}
    if recorded is None:
        return {"done.json": "lists no artifacts (an older headsteer wrote it)"}
    problems = {}
    for rel, rec in recorded.items():
        path = folder / rel
        if not path.is_file():
            problems[rel] = "is missing"
        elif path.stat().st_size != rec["size"] or file_digest(path) != rec["blake2b"]:
            problems[rel] = "changed"
    return problems


def finished_stages(run_dir: Path) -> list[str]:
    """The stages of `run_dir` that finished (their done.json written), each checked as `headsteer run`
    checks a stage before skipping it: made from the current results of the stages before it (`stale`),
    its artifacts intact (`damage`). A finished stage that fails either check is one line naming it."""
    done = []
    for stage in STAGES:
        folder = run_dir / stage
        if not (folder / "done.json").is_file():
            continue
        record = read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
        record = record if isinstance(record, dict) else {}
        redo = f"`{record.get('command') or f'headsteer run CONFIG --out {run_dir}'}`"
        changed = stale(record.get("inputs"), inputs(run_dir, stage))
        if changed:
            raise HeadsteerError(
                f"{folder} was made from an earlier result of the {', '.join(changed)} stage, which was redone "
                f"or left unfinished since: the run's stages disagree; finish the run ({redo}) or open another folder"
            )
        problems = damage(folder)
        if problems:
            rel, what = next(iter(problems.items()))
            raise HeadsteerError(
                f"{folder / rel} {what} since the {stage} stage finished; redo it ({redo}) or open another folder"
            )
        done.append(stage)
    return done
