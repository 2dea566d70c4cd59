"""The README and the docs site: short, linked, free of project history; the strict MkDocs build and the
tutorial notebook both run."""

import dataclasses
import json
import os
import re
from pathlib import Path

import yaml

from conftest import ROOT
from headsteer.config import RunConfig

DOCS = ROOT / "docs"
README = ROOT / "README.md"
HISTORY = [
    r"(?i)\b(commit|clone of|clones of|git show)\s+[0-9a-f]{7,40}\b",  # commit SHAs
    r"(?i)\bissues?\s+#?\d+",  # issue numbers
    r"DESIGN\.md",  # an internal file that is not part of the repository
]


def _env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "NO_MKDOCS_2_WARNING": "1",
    }


def _nav_pages() -> list[str]:
    def walk(node) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in walk(item)]
        return [p for value in node.values() for p in walk(value)]

    return walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])


def test_readme_is_short_and_every_link_exists():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)\)", text)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 10, local  # the docs pages and the figure
    for link in local:
        assert (ROOT / link).exists(), link
    assert text.count("<!-- numbers: regenerated from make demo-seeds -->") == 1 and "<!-- /numbers -->" in text


def test_no_project_history_in_readme_or_docs():
    for path in [README, *sorted(DOCS.glob("*.md"))]:
        text = path.read_text()
        for pattern in HISTORY:
            found = re.search(pattern, text)
            assert not found, f"{path.name}: {found.group(0)!r}"


def test_history_patterns_can_fire():
    samples = ["from a fresh clone of 8b6840e", "issue 8/10 asked", "see DESIGN.md section 4", "commit f49d365"]
    assert all(any(re.search(p, s) for p in HISTORY) for s in samples)


def test_every_page_is_in_the_nav_and_exists():
    nav = _nav_pages()
    assert sorted(nav) == sorted(p.name for p in DOCS.glob("*.md"))
    for page in ("robustness.md", "sae_trainer.md", "tutorial.md", "api.md", "configs.md", "results-schema.md"):
        assert page in nav


def test_strict_mkdocs_build(docs_site):
    site = docs_site  # pages are name.html (use_directory_urls: false), so the site browses from file://
    configs = (site / "configs.html").read_text()
    for section in dataclasses.fields(RunConfig):
        value = getattr(RunConfig(), section.name)
        fields = dataclasses.fields(value) if dataclasses.is_dataclass(value) else []
        for key in [f"{section.name}.{f.name}" for f in fields] or [section.name]:
            assert f"<code>{key}</code>" in configs, key
    api = (site / "api.html").read_text()
    for name in ("load_run", "Run", "Outputs", "LatentStats", "RunSAE", "steer", "threshold", "index_sets", "sweep"):
        assert 'id="headsteer.api.' in api and name in api, name
    assert (site / "tutorial.html").is_file() and (site / "demo_frontier.png").is_file()
    assert not [p for p in site.iterdir() if p.is_dir() and (p / "index.html").is_file()]  # no folder pages


def test_tutorial_notebook_runs_on_the_smoke_run(pipeline, tmp_path, monkeypatch):
    import jupytext
    from nbclient import NotebookClient

    monkeypatch.setenv("HEADSTEER_RUN", str(pipeline.out))
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = jupytext.read(DOCS / "tutorial.md")
    assert sum(cell.cell_type == "code" for cell in nb.cells) >= 6
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "steered layer 1" in text and "latents most specific to" in text, text
    assert re.search(r"threshold [+-][\d.]+: accuracy [\d.]+% at usage", text), text


def unnamed_keys(record, schema: str, path: str = "") -> dict[str, str]:
    """{key: where it first occurs} of every dict key in `record` that looks like a name (numbers, such as
    layers, and keys with spaces or slashes are data) and is not written, quoted, in `schema`."""
    out: dict[str, str] = {}
    if isinstance(record, dict):
        for key, value in record.items():
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", key) and f'"{key}"' not in schema:
                out.setdefault(key, f"{path}.{key}")
            for k, where in unnamed_keys(value, schema, f"{path}.{key}").items():
                out.setdefault(k, where)
    elif isinstance(record, list):
        for value in record:
            for k, where in unnamed_keys(value, schema, f"{path}[]").items():
                out.setdefault(k, where)
    return out


def test_results_schema_names_every_key_of_a_real_results_json(pipeline):
    """The schema page cannot fall behind the records: every key the smoke run's results.json holds is named
    there (the walk itself flags a key the page lacks)."""
    schema = (DOCS / "results-schema.md").read_text()
    assert unnamed_keys({"sae": {"fvu": 1.0, "not_in_the_schema": [{"2": 0}]}}, schema) == {
        "not_in_the_schema": ".sae.not_in_the_schema"
    }
    results = json.loads((Path(pipeline.out) / "report" / "results.json").read_text())
    assert unnamed_keys(results, schema) == {}
