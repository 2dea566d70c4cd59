"""Artifacts on disk: JSON, text and safetensors serialised in memory and written through the one
writer (`headsteer.artifacts.atomic.write_bytes`: temp file, fsync, rename), and training checkpoints. Our
artifacts hold no pickles.

Every .safetensors file written here carries a blake2b digest of its tensor data in its metadata
(`headsteer_blake2b`); `read_tensors` checks it, so bytes changed inside a file are caught when it is
read, never trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, save

from headsteer.artifacts.atomic import write_bytes
from headsteer.core.errors import HeadsteerError
from headsteer.core.finite import first_nonfinite

DIGEST_KEY = "headsteer_blake2b"
"""Metadata key of the blake2b digest of a .safetensors file's tensor data."""


def digest(data: bytes | memoryview) -> str:
    """The fast content hash used for artifacts (blake2b, 128 bits, hex)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def file_digest(path: str | Path) -> str:
    """`digest` of a file's content, read in 1 MiB blocks."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_text(path: str | Path, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    write_bytes(path, text.encode("utf-8"))


# --------------------------------------------------------------------------------------------------
# JSON


def _nonfinite_entry(obj: Any, key: str = "") -> tuple[str, float] | None:
    """(dotted key, value) of the first NaN or infinity inside nested dicts / lists."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return key or "(the top level)", obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for k, v in items:
        found = _nonfinite_entry(v, f"{key}[{k}]" if isinstance(k, int) else f"{key}.{k}" if key else str(k))
        if found:
            return found
    return None


def json_text(obj: Any, path: str | Path, indent: int | None = 2) -> str:
    """Strict JSON of `obj` (no NaN / Infinity, which JSON does not have), meant for `path`."""
    try:
        return json.dumps(obj, indent=indent, allow_nan=False) + ("\n" if indent else "")
    except ValueError:
        found = _nonfinite_entry(obj)
        if found is None:
            raise
        raise HeadsteerError(
            f"refusing to write {path}: '{found[0]}' is {found[1]}, and JSON has no NaN or infinity; a result went "
            "non-finite without being caught (a bug: please report it with the command that ran)"
        ) from None


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json_text(obj, path))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise HeadsteerError(f"{path} not found; run the stage that writes it first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HeadsteerError(f"{path} is not valid JSON ({exc}); delete it and re-run its stage") from None


# --------------------------------------------------------------------------------------------------
# safetensors


def _data_start(raw: bytes) -> int:
    """Offset of the tensor data in a .safetensors file (8-byte header length, then the JSON header)."""
    if len(raw) < 8 or 8 + int.from_bytes(raw[:8], "little") > len(raw):
        raise ValueError("file too short for its header")
    return 8 + int.from_bytes(raw[:8], "little")


def tensor_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """A .safetensors file's bytes, with the digest of its tensor data in the metadata."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    first = save(tensors, metadata=metadata)  # the data section does not depend on the metadata
    return save(tensors, metadata={**(metadata or {}), DIGEST_KEY: digest(memoryview(first)[_data_start(first) :])})


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    write_bytes(path, tensor_bytes(tensors, metadata))


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a .safetensors file, its digest checked when it has one."""
    if not path.is_file():
        raise HeadsteerError(f"{path} not found; run the stage that writes it first")
    try:
        raw = path.read_bytes()
        start = _data_start(raw)
        meta = json.loads(raw[8:start]).get("__metadata__") or {}
        tensors = load(raw)
    except (SafetensorError, OSError, ValueError, AttributeError) as exc:
        raise HeadsteerError(
            f"{path} is not a readable .safetensors file ({exc}); delete it and re-run its stage"
        ) from None
    if DIGEST_KEY in meta and digest(memoryview(raw)[start:]) != meta[DIGEST_KEY]:
        raise HeadsteerError(
            f"{path} is damaged: its content no longer matches the checksum written with it; delete it and re-run "
            "its stage"
        )
    return tensors, meta


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    return _read_safetensors(Path(path))[0]


def read_tensors_and_metadata(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, string metadata) of a .safetensors file, its digest checked."""
    return _read_safetensors(Path(path))


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
    write_tensors(path, tensors, metadata={"headsteer": json_text(meta, path, indent=None)})


def checkpoint_state(path: str | Path) -> dict:
    """The JSON state stored in a checkpoint, without loading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads(f.metadata()["headsteer"])["state"]
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise HeadsteerError(f"checkpoint {path} is unreadable ({exc}); delete it to restart the stage") from None


def checkpoint_extra(path: str | Path) -> dict[str, torch.Tensor]:
    """The `extra` tensors stored by `save_checkpoint`."""
    return {k[len("extra.") :]: v for k, v in read_tensors(path).items() if k.startswith("extra.")}


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> dict:
    """Restore what `save_checkpoint` wrote into `model` (and `optimizer`); return the state dict.
    A checkpoint holding a NaN or an infinity in its weights or optimizer state is refused."""
    path = Path(path)
    tensors, metadata = _read_safetensors(path)
    bad = first_nonfinite((k, v) for k, v in tensors.items() if not k.startswith("extra."))
    if bad is not None:
        raise HeadsteerError(f"checkpoint {path} holds non-finite values ({bad}); delete it to restart the stage")
    meta = json.loads(metadata["headsteer"])
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
        try:
            optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        except (ValueError, KeyError) as exc:  # e.g. saved by a version with other parameter groups
            raise HeadsteerError(
                f"checkpoint {path} holds an optimizer state this version cannot use ({exc}); delete it to "
                "restart the stage"
            ) from None
    return meta["state"]
