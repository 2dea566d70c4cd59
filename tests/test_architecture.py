"""The layout rules (docs/development.md), read from the source with `ast` (no imports executed)."""

import ast
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SRC = ROOT / "src" / "headsteer"
MAX_FILE_LINES, MAX_FUNCTION_LINES = 300, 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module_level_only: bool = False) -> set[str]:
    """headsteer modules imported by the file (`from a.b import c` counts a.b and a.b.c when c is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("headsteer")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("headsteer"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")}
    return out


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def _files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


ENTRY_POINTS = {"__init__", "__main__", "cli"}


def _stages() -> dict[str, Path]:
    """The stage modules: files of stages/ defining a top-level `run` (the runner and helpers do not)."""
    out = {}
    for path in (SRC / "stages").glob("*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body):
            out[_module_name(path)] = path
    return out


def test_package_root_holds_only_entry_points():
    loose = sorted(p.stem for p in SRC.glob("*.py") if p.stem not in ENTRY_POINTS)
    assert not loose, f"modules at the package root {loose}; put each in the package that owns it"


def test_no_stage_imports_another_stage():
    stages = _stages()
    assert len(stages) >= 5, sorted(stages)
    for me, path in stages.items():
        others = {m for m in _imports(path) if m in stages and m != me}
        assert not others, f"{me} imports {others}"


def test_library_never_imports_stages_or_cli():
    for path in _files():
        me = _module_name(path)
        if me.startswith(("headsteer.stages", "headsteer.cli", "headsteer.__main__")):
            continue
        bad = {m for m in _imports(path) if m.startswith(("headsteer.stages", "headsteer.cli"))}
        assert not bad, f"library module {me} imports {bad}"


def test_no_import_cycle():
    graph = {_module_name(p): _imports(p, module_level_only=True) for p in _files()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt not in graph:
                continue
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join(path[path.index(nxt) :] + [nxt])
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_files_and_functions_are_short():
    long_files, long_functions = [], []
    for path in _files():
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            long_files.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not long_files, long_files
    assert not long_functions, long_functions


def test_the_checker_sees_a_cycle_and_a_stage_import(tmp_path, monkeypatch):
    """The rules above can fail: a planted cycle, stage-to-stage import and loose root module are caught."""
    fake = tmp_path / "headsteer"
    (fake / "stages").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "a.py").write_text("from headsteer import b\n")
    (fake / "b.py").write_text("import headsteer.a\n")
    (fake / "stages" / "__init__.py").write_text("")
    (fake / "stages" / "x.py").write_text("from headsteer.stages.y import run as y\n\n\ndef run():\n    y()\n")
    (fake / "stages" / "y.py").write_text("def run():\n    pass\n")
    for name in ("p", "q", "r"):
        (fake / "stages" / f"{name}.py").write_text("def run():\n    pass\n")
    (fake / "loose.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "SRC", fake)

    with pytest.raises(AssertionError, match="import cycle"):
        test_no_import_cycle()
    with pytest.raises(AssertionError, match="imports"):
        test_no_stage_imports_another_stage()
    with pytest.raises(AssertionError, match=r"package root \['a', 'b', 'loose'\]"):
        test_package_root_holds_only_entry_points()
