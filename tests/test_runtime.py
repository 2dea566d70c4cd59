"""Progress output when stdout is a log file, and run folders that cannot be created."""

import subprocess
import sys

import pytest

import headsteer.core.runtime as runtime
from conftest import ROOT, one_line_error

SMOKE = str(ROOT / "configs/smoke.yaml")


def test_log_progress_prints_counted_flushed_lines(capsys, monkeypatch):
    monkeypatch.setattr(runtime, "is_terminal", lambda: False)
    clock = iter(range(0, 1000, 20))  # every call to monotonic advances 20 s
    monkeypatch.setattr(runtime.time, "monotonic", lambda: float(next(clock)))
    bar = runtime.progress(range(5), desc="sweep")
    assert isinstance(bar, runtime.LogProgress)
    assert list(bar) == [0, 1, 2, 3, 4]
    lines = capsys.readouterr().out.splitlines()
    # a line at most every 30 s of (fake) time: the updates at 40 and 100 s print (each print reads the
    # clock once more); the last step and the end print nothing, the caller's summary line reports them
    assert [ln.split(",")[0] for ln in lines] == ["[sweep] 2/5 (40 %)", "[sweep] 4/5 (80 %)"], lines


def test_log_progress_is_silent_for_short_loops(capsys, monkeypatch):
    monkeypatch.setattr(runtime, "is_terminal", lambda: False)
    for _ in runtime.progress(range(3), desc="quick"):
        pass
    assert capsys.readouterr().out == ""


def test_piped_run_shows_stage_and_epoch_lines(fashion_dir, tmp_path):
    """`headsteer prune ... > log`: the stage and every epoch leave a line in the log, in order."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "headsteer",
            "prune",
            SMOKE,
            f"data.root={fashion_dir}",
            f"out={tmp_path}",
            "prune.dense_epochs=1",
            "prune.joint_epochs=1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout
    order = ["[prune] started", "[prune] dense epoch 1/1", "[prune] joint epoch 1/1", "[prune] done in"]
    positions = [out.find(s) for s in order]
    assert -1 not in positions and positions == sorted(positions), out
    lines = out.splitlines()
    assert len(lines) == len(set(lines)), out  # every line once
    assert "(100 %)" not in out, out  # a loop's end is reported by the epoch line alone


@pytest.mark.parametrize("where", ["/proc/headsteer-test/run", "FILE/run"])
def test_out_that_cannot_be_created_is_a_one_line_error(capsys, tmp_path, fashion_dir, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    out = where.replace("FILE", str(blocker))
    line = one_line_error(capsys, ["prune", SMOKE, f"data.root={fashion_dir}", "--out", out])
    assert line.startswith(f"headsteer: error: cannot create the run folder {out} (")
    assert "choose another --out" in line
    assert blocker.read_text() == "in the way"


def test_threads_default_is_left_alone_and_a_busy_machine_gets_one_hint(monkeypatch, capsys):
    import os

    import torch

    from headsteer.core import runtime

    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(runtime, "_busy_hint_shown", False)
        monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.5, 0.5))
        torch.set_num_threads(2)
        assert runtime.configure_threads(None) == 2 == torch.get_num_threads()  # torch's default, untouched
        assert runtime.configure_threads(1) == 1 == torch.get_num_threads()
        torch.set_num_threads(2)
        assert capsys.readouterr().out == ""  # a quiet machine: no hint
        monkeypatch.setattr(os, "getloadavg", lambda: (4.2, 4.0, 3.0))
        runtime.configure_threads(1)  # the user chose: no hint
        assert capsys.readouterr().out == ""
        torch.set_num_threads(2)
        runtime.configure_threads(None)
        runtime.configure_threads(None)
        out = capsys.readouterr().out
        assert out.count("[threads]") == 1 and "load 4.2 on 2 CPUs" in out and "threads=1" in out
    finally:
        torch.set_num_threads(before)
