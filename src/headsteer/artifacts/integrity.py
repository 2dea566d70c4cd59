"""What a finished stage's files promise, and how to check it cheaply.

- `done.json` (written last) records the size and blake2b digest of every artifact of the stage;
- `config.json` records the `inputs` of the stage: the digest of each earlier stage's done.json when
  this one started. An earlier stage that was redone since (a new done.json) makes this one stale.

Both are read through `read_record`, which checks their shape: valid JSON of another shape (`null`, a
list, `{"artifacts": 5}`) is one line naming the file, never an AttributeError further on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from headsteer.artifacts import manifest
from headsteer.artifacts.io import file_digest, read_json
from headsteer.core.errors import HeadsteerError

STAGES = ["prune", "extract", "sae", "steer", "report"]
BOOKKEEPING = ("config.json", "done.json")
"""Files of a stage folder that are not artifacts (no digest in done.json)."""


def _is_map(obj: Any, value_ok) -> bool:
    return isinstance(obj, dict) and all(isinstance(k, str) and value_ok(v) for k, v in obj.items())


def _artifact_ok(rec: Any) -> bool:
    return isinstance(rec, dict) and type(rec.get("size")) is int and isinstance(rec.get("blake2b"), str)


def record_problem(name: str, obj: Any) -> str | None:
    """What keeps `obj`, read from a stage folder's `name` (config.json or done.json), from being the
    record headsteer writes there; None when its shape is right. A done.json without `artifacts` (an
    older headsteer's) is left to `damage`."""
    if not isinstance(obj, dict):
        return f"holds {json.dumps(obj)[:40]}, not a JSON object"
    if name == "config.json":
        if not isinstance(obj.get("config"), dict):
            return "has no 'config' object"
        inputs = obj.get("inputs", {})
        if not _is_map(inputs, lambda v: isinstance(v, str)) or not set(inputs) <= set(STAGES):
            return "has 'inputs' that are not {stage: digest}"
    elif not _is_map(obj.get("artifacts", {}), _artifact_ok):
        return "has 'artifacts' that are not {path: {size, blake2b}}"
    return None


def read_record(path: Path) -> dict:
    """A stage folder's config.json or done.json, its shape checked; a HeadsteerError naming the file otherwise."""
    obj = read_json(path)
    problem = record_problem(path.name, obj)
    if problem:
        raise HeadsteerError(
            f"{path} {problem}, not the record headsteer writes there; redo its stage (`headsteer run` with the run's "
            "config redoes it and every later stage)"
        )
    return obj


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
        recorded = read_record(folder / "done.json").get("artifacts")
    except HeadsteerError:
        return {"done.json": "became unreadable or took another shape"}
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
