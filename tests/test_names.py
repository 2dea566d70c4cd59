"""The fixed name sets (steer/names.py): each defined once, read as plain strings, never copied as literals."""

import ast
import json
import sys

from conftest import ROOT
from headsteer.config import SteerConfig
from headsteer.steer.names import CALL_NAMES, Call, LabelSource, Mode, Strategy

SRC = ROOT / "src" / "headsteer"
HOME = SRC / "steer" / "names.py"
ENUMS = (Strategy, Mode, LabelSource, Call)
OTHER_SETS = {("config/sections.py", "global")}
"""The same word in another name set: the prune section's usage loss ('per_layer' or 'global')."""


def _literals(path, names: set[str]) -> list[str]:
    """Quoted string constants in code (docstrings left out) that spell one of `names`."""
    tree = ast.parse(path.read_text())
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    rel = str(path.relative_to(SRC))
    return [
        f"{rel}:{n.lineno} {n.value!r}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and n.value in names and id(n) not in docs and (rel, n.value) not in OTHER_SETS
    ]


def test_no_name_is_copied_as_a_string_literal():
    names = {m.value for e in ENUMS for m in e}
    found = [hit for p in sorted(SRC.rglob("*.py")) if p != HOME for hit in _literals(p, names)]
    assert not found, f"use the enum of headsteer.steer.names: {found}"


def test_the_checker_sees_a_copied_name(tmp_path, monkeypatch):
    planted = tmp_path / "x.py"
    planted.write_text('"""per_class in a docstring is fine."""\n\nif mode == "pre_topk":\n    pass\n')
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    assert _literals(planted, {"pre_topk", "per_class"}) == ["x.py:3 'pre_topk'"]


def test_members_are_their_values_in_json_keys_and_text():
    assert (
        json.dumps({Strategy.GLOBAL: [Mode.PRE_TOPK, Call.RANGE_TOO_NARROW]})
        == '{"global": ["pre_topk", "range too narrow"]}'
    )
    assert {"per_class": 1}[Strategy.PER_CLASS] == 1 and f"{LabelSource.PREDICTED:>10}" == " predicted"
    assert str(Call.BEATS) == "beats" and CALL_NAMES[-1] == "range too narrow"


def test_config_defaults_are_plain_strings_drawn_from_the_enums():
    sc = SteerConfig()
    assert sc.strategies == ["per_class", "global", "random", "per_class_specific"]
    assert sc.modes == ["pre_topk", "post_topk", "additive"] and sc.label_sources == ["true", "predicted"]
    assert all(type(v) is str for v in [sc.mode, *sc.modes, *sc.strategies, *sc.label_sources, *sc.learned])
