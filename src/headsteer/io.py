"""Artifacts on disk: atomic JSON / safetensors writes and training checkpoints.

Every write goes to a temporary file in the same folder and is renamed into place, so a crash or a
full disk never leaves a half-written artifact where a finished one is expected. Our artifacts are
JSON + safetensors only (no pickles).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from headsteer.errors import HeadsteerError


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer that was killed (SIGKILL)
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HeadsteerError(
                f"disk full while writing {path}; nothing was half-written (the previous "
                "version, if any, is intact): free space and run the same command again"
            ) from None
        raise


def write_json(path: str | Path, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())

    _atomic(Path(path), write)


def write_text(path: str | Path, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    _atomic(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise HeadsteerError(f"{path} not found; run the stage that writes it first") from None
    except json.JSONDecodeError as exc:
        raise HeadsteerError(f"{path} is not valid JSON ({exc}); delete it and re-run its stage") from None


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise HeadsteerError(f"{path} not found; run the stage that writes it first")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise HeadsteerError(
            f"{path} is not a readable .safetensors file ({exc}); delete it and re-run its stage"
        ) from None


def git_sha() -> str:
    """The commit of the headsteer source tree, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return sha + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --------------------------------------------------------------------------------------------------
# Checkpoints: model + optimizer tensors in one .safetensors file, the rest as JSON metadata in it.


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: dict,
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write model weights, optimizer state, a JSON-able `state` dict and `extra` tensors (RNG states)
    to one file, atomically."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"extra.{k}": v for k, v in (extra or {}).items()})
    meta: dict[str, Any] = {"state": state}
    if optimizer is not None:
        osd = optimizer.state_dict()
        for idx, pstate in osd["state"].items():
            for key, value in pstate.items():
                tensors[f"optim.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        meta["param_groups"] = osd["param_groups"]
    write_tensors(path, tensors, metadata={"headsteer": json.dumps(meta)})


def checkpoint_state(path: str | Path) -> dict:
    """The JSON state stored in a checkpoint, without loading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads(f.metadata()["headsteer"])["state"]
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise HeadsteerError(f"checkpoint {path} is unreadable ({exc}); delete it to start the stage over") from None


def checkpoint_extra(path: str | Path) -> dict[str, torch.Tensor]:
    """The `extra` tensors stored by `save_checkpoint`."""
    return {k[len("extra.") :]: v for k, v in read_tensors(path).items() if k.startswith("extra.")}


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> dict:
    """Restore what `save_checkpoint` wrote into `model` (and `optimizer`); return the state dict."""
    path = Path(path)
    tensors = read_tensors(path)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["headsteer"])
    model_sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise HeadsteerError(
            f"checkpoint {path} does not match the configured model ({first}); "
            "use the config that made it, or another --out"
        ) from None
    if optimizer is not None and "param_groups" in meta:
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta["state"]
