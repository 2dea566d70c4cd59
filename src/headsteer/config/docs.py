"""Every config key with its default and its docstring, for `headsteer config CONFIG [--keys]` and the
configuration page of the docs.

The docstrings are the attribute docstrings of the config dataclasses (the string right under each
field), read once from their source with `ast`; nothing is written twice.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import typing
from typing import Any

import yaml

from headsteer.config.loader import type_name
from headsteer.config.sections import RunConfig

WRAP = 100
"""Width of the comment lines that `config_yaml(..., keys=True)` writes."""


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field name: docstring} of a dataclass, from the string literal under each annotated field."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    out = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            out[node.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return out


def _scalar(value: Any) -> str:
    """One YAML value on one line (lists in flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def _lines(obj: Any, keys: bool, indent: str = "") -> list[str]:
    out = []
    docs = field_docs(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if keys and f.name in docs:
            out += [f"{indent}# {line}" for line in textwrap.wrap(docs[f.name], WRAP - len(indent) - 2)]
        if dataclasses.is_dataclass(value):
            out += [f"{indent}{f.name}:", *_lines(value, keys, indent + "  ")]
        else:
            out.append(f"{indent}{f.name}: {_scalar(value)}")
    return out


def config_yaml(cfg: RunConfig, keys: bool = False) -> str:
    """The resolved config as YAML with every key and default; `keys` puts each field's docstring above it
    as a comment. Loading the text back with `load_config` gives `cfg` again."""
    return "\n".join(_lines(cfg, keys)) + "\n"


def _cell(text: str) -> str:
    """Text safe in a Markdown table cell (no column breaks, tags or emphasis)."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")


def reference_markdown() -> str:
    """Markdown tables of every config key (key, type, default, meaning), one per section."""
    cfg = RunConfig()
    top = [f for f in dataclasses.fields(cfg) if not dataclasses.is_dataclass(getattr(cfg, f.name))]
    parts = [("top level", "", cfg, top)]
    parts += [
        (f"`{f.name}`", f"{f.name}.", getattr(cfg, f.name), dataclasses.fields(getattr(cfg, f.name)))
        for f in dataclasses.fields(cfg)
        if dataclasses.is_dataclass(getattr(cfg, f.name))
    ]
    out = []
    for title, prefix, obj, fields in parts:
        docs, hints = field_docs(type(obj)), typing.get_type_hints(type(obj))
        out += [f"### {title}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for f in fields:
            cells = (_cell(type_name(hints[f.name])), f"`{_scalar(getattr(obj, f.name))}`", _cell(docs[f.name]))
            out.append(f"| `{prefix}{f.name}` | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
