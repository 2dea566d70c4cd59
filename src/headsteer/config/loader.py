"""Reading a run configuration: YAML file, ``key.sub=value`` overrides, type checks that name the key.

``load_config`` turns a YAML file plus overrides into a validated ``RunConfig``; any unknown key or
wrong type raises ``HeadsteerError`` naming the key and the fix (range checks are the dataclasses',
`headsteer.config.checks`). The YAML is read strictly: a key given twice in one mapping (which plain
YAML loaders settle by keeping the last, silently), an empty file and a file that is not a mapping of
sections are refused. Paths in a config (`data.root`, `model.pretrained_file`) are relative to the
current directory; they are made absolute here, so a run folder records where its data really was.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from headsteer.config import shipped
from headsteer.config.sections import RunConfig
from headsteer.core.errors import HeadsteerError


def type_name(tp: Any) -> str:
    """A field's annotation in words, as error messages and the key reference show it."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(tp))
        return " or ".join(type_name(a) for a in args) + (" or null" if nullable else "")
    if origin is list:
        return f"list of {type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        key, value = typing.get_args(tp)
        return f"mapping of {type_name(key)} to {type_name(value)}"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    bad = HeadsteerError(f"config key '{key}' = {value!r} has the wrong type; expected {type_name(tp)}")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except HeadsteerError:
                pass
        raise bad
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise HeadsteerError(f"config key '{key}' = {value!r} is not allowed; use {type_name(tp)}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        (inner,) = typing.get_args(tp)
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        k_tp, v_tp = typing.get_args(tp)
        return {_coerce(k, k_tp, key): _coerce(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads '1e-4' (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    raise bad


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a nested dict, rejecting unknown keys and wrong types."""
    where = f"'{prefix}'" if prefix else "the top level"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise HeadsteerError(f"config section {where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise HeadsteerError(f"unknown config key '{full}'; valid keys in {where}: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def apply_override(data: dict, assignment: str) -> None:
    """Apply one `a.b.c=value` override (value parsed as YAML) to the nested dict `data`."""
    if "=" not in assignment:
        raise HeadsteerError(f"override '{assignment}' is not of the form key.sub=value")
    key, raw = assignment.split("=", 1)
    value = read_yaml(raw, f"override '{assignment}'") if raw != "" else None
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise HeadsteerError(f"override '{assignment}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


PATH_KEYS = (("data", "root"), ("model", "pretrained_file"))
"""(section, key) of the config values that are file system paths."""


def absolute_paths(cfg: RunConfig) -> RunConfig:
    """`cfg` with every given path of PATH_KEYS made absolute (against the current directory, `~` expanded)."""
    for section, key in PATH_KEYS:
        part = getattr(cfg, section)
        value = getattr(part, key)
        if value is not None:
            setattr(part, key, os.path.abspath(os.path.expanduser(value)))
    return cfg


def _check_unique(node: yaml.Node, where: str, path: str = "", seen: set | None = None) -> None:
    """Refuse a key given twice in one mapping, at any depth, the first in the file first (yaml keeps the
    last one, silently)."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias of a node already checked (or a recursive one)
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique(item, where, f"{path}[{i}]", seen)
    if not isinstance(node, yaml.MappingNode):
        return
    lines: dict = {}
    for key, value in node.value:
        full = f"{path}.{key.value}" if path else str(key.value)
        ident = (key.tag, key.value) if isinstance(key, yaml.ScalarNode) else id(key)
        if ident in lines and key.tag != "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden
            raise HeadsteerError(
                f"{where}: key '{full}' is given twice (lines {lines[ident]} and {key.start_mark.line + 1}), and "
                "only one can hold; delete one (two sections: merge them into one)"
            )
        lines[ident] = key.start_mark.line + 1
        _check_unique(value, where, full, seen)


def read_yaml(text: str, where: str):
    """The YAML document in `text`, strictly: invalid YAML and duplicate keys are one line naming `where`."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_unique(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HeadsteerError(f"{where} is not valid YAML: {problem}{at}") from None
    finally:
        loader.dispose()


KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true or false"}


def read_config_file(path: Path) -> dict:
    """The sections of a YAML config file; an empty file, or one that is not a mapping, is refused."""
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to the current directory, {Path.cwd()})"
        raise HeadsteerError(f"config file {path} not found{where}; give a YAML file or a shipped config's name")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HeadsteerError(f"config file {path} cannot be read as UTF-8 text ({exc}); fix or replace it") from None
    data = read_yaml(text, f"config file {path}")
    if data is None:
        raise HeadsteerError(
            f"config file {path} is empty (or holds only comments), which would run every default; start from a "
            f"shipped config: {', '.join(shipped.names())}"
        )
    if not isinstance(data, dict):
        raise HeadsteerError(
            f"config file {path} holds {KINDS.get(type(data), 'a value')} ({str(data)[:40]}), not a mapping of "
            f"sections (data:, model:, ...); start from a shipped config: {', '.join(shipped.names())}"
        )
    return data


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML config (a file, or a shipped config's name; defaults when `path` is None), apply overrides,
    validate; paths made absolute."""
    data: dict = {} if path is None else read_config_file(shipped.resolve(path))
    for assignment in overrides:
        apply_override(data, assignment)
    return absolute_paths(from_dict(RunConfig, data))


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Differences between two nested config dicts, as `key.sub: old -> new` (absent keys shown as such)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out
