"""The package as a pip user gets it: a wheel built from this checkout, installed into a fresh virtual
environment outside the repository, run from an empty folder.

The new environment sees the already-installed dependencies (torch included) through a `.pth` file
naming a folder of links to this interpreter's site-packages (headsteer itself left out), and pip runs
with `--no-index`: nothing is downloaded, and the install report shows that pip installed headsteer
alone, so installing the wheel beside the Makefile's torch changes no torch package."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

PY = f"python{sys.version_info.major}.{sys.version_info.minor}"


def _sh(args, cwd: Path, timeout: int = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{args}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """headsteer-*.whl built from a copy of the checkout (no build folder left in the repository)."""
    src = tmp_path_factory.mktemp("source")
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    _sh([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", src, "-w", out], src)
    (path,) = out.glob("headsteer-*.whl")
    return path


def test_wheel_holds_the_package_data_and_ranges(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for data in ("py.typed", "analysis/report.css", "analysis/explorer.js", "configs/demo.yaml", "configs/smoke.yaml"):
        assert f"headsteer/{data}" in names, data
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    requires = [ln.split(": ", 1)[1] for ln in meta.splitlines() if ln.startswith("Requires-Dist: ")]
    assert {"torch>=2.4", "torchvision>=0.19", "timm<2,>=1.0.31"} <= set(requires), requires
    assert not [r for r in requires if "==" in r and "extra ==" not in r], requires  # no exact pin
    assert "License-Expression: MIT" in meta and "Classifier: Programming Language :: Python :: 3.11" in meta


def test_installed_wheel_runs_smoke_by_name_from_an_empty_folder(wheel, fashion_dir, tmp_path):
    deps = tmp_path / "deps"  # this interpreter's site-packages, without headsteer
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("headsteer", "__editable__", "pip", "__pycache__")) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    venv = tmp_path / "venv"
    _sh([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    (venv / "lib" / PY / "site-packages" / "deps.pth").write_text(f"{deps}\n")
    report = tmp_path / "report.json"
    pip = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-index"]
    _sh([*pip, "--report", report, wheel], tmp_path)
    installed = [(i["metadata"]["name"], i["metadata"]["version"]) for i in json.loads(report.read_text())["install"]]
    assert installed == [("headsteer", "0.1.0")]  # torch, torchvision and the rest stay as they are

    empty = tmp_path / "empty"
    empty.mkdir()
    cheap = ["steer.modes=[pre_topk]", "steer.reach=false", "steer.random_draws=2"]  # the steer stage's bulk
    _sh([venv / "bin" / "headsteer", "run", "smoke", "--out", "R", f"data.root={fashion_dir}", *cheap], empty)
    report_html = (empty / "R" / "report" / "report.html").read_text()
    assert "<style>" in report_html and (empty / "R" / "report" / "results.json").is_file()
    code = (
        "import headsteer, json; run = headsteer.load_run('R'); t = run.data.test; "
        "print(json.dumps([headsteer.__file__, run.forward(t.images).accuracy(t.labels), run.results['steering']"
        "['unsteered']['accuracy']]))"
    )
    where, acc, stored = json.loads(_sh([venv / "bin" / "python", "-c", code], empty))
    assert Path(where).is_relative_to(venv) and acc == pytest.approx(stored, abs=1e-6)
