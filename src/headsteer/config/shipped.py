"""The configs shipped inside the package (`headsteer/configs/*.yaml`): found by name, listed, copied out.

`headsteer run demo` works from any folder: a config argument that is not a file is looked up here by
name. `headsteer init NAME [DIR]` copies one out to edit, never over an existing file.
"""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path

from headsteer.core.errors import HeadsteerError, write_error


def folder() -> Path:
    """The package's folder of shipped configs."""
    return Path(str(resources.files("headsteer") / "configs"))


def names() -> list[str]:
    """The shipped configs' names (file names without `.yaml`), sorted."""
    return sorted(p.stem for p in folder().glob("*.yaml"))


def summary(name: str) -> str:
    """The first sentence of a shipped config's leading comment."""
    comment = []
    for line in (folder() / f"{name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("# ").strip())
    return " ".join(comment).split(". ")[0].rstrip(".")


def listing() -> str:
    """One line per shipped config: its name and what it is."""
    width = max(len(n) for n in names())
    return "".join(f"{n:<{width}}  {summary(n)}\n" for n in names())


def resolve(config: str | Path) -> Path:
    """`config` itself when it is a file; else the shipped config of that name ('demo' or 'demo.yaml');
    else one line naming both kinds of answer."""
    path = Path(config).expanduser()
    if path.is_file():
        return path
    name = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    if path.parent == Path(".") and name in names():
        local = Path(f"{name}.yaml")
        if local.is_file() and local != path:
            print(f"[config] '{config}' is the shipped config; your ./{local} runs as `{local}`", flush=True)
        return folder() / f"{name}.yaml"
    where = "" if path.is_absolute() else f" (relative to the current directory, {Path.cwd()})"
    raise HeadsteerError(
        f"config file {config} not found{where}; give a YAML file or a shipped config's name: {', '.join(names())}"
    )


def init(name: str, dest: str | Path = ".") -> Path:
    """Copy the shipped config `name` to DEST/NAME.yaml to edit; an existing file there is never replaced."""
    name = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if name not in names():
        raise HeadsteerError(f"no shipped config named '{name}'; choose one of {', '.join(names())}")
    target = Path(dest).expanduser() / f"{name}.yaml"
    if target.parent.exists() and not target.parent.is_dir():
        raise HeadsteerError(f"{target.parent} is a file; give a folder to write {target.name} into")
    if target.exists():
        raise HeadsteerError(
            f"{target} already exists; headsteer never overwrites it: edit it, or give another folder "
            f"(`headsteer init {name} DIR`)"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp") as tmp:
            tmp.write((folder() / f"{name}.yaml").read_bytes())
            tmp.flush()
            os.fchmod(tmp.fileno(), 0o644)
            os.fsync(tmp.fileno())
            os.link(tmp.name, target)  # complete or absent, and never over a file that appeared meanwhile
    except FileExistsError:
        raise HeadsteerError(f"{target} already exists; headsteer never overwrites it") from None
    except OSError as exc:
        raise write_error(exc, target) from None
    return target
