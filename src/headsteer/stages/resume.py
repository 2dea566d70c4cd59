"""What an interrupted stage picks up from when the same command runs again (for the interrupt message)."""

from __future__ import annotations

import sys
from pathlib import Path

from headsteer.artifacts.io import checkpoint_state
from headsteer.core.errors import HeadsteerError
from headsteer.stages.common import RUNNING
from headsteer.stages.signals import Terminated


def _prune(folder: Path) -> str:
    ckpt = folder / "checkpoint.safetensors"
    if not ckpt.is_file():
        return "prune starts over (no checkpoint was written yet)"
    state = checkpoint_state(ckpt)
    if state["phase"] == "done":
        return "prune resumes after training, writing its final files"
    batch = (state.get("cursor") or {}).get("batch")
    return f"prune resumes at {state['phase']} epoch {state['epoch'] + 1}" + (f", batch {batch}" if batch else "")


def _extract(folder: Path) -> str:
    chunks = len(list(folder.glob("layer_*/*/chunk_*.safetensors")))
    return f"extract keeps its {chunks} finished chunk file(s) and extracts the rest"


def _sae(folder: Path) -> str:
    layers = [p for p in folder.glob("layer_*") if p.name[len("layer_") :].isdigit()]
    for sub in sorted(layers, key=lambda p: int(p.name[len("layer_") :])):
        if (sub / "metrics.json").is_file():
            continue
        ckpt = sub / "checkpoint.safetensors"
        epoch = checkpoint_state(ckpt)["epoch"] if ckpt.is_file() else 0
        return f"sae resumes at {sub.name.replace('_', ' ')}, epoch {epoch + 1}"
    return "sae resumes with its next layer"


def resume_hint(run_dir: str | Path, stage: str) -> str:
    """One phrase: where `stage` of `run_dir` continues (steer and report keep no checkpoints: they restart)."""
    folder = Path(run_dir) / stage
    try:
        hint = {"prune": _prune, "extract": _extract, "sae": _sae}.get(stage)
        return hint(folder) if hint else f"{stage} restarts (it keeps no checkpoint)"
    except HeadsteerError as exc:
        return f"{stage} cannot resume: {exc}"


def interrupted(exc: KeyboardInterrupt) -> int:
    """Print the one-line message of an interrupted command (what the same command resumes); return
    the exit status: 143 for SIGTERM, 130 for Ctrl-C."""
    name, status = ("interrupted (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
    what = resume_hint(RUNNING["out"], RUNNING["stage"]) if RUNNING else "finished stages are kept"
    how = "run the same command again"
    if RUNNING.get("force"):  # --force again would start every stage it names over
        how = f"run it again without --force (`{RUNNING['again']}`)"
    print(f"headsteer: {name}; {how}: {what}", file=sys.stderr)
    return status
