"""Faults a careful user meets: nothing headsteer did not write is deleted, nothing wrong is silent.

--force beside foreign files, the one writer (disk full, concurrent writers), the run lock, damaged
artifacts, divergence, changed data, odd images, Hugging Face labels, escaping in the report,
up-front checks and SIGTERM. Each case ends in the right result or in one line naming the fix.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import headsteer.artifacts.atomic as atomic
import headsteer.artifacts.io as hio
from conftest import PIPELINE_OVERRIDES, ROOT, dead_pid, one_line_error
from headsteer.artifacts.manifest import MARKER, listed
from headsteer.cli import main
from headsteer.config import DataConfig
from headsteer.config.loader import load_config
from headsteer.core.errors import HeadsteerError
from headsteer.data import load_dataset
from headsteer.stages.runlock import run_lock

SMOKE = str(ROOT / "configs/smoke.yaml")
PIPELINE = list(PIPELINE_OVERRIDES)  # the `pipeline` fixture's overrides


def argv(stage: str, pipeline, out: Path, *extra: str) -> list[str]:
    return [stage, SMOKE, f"data.root={pipeline.data.root}", f"out={out}", *PIPELINE, *extra]


def copy_run(pipeline, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(pipeline.out, out, ignore=shutil.ignore_patterns(".lock", "explorer.png"))
    return out


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------
# --force deletes only what headsteer wrote


def test_force_keeps_a_users_file_and_rebuilds_the_rest(pipeline, tmp_path, capsys):
    out = copy_run(pipeline, tmp_path)
    notes = out / "report" / "notes.txt"
    notes.write_text("mine")
    (out / "report" / "results.md").unlink()
    assert main(argv("report", pipeline, out, "--force")) == 0
    assert "[report] kept 1 file(s) headsteer did not write: notes.txt" in capsys.readouterr().out
    assert notes.read_text() == "mine" and (out / "report" / "results.md").is_file()
    files = {p.name for p in (out / "report").iterdir()}
    assert files - {MARKER, "notes.txt"} <= set(listed(out / "report"))  # everything else is headsteer's


def test_force_on_a_source_tree_deletes_nothing(tmp_path, capsys):
    src = tmp_path / "headsteer"
    shutil.copytree(ROOT / "src" / "headsteer", src, ignore=shutil.ignore_patterns("__pycache__"))
    before = tree(src)
    line = one_line_error(capsys, ["run", SMOKE, "--out", str(src), "--force"])
    assert f"{src / 'prune'} holds files but no {MARKER}, so headsteer did not make it" in line
    assert "move it away or choose another --out" in line
    assert tree(src) == before  # not a file deleted, not a file (lock, config) added


def test_a_manifest_never_leads_outside_its_folder(tmp_path):
    from headsteer.stages.common import clean

    folder, outside = tmp_path / "report", tmp_path / "keep.txt"
    folder.mkdir()
    outside.write_text("x")
    (folder / MARKER).write_text("# header\n../keep.txt\n/etc/hostname\nmine.txt\n")
    (folder / "mine.txt").write_text("headsteer's")
    clean(folder)
    assert outside.read_text() == "x" and not (folder / "mine.txt").exists()


def test_every_file_of_a_finished_run_is_in_its_manifest(pipeline):
    for stage in ("prune", "extract", "sae", "steer", "report"):
        folder = Path(pipeline.out) / stage
        files = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        assert files - {MARKER, "explorer.png"} <= set(listed(folder)), stage  # explorer.png: the browser test's


# --------------------------------------------------------------------------------------------------
# The one writer


@pytest.mark.parametrize(
    "code, message",
    [
        (errno.ENOSPC, "disk full while writing {path}; nothing was half-written"),
        (errno.EDQUOT, "disk quota exceeded while writing {path}"),
        (errno.EROFS, "cannot write {path}: the file system is read-only; choose another --out"),
        (errno.EACCES, "cannot write {path}: permission denied"),
    ],
)
def test_write_errors_are_one_line_naming_the_path(tmp_path, monkeypatch, code, message):
    path = tmp_path / "w.safetensors"
    hio.write_tensors(path, {"w": torch.ones(3)})

    def failing(fd, data):
        os.write(fd, b"part")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic, "_write_all", failing)
    for write in (lambda: hio.write_tensors(path, {"w": torch.zeros(3)}), lambda: hio.write_json(path, {"a": 1})):
        with pytest.raises(HeadsteerError) as exc:
            write()
        assert message.format(path=path) in str(exc.value) and "\n" not in str(exc.value)
    assert torch.equal(load_file(str(path))["w"], torch.ones(3))  # the previous version, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_a_full_disk_at_the_stage_marker_or_the_run_lock_is_one_line(tmp_path, monkeypatch):
    import headsteer.artifacts.manifest as manifest
    import headsteer.stages.runlock as runlock

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)  # writing the marker fails as on a full disk
    with pytest.raises(HeadsteerError) as exc:
        manifest.create(tmp_path)
    assert str(exc.value).startswith(f"disk full while writing {tmp_path / manifest.MARKER}; nothing was half-written")
    assert not list(tmp_path.iterdir())  # the atomic writer left neither a marker nor its temp file
    monkeypatch.undo()
    monkeypatch.setattr(runlock.os, "pwrite", full)
    with pytest.raises(HeadsteerError) as exc:
        with runlock.run_lock(tmp_path / "run"):
            pass
    assert str(exc.value).startswith(f"disk full while writing {tmp_path / 'run' / '.lock'}")


@pytest.fixture()
def tiny_disk(tmp_path):
    """A real 256 KiB tmpfs (root only; skipped where mounting is not allowed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_really_full_disk_gives_one_line_for_every_kind_of_file(tiny_disk):
    import matplotlib.pyplot as plt

    from headsteer.analysis.figures import _save

    fig = plt.figure()
    plt.plot(np.random.default_rng(0).normal(size=(2000, 8)))
    writes = {
        "w.safetensors": lambda p: hio.write_tensors(p, {"w": torch.randn(100_000)}),  # 400 kB > 256 KiB
        "fig.png": lambda p: _save(fig, p),
        "r.json": lambda p: hio.write_json(p, {"x": list(range(100_000))}),
        "r.html": lambda p: hio.write_text(p, "<p>" * 100_000),
    }
    with open(tiny_disk / "filler", "wb") as f:  # leave ~8 KiB so that every write above fails midway
        f.write(b"\0" * (248 * 1024))
    for name, write in writes.items():
        with pytest.raises(HeadsteerError, match=f"disk full while writing {tiny_disk / name}; nothing was"):
            write(tiny_disk / name)
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]  # no temp file, no partial file


def test_two_hundred_concurrent_writes_of_one_path(tmp_path):
    path, errors = tmp_path / "metrics.json", []

    def writer(k: int) -> None:
        for i in range(25):
            try:
                hio.write_json(path, {"writer": k, "i": i, "pad": "x" * 5000})
            except Exception as exc:  # noqa: BLE001 - any failure is the bug this test looks for
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads(path.read_text())["pad"] == "x" * 5000
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_concurrent_writers_in_two_processes(tmp_path):
    code = (
        "import sys; from headsteer.artifacts.io import write_json\n"
        "for i in range(100): write_json(sys.argv[1], {'pid': sys.argv[2], 'i': i, 'pad': 'y' * 20000})"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "m.json"), str(k)], env=env, stderr=subprocess.PIPE
        )
        for k in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read().decode()
    assert json.loads((tmp_path / "m.json").read_text())["i"] == 99
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_only_a_dead_writers_temp_file_is_removed(tmp_path):
    dead = tmp_path / f".m.json.{dead_pid()}.0123456789ab.tmp"
    live = tmp_path / f".m.json.{os.getppid()}.0123456789ab.tmp"  # another writer, still running
    other = tmp_path / f".m.json.5.{dead_pid()}.0123456789ab.tmp"  # the temp file of `m.json.5`
    for p in (dead, live, other):
        p.write_text("half")
    hio.write_json(tmp_path / "m.json", {})
    assert not dead.exists() and live.exists() and other.exists()


def test_a_nan_never_reaches_json(tmp_path):
    path = tmp_path / "results.json"
    with pytest.raises(HeadsteerError, match=r"refusing to write .*results.json: 'sae.history\[1\].fvu' is nan"):
        hio.write_json(path, {"sae": {"history": [{"fvu": 0.5}, {"fvu": float("nan")}]}})
    assert not path.exists()


# --------------------------------------------------------------------------------------------------
# The run lock


def test_a_second_command_on_a_locked_run_folder_is_refused(tmp_path, capsys, fashion_dir):
    with run_lock(tmp_path / "run"):
        line = one_line_error(capsys, ["prune", SMOKE, f"data.root={fashion_dir}", f"out={tmp_path / 'run'}"])
    assert f"run folder {tmp_path / 'run'} is in use by another headsteer process (pid {os.getpid()})" in line
    assert not (tmp_path / "run" / "prune").exists()


# --------------------------------------------------------------------------------------------------
# Damaged artifacts


def test_a_truncated_artifact_is_redone_with_every_later_stage_and_no_loop(pipeline, tmp_path, capsys):
    out = copy_run(pipeline, tmp_path)
    sweep, results = out / "steer" / "sweep.safetensors", out / "report" / "results.json"
    original = json.loads(results.read_text())
    sweep.write_bytes(sweep.read_bytes()[:1000])
    assert main(argv("run", pipeline, out)) == 0
    printed = capsys.readouterr().out
    assert f"[steer] {sweep} changed since the stage finished: redoing steer, then every later stage" in printed
    assert "[sae] already done" in printed and "[report] started" in printed
    assert json.loads(results.read_text()) == original  # the same numbers again
    assert main(argv("run", pipeline, out)) == 0  # and then everything is done: no loop
    assert capsys.readouterr().out.count("already done") == 5


def test_a_deleted_artifact_is_redone_by_run_with_every_later_stage(pipeline, tmp_path, capsys):
    out = copy_run(pipeline, tmp_path)
    weights = out / "sae" / "layer_1" / "sae" / "sae_weights.safetensors"
    before = {k: v.clone() for k, v in load_file(str(weights)).items()}
    weights.unlink()
    assert main(argv("run", pipeline, out)) == 0
    printed = capsys.readouterr().out
    assert "is missing since the stage finished: redoing sae, then every later stage" in printed, printed
    assert "[extract] already done" in printed and "[steer] started" in printed and "[report] started" in printed
    assert all(torch.equal(before[k], v) for k, v in load_file(str(weights)).items())  # same seed, same SAE


def test_a_truncated_pruned_model_is_named_then_rebuilt_by_its_stage(pipeline, tmp_path, capsys):
    out = copy_run(pipeline, tmp_path)
    model = out / "prune" / "model.safetensors"
    weights = {k: v.clone() for k, v in load_file(str(model)).items()}
    model.write_bytes(model.read_bytes()[:1000])
    line = one_line_error(capsys, argv("extract", pipeline, out))
    assert f"{model} changed since the prune stage finished; run `headsteer prune {SMOKE} " in line
    assert main(argv("prune", pipeline, out)) == 0
    assert "resuming from" in capsys.readouterr().out  # its final checkpoint: no retraining
    assert all(torch.equal(weights[k], v) for k, v in load_file(str(model)).items())


def test_a_single_stage_names_the_command_that_redoes_a_damaged_input(pipeline, tmp_path, capsys):
    out = copy_run(pipeline, tmp_path)
    (out / "extract" / "layer_1" / "test" / "chunk_00000.safetensors").unlink()
    line = one_line_error(capsys, argv("sae", pipeline, out))
    assert "extract/layer_1/test/chunk_00000.safetensors is missing since the extract stage finished; run " in line
    assert f"`headsteer extract {SMOKE} data.root={pipeline.data.root} out={out} {' '.join(PIPELINE)}`" in line


def test_deleted_sae_weights_are_rebuilt_by_the_sae_command(pipeline, tmp_path, capsys):
    out = copy_run(pipeline, tmp_path)
    weights = out / "sae" / "layer_1" / "sae" / "sae_weights.safetensors"
    before = {k: v.clone() for k, v in load_file(str(weights)).items()}
    for extra in ((), ("--force",)):
        weights.unlink()
        assert main(argv("sae", pipeline, out, *extra)) == 0
        after = load_file(str(weights))
        assert all(torch.equal(before[k], after[k]) for k in before), extra  # same seed, same SAE
    assert "resuming after epoch 2" in capsys.readouterr().out  # without --force: from its final checkpoint


def test_a_stage_made_from_an_earlier_result_is_redone_or_named(pipeline, tmp_path, capsys):
    out = copy_run(pipeline, tmp_path)
    assert main(argv("extract", pipeline, out)) == 0  # extract again: sae, steer, report were made before it
    line = one_line_error(capsys, argv("steer", pipeline, out))
    assert f"the sae stage in {out / 'sae'} was made from an earlier result of the extract stage; run " in line
    assert f"`headsteer sae {SMOKE} " in line
    assert main(argv("sae", pipeline, out)) == 0
    assert "[sae] the extract stage was redone since this one started: starting sae over" in capsys.readouterr().out


def test_bytes_changed_inside_a_checkpoint_are_caught(tmp_path):
    from headsteer.artifacts.io import load_checkpoint, save_checkpoint
    from headsteer.config import ModelConfig
    from headsteer.model import build_model

    model = build_model(ModelConfig(img_size=28, patch_size=7, embed_dim=48, depth=2, num_heads=6), 10, 1)
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, model, None, {"epoch": 1})
    raw = bytearray(path.read_bytes())
    raw[-200:-190] = os.urandom(10)
    path.write_bytes(bytes(raw))
    with pytest.raises(HeadsteerError, match="no longer matches the checksum written with it; delete it"):
        load_checkpoint(path, model, None)
    with torch.no_grad():
        model.vit.head.weight[0, 0] = float("nan")
    hio.write_tensors(path, {f"model.{k}": v for k, v in model.state_dict().items()}, {"headsteer": '{"state": {}}'})
    with pytest.raises(
        HeadsteerError, match=r"holds non-finite values \(model.vit.head.weight\); delete it to restart"
    ):
        load_checkpoint(path, model, None)


# --------------------------------------------------------------------------------------------------
# Divergence


def test_a_diverging_sae_stops_with_one_line_and_the_fix_needs_no_force(pipeline, tmp_path, capsys):
    out = tmp_path / "run"
    for stage in ("prune", "extract"):
        shutil.copytree(Path(pipeline.out) / stage, out / stage)
    line = one_line_error(capsys, argv("sae", pipeline, out, "sae.lr=1e30"))
    assert "training diverged: the reconstruction loss became non-finite at step 2 (layer 1)" in line
    assert "nothing of it was saved. Lower sae.lr (now 1e+30) and run again (no --force needed)" in line
    assert not list((out / "sae").rglob("*.safetensors")) and not (out / "sae" / "metrics.json").exists()
    assert main(argv("sae", pipeline, out)) == 0  # the default sae.lr, no --force
    assert "nan" not in (out / "sae" / "metrics.json").read_text().lower()


def test_a_diverging_prune_names_its_learning_rate_and_the_fix_needs_no_force(smoke_cfg, capsys):
    cfg = smoke_cfg()
    args = ["prune", SMOKE, f"data.root={cfg.data.root}", f"out={cfg.out}", "prune.joint_epochs=0"]
    args += ["data.train_limit=128", "data.test_limit=64"]
    line = one_line_error(capsys, args + ["prune.dense_lr=1e30"])
    assert "training diverged: loss became " in line and "(dense 1/1)" in line
    assert "Lower prune.dense_lr (now 1e+30) and run again (no --force needed)" in line
    assert main(args) == 0


# --------------------------------------------------------------------------------------------------
# Changed data, first attempts


def _folder(root: Path, sizes: dict[str, tuple[int, int]] | None = None) -> Path:
    """train/ and test/ with classes a and b of 28x28 gray PNGs (or the sizes given per file name)."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    for name, (w, h) in (sizes or {}).items():
        Image.new("L", (w, h), 9).save(root / "train" / "a" / name)
    return root


def test_changed_images_invalidate_the_prune_stage(tmp_path, capsys):
    data = _folder(tmp_path / "data")
    args = ["prune", SMOKE, "data.name=imagefolder", f"data.root={data}", f"out={tmp_path / 'run'}"]
    args += ["prune.dense_epochs=0", "prune.joint_epochs=0"]
    assert main(args) == 0
    assert main(args) == 0 and "[prune] already done" not in capsys.readouterr().out  # a stage command re-runs
    Image.new("L", (28, 28), 7).save(data / "train" / "b" / "0.png")  # same paths, other pixels
    line = one_line_error(capsys, args)
    assert "was made by a different config (data_fingerprint: " in line and "pass --force" in line
    assert main(args + ["--force"]) == 0


def test_a_first_attempt_that_failed_early_does_not_hold_its_folder(tmp_path, capsys):
    data = _folder(tmp_path / "data", {"tiny.png": (1, 1)})
    args = ["prune", SMOKE, "data.name=imagefolder", f"data.root={data}", f"out={tmp_path / 'run'}"]
    args += ["prune.dense_epochs=0", "prune.joint_epochs=0"]
    line = one_line_error(capsys, args)
    assert f"{data / 'train' / 'a' / 'tiny.png'} is 1x1" in line and "set data.image_size=N" in line
    assert main(args + ["data.image_size=24"]) == 0  # another config, no --force: nothing valid was there


# --------------------------------------------------------------------------------------------------
# Odd images


def test_every_pil_mode_becomes_eight_bits(tmp_path):
    gray, color = tmp_path / "gray", tmp_path / "color"
    for root in (gray, color):
        for split in ("train", "test"):
            (root / split / "a").mkdir(parents=True)
    a = gray / "train" / "a"
    Image.fromarray(np.array([[0, 257 * 100, 65535, 32896]], dtype=np.uint16)).save(a / "0_i16.png")
    Image.fromarray(np.array([[0, 100000, 200000, 50000]], dtype=np.int32)).save(a / "1_i32.tif")
    Image.fromarray(np.array([[0.0, 0.5, 1.0, 0.25]], dtype=np.float32)).save(a / "2_f01.tif")
    Image.fromarray(np.array([[-1.0, 0.0, 1.0, 3.0]], dtype=np.float32)).save(a / "3_fwide.tif")
    Image.fromarray(np.array([[[200, 128], [10, 255], [90, 0], [255, 255]]], dtype=np.uint8), "LA").save(a / "4_la.png")
    Image.fromarray(np.array([[0, 1, 0, 1]], dtype=bool)).save(a / "5_bits.png")
    shutil.copy(a / "5_bits.png", gray / "test" / "a" / "x.png")
    ds = load_dataset(DataConfig(name="imagefolder", root=str(gray)))
    assert ds.in_chans == 1
    expected = [[0, 100, 255, 128], [0, 128, 255, 64], [0, 128, 255, 64], [0, 64, 128, 255], [100, 10, 0, 255]]
    assert ds.train.images[:5, 0, 0].tolist() == expected
    assert ds.train.images[5, 0, 0].tolist() == [0, 255, 0, 255]

    c = color / "train" / "a"
    pal = Image.fromarray(np.array([[0, 1, 1, 0]], dtype=np.uint8), "P")
    pal.putpalette([255, 0, 0, 0, 255, 0])
    pal.save(c / "0_p.png", transparency=0)  # index 0 (red) transparent
    rgba = np.array([[[200, 100, 50, 128], [1, 2, 3, 255], [9, 9, 9, 0], [255, 255, 255, 255]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(c / "1_rgba.png")
    Image.new("CMYK", (4, 1), (0, 255, 255, 0)).save(c / "2_cmyk.tif")
    shutil.copy(c / "1_rgba.png", color / "test" / "a" / "x.png")
    ds = load_dataset(DataConfig(name="imagefolder", root=str(color)))
    assert ds.in_chans == 3
    px = ds.train.images[:, :, 0].permute(0, 2, 1).tolist()  # (N, W, C)
    assert px[0] == [[0, 0, 0], [0, 255, 0], [0, 255, 0], [0, 0, 0]]
    assert px[1] == [[100, 50, 25], [1, 2, 3], [0, 0, 0], [255, 255, 255]]
    assert px[2] == [[255, 0, 0]] * 4


def test_premultiplied_modes_and_an_unconvertible_image(tmp_path):
    from headsteer.data.pil_images import to_8bit

    la = Image.fromarray(np.array([[[200, 128]]], dtype=np.uint8), "LA").convert("La")
    assert np.asarray(to_8bit(la, "x")).tolist() == [[100]]
    rgba = Image.fromarray(np.array([[[200, 100, 50, 128]]], dtype=np.uint8), "RGBA").convert("RGBa")
    assert np.asarray(to_8bit(rgba, "x")).tolist() == [[[100, 50, 25]]]
    nan = Image.fromarray(np.array([[0.0, np.nan]], dtype=np.float32))
    with pytest.raises(HeadsteerError, match=r"image /data/n.tif \(mode F\) holds NaN or infinite pixels"):
        to_8bit(nan, "/data/n.tif")


def test_symbolic_link_loops_hidden_files_and_a_file_in_two_classes(tmp_path):
    root = _folder(tmp_path / "data")
    extra = tmp_path / "extra"
    extra.mkdir()
    Image.new("L", (28, 28), 5).save(extra / "y.png")
    a = root / "train" / "a"
    os.symlink("..", a / "loop")  # back up to train/: would re-read a and b as class a, forever
    os.symlink(".", a / "self")
    os.symlink(extra, a / "sub")
    os.symlink(extra, a / "sub2")  # the same real folder twice: read once
    (root / "train" / ".ipynb_checkpoints").mkdir()
    Image.new("L", (28, 28)).save(root / "train" / ".ipynb_checkpoints" / "z.png")
    (a / ".cache").mkdir()
    Image.new("L", (28, 28)).save(a / ".cache" / "q.png")
    Image.new("L", (28, 28)).save(a / ".hidden.png")
    ds = load_dataset(DataConfig(name="imagefolder", root=str(root)))
    assert ds.classes == ["a", "b"] and ds.train.labels.tolist() == [0] * 5 + [1] * 4
    assert ds.train.images[4].float().mean() == 5  # a/sub/y.png, once
    os.symlink("../a", root / "train" / "b" / "other")
    with pytest.raises(HeadsteerError, match=r"is the same file as one in class folder 'a' \(a symbolic link\)"):
        load_dataset(DataConfig(name="imagefolder", root=str(root)))


# --------------------------------------------------------------------------------------------------
# Hugging Face labels

datasets = pytest.importorskip("datasets", reason="make install installs `datasets` (extra hf)")


def _hf(root: Path, train: list, test: list, label=None, images: list | None = None) -> str:
    """A DatasetDict of 8x8 gray images with these labels (feature `label`, default int64)."""
    feats = datasets.Features({"image": datasets.Image(), "label": label or datasets.Value("int64")})
    px = [Image.new("L", (8, 8), 10 * i) for i in range(max(len(train), len(test)))]
    splits = {}
    for name, labels in (("train", train), ("test", test)):
        imgs = images if images is not None and name == "train" else px[: len(labels)]
        splits[name] = datasets.Dataset.from_dict({"image": imgs, "label": labels}, features=feats)
    datasets.DatasetDict(splits).save_to_disk(str(root))
    return str(root)


@pytest.mark.parametrize(
    "train, test, label, message",
    [
        ([0, 1, 2, 7], [0], None, "class(es) 3, 4, 5, 6 of label column 'label' have no training image"),
        ([0, 1, 2], [0, 3], None, "row 1 of the test split of {root} has label 3 in column 'label'; labels must be"),
        ([0, -1, 1], [0], "classlabel", "row 1 of the train split of {root} has label -1 in column 'label'; labels"),
        ([0.0, 1.5], [0.0], datasets.Value("float32"), "label column 'label' of {root} holds float32 values"),
        ([0, None], [0], None, "row 1 of the train split of {root} has label None in column 'label'; fix or drop it"),
        (["cat", "dog"], ["cow"], datasets.Value("string"), "row 0 of the test split of {root} has label 'cow'"),
    ],
)
def test_bad_hf_labels_are_refused_naming_the_row(tmp_path, train, test, label, message):
    if label == "classlabel":
        label = datasets.ClassLabel(names=["x", "y", "z"])
    root = _hf(tmp_path / "ds", train, test, label)
    with pytest.raises(HeadsteerError) as exc:
        load_dataset(DataConfig(name="hf", root=root))
    assert message.format(root=root) in str(exc.value)


def test_hf_string_labels_map_to_sorted_classes(tmp_path):
    root = _hf(tmp_path / "ds", ["dog", "cat", "dog"], ["cat"], datasets.Value("string"))
    ds = load_dataset(DataConfig(name="hf", root=root))
    assert ds.classes == ["cat", "dog"] and ds.train.labels.tolist() == [1, 0, 1] and ds.test.labels.tolist() == [0]


def test_a_none_hf_image_is_refused_before_training(tmp_path, capsys):
    root = _hf(tmp_path / "ds", [0, 1, 0], [0, 1], images=[Image.new("L", (8, 8)), None, Image.new("L", (8, 8))])
    capsys.readouterr()
    line = one_line_error(capsys, ["prune", SMOKE, "data.name=hf", f"data.root={root}", f"out={tmp_path / 'run'}"])
    assert f"row 1 of the train split of {root} has no image (None) in column 'image'" in line
    assert not (tmp_path / "run" / "prune" / "checkpoint.safetensors").exists()


# --------------------------------------------------------------------------------------------------
# Text from the data in the report

EVIL = '<img src=x onerror="window.__pwned=1">'


def test_a_class_name_with_html_shows_as_text(pipeline, tmp_path, monkeypatch):
    from headsteer.stages import report

    out = copy_run(pipeline, tmp_path)
    evil = [f"{EVIL}{i}" for i in range(10)]
    for rel in ("prune/metrics.json", "steer/metrics.json", "steer/sweep.json"):
        doc = json.loads((out / rel).read_text())
        doc["classes"] = evil
        (out / rel).write_text(json.dumps(doc))
    real = report.load_dataset

    def with_evil_names(cfg):
        ds = real(cfg)
        ds.classes = evil
        return ds

    monkeypatch.setattr(report, "load_dataset", with_evil_names)
    cfg = load_config(SMOKE, [f"data.root={pipeline.data.root}", f"out={out}", *PIPELINE])
    report.run(cfg, out / "report")
    page = (out / "report" / "report.html").read_text()
    assert "<img src=x" not in page and "\\u003cimg src=x onerror" in page  # only as JSON data
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return  # the page's own handling is checked where Chromium is installed (make test)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        driver.get((out / "report" / "report.html").as_uri())
        deadline = time.time() + 10
        while driver.execute_script("return document.body.getAttribute('data-explorer')") != "ready":
            assert time.time() < deadline
            time.sleep(0.05)
        driver.find_element("css selector", "#lb-rows tr.lb-row").click()
        assert driver.execute_script("return window.__pwned") is None
        assert not driver.find_elements("css selector", "#lb-rows img, #lb-detail img")
        assert EVIL in driver.find_element("id", "lb-rows").text and EVIL in driver.find_element("id", "lb-detail").text
    finally:
        driver.quit()


# --------------------------------------------------------------------------------------------------
# Up-front checks


@pytest.mark.parametrize(
    "override, message",
    [
        ("sae.k=500", "sae.k=500 must be in 1..d_sae=192 (d_in 48)"),
        ("steer.set_size=200", "steer.set_size=200 is larger than the SAE's d_sae=192"),
        ("model.embed_dim=50", "model.embed_dim=50 is not divisible by model.num_heads=6"),
        ("model.num_heads=5", "model.embed_dim=48 is not divisible by model.num_heads=5"),
        ("threads=0", "threads=0 must be >= 1"),
        ("out=/tmp/" + "x" * 300, "out: the folder name 'xxxxxxxxxxxxxxxxxxxxxxxx...' is 300 bytes"),
        ("out=/tmp/" + "/".join(["y" * 200] * 20), "with the files inside a run folder that passes"),
    ],
)
def test_constraints_are_checked_before_any_training(tmp_path, capsys, fashion_dir, override, message):
    args = ["run", SMOKE, f"data.root={fashion_dir}", f"out={tmp_path / 'run'}", override]
    assert message in one_line_error(capsys, args)
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------------
# SIGTERM


def test_sigterm_says_what_resumes_exits_143_and_resumes(fashion_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "headsteer", "prune", SMOKE, f"data.root={fashion_dir}", f"out={out}"]
    cmd += ["data.train_limit=128", "data.test_limit=64", "prune.dense_epochs=8", "prune.joint_epochs=0"]
    cmd += ["prune.checkpoint_every=2", "threads=1"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (out / "prune" / "checkpoint.safetensors").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("headsteer: interrupted (SIGTERM); run the same command again: prune resumes at dense"), err
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "resuming from" in again.stdout, again.stderr


def test_steer_restarts_after_an_interrupt(tmp_path, capsys):
    from headsteer.stages.common import RUNNING
    from headsteer.stages.resume import interrupted
    from headsteer.stages.signals import Terminated

    RUNNING.update(out=str(tmp_path), stage="steer")
    try:
        assert interrupted(Terminated()) == 143
        assert interrupted(KeyboardInterrupt()) == 130
    finally:
        RUNNING.clear()
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "headsteer: interrupted (SIGTERM); run the same command again: steer restarts (it keeps no checkpoint)",
        "headsteer: interrupted; run the same command again: steer restarts (it keeps no checkpoint)",
    ]


def test_a_checkpoint_with_another_optimizer_layout_is_one_line(tmp_path):
    """A checkpoint saved with one optimizer parameter group, resumed into two (an older version's SAE
    checkpoint): one line saying to delete it, not a ValueError."""
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "checkpoint.safetensors"
    one = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    one.step()
    hio.save_checkpoint(path, model, one, {"epoch": 1})
    two = torch.optim.Adam([{"params": [model.weight]}, {"params": [model.bias]}])
    with pytest.raises(HeadsteerError, match=r"optimizer state this version cannot use .*delete it to restart"):
        hio.load_checkpoint(path, model, two)


# --------------------------------------------------------------------------------------------------
# Small test sets, stage records of the wrong shape, read-only stage folders, true messages


def test_a_class_missing_from_a_test_half_is_null_with_its_reason(tmp_path, capsys):
    """Item 6: 3 classes with 7 / 7 / 6 test images; with seed 37 class c has no image in the report half,
    which gave 'top_classes[2].accuracy_no_sae' is nan ... (a bug)."""
    rng = np.random.default_rng(0)
    for split, counts in (("train", (12, 12, 12)), ("test", (7, 7, 6))):
        for c, n in zip("abc", counts, strict=True):
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(
                    tmp_path / "data" / split / c / f"{i}.png"
                )
    args = ["run", SMOKE, "data.name=imagefolder", f"data.root={tmp_path / 'data'}", "data.image_size=28", "seed=37"]
    args += ["steer.bootstrap=100", "steer.random_draws=2", "steer.alpha_step=0.3", "steer.reach=false", "sae.epochs=1"]
    args += [f"out={tmp_path / 'run'}"]
    assert main(args) == 0, capsys.readouterr().err
    held = json.loads((tmp_path / "run" / "steer" / "metrics.json").read_text())["top_classes_table"]
    assert [r["class"] for r in held["all_classes"]] == ["a", "b", "c"]
    c = held["all_classes"][2]
    assert c["gain_report_half"] is None and c["reason"] == "no test image of this class in the report half"
    assert isinstance(c["gain_selection_half"], float)
    assert sorted(t["class"] for t in held["classes"]) == ["a", "b"]  # c cannot be reported: not ranked
    assert all("reason" not in r for r in held["all_classes"][:2])
    assert (tmp_path / "run" / "report" / "results.json").is_file()


BAD_RECORDS = ["null", "[1, 2]", '"x"', '{"artifacts": 5}', '{"artifacts": {"model.safetensors": 3}}']
ARTIFACTS, INPUTS = "has 'artifacts' that are not {path: {size, blake2b}}", "has 'inputs' that are not {stage: digest}"


@pytest.mark.parametrize(
    "name, text, problem",
    [
        ("done.json", "null", "holds null, not a JSON object"),
        ("done.json", "[1, 2]", "holds [1, 2], not a JSON object"),
        ("config.json", '"x"', 'holds "x", not a JSON object'),
        ("done.json", '{"artifacts": 5}', ARTIFACTS),
        ("done.json", '{"artifacts": {"model.safetensors": 3}}', ARTIFACTS),
        ("done.json", '{"artifacts": {"m": {"size": 1.5, "blake2b": "ab"}}}', ARTIFACTS),
        ("config.json", "{}", "has no 'config' object"),
        ("config.json", '{"config": 5}', "has no 'config' object"),
        ("config.json", '{"config": {}, "inputs": [1]}', INPUTS),
        ("config.json", '{"config": {}, "inputs": {"nope": "ab"}}', INPUTS),
    ],
)
def test_a_stage_record_of_the_wrong_shape_is_one_line_naming_it(tmp_path, name, text, problem):
    from headsteer.artifacts.integrity import read_record

    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(HeadsteerError) as exc:
        read_record(path)
    assert str(exc.value) == (
        f"{path} {problem}, not the record headsteer writes there; redo its stage (`headsteer run` with the run's "
        "config redoes it and every later stage)"
    )
    good = {"config.json": {"config": {}, "inputs": {"prune": "ab"}}, "done.json": {"artifacts": {}}}[name]
    path.write_text(json.dumps(good))
    assert read_record(path) == good


@pytest.mark.parametrize("text", BAD_RECORDS[:5])
def test_a_done_json_of_the_wrong_shape_names_the_command_that_redoes_its_stage(pipeline, tmp_path, capsys, text):
    """Item 10: valid JSON of another shape in done.json gave an AttributeError or TypeError traceback."""
    out = copy_run(pipeline, tmp_path)
    (out / "sae" / "done.json").write_text(text)
    line = one_line_error(capsys, argv("steer", pipeline, out))
    assert f"{out / 'sae' / 'done.json'} became unreadable or took another shape since the sae stage finished; " in line
    assert f"run `headsteer sae {SMOKE} data.root={pipeline.data.root} out={out}" in line


def test_a_done_json_of_the_wrong_shape_is_redone_by_run(pipeline, tmp_path, capsys):
    out = copy_run(pipeline, tmp_path)
    (out / "report" / "done.json").write_text('{"artifacts": 5}')
    assert main(argv("run", pipeline, out)) == 0
    done = out / "report" / "done.json"
    assert f"[report] {done} became unreadable or took another shape since the stage finished: redoing report" in (
        capsys.readouterr().out
    )
    assert isinstance(json.loads(done.read_text())["artifacts"], dict)


@pytest.mark.parametrize("text", BAD_RECORDS[:3] + ['{"config": 5, "inputs": [1]}'])
def test_a_config_json_of_the_wrong_shape_starts_its_stage_over_and_says_so(pipeline, tmp_path, capsys, text):
    """Items 10 and 15: a config.json of another shape gave a traceback; an unreadable one printed "the
    prune, extract stage was redone since this one started", which nothing was."""
    out = copy_run(pipeline, tmp_path)
    record = out / "sae" / "config.json"
    record.write_text(text)
    line = one_line_error(capsys, argv("steer", pipeline, out))
    assert f"the sae stage in {out / 'sae'} has an unreadable {record} (or one headsteer did not write); run " in line
    before = (out / "sae" / "metrics.json").read_text()
    assert main(argv("sae", pipeline, out)) == 0
    printed = capsys.readouterr().out
    assert f"[sae] {record} is unreadable or not a stage record: starting sae over" in printed
    assert "was redone" not in printed and "resuming" not in printed
    assert json.loads(record.read_text())["config"]["sae"]["k"] == 8
    assert json.loads((out / "sae" / "metrics.json").read_text())["mse"] == json.loads(before)["mse"]


def test_a_config_json_without_inputs_says_so_not_that_stages_were_redone(pipeline, tmp_path, capsys):
    """Item 15: the redo message names only stages that were redone."""
    out = copy_run(pipeline, tmp_path)
    record = out / "report" / "config.json"
    record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "inputs"}))
    assert main(argv("report", pipeline, out)) == 0
    printed = capsys.readouterr().out
    assert f"[report] {record} does not record the earlier results it was made from (an older headsteer): " in printed
    assert "was redone" not in printed


def test_a_read_only_stage_folder_is_one_line_and_nothing_is_lost(pipeline, tmp_path, capsys, monkeypatch):
    """Item 12: RUN/report (or RUN/steer) read-only, without root: a PermissionError traceback from clean().
    Root ignores file modes, so the refusal of the OS is patched in, as a read-only folder gives it."""
    out = copy_run(pipeline, tmp_path)
    real = Path.unlink

    def refuse(self, missing_ok=False):
        if self.parent.name in ("report", "steer") or self.parent.parent.name == "steer":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    for stage in ("report", "steer"):
        before = tree(out / stage)
        line = one_line_error(capsys, argv(stage, pipeline, out, "--force"))
        assert line.startswith(f"headsteer: error: cannot remove {out / stage}/")
        assert line.endswith(
            f"to redo the {stage} stage (Permission denied); make {out / stage} writable (chmod -R u+w "
            f"{out / stage}) or choose another --out"
        )
        assert tree(out / stage) == before  # nothing removed, nothing half-written


def test_sigterm_during_run_force_names_the_command_that_resumes(pipeline, tmp_path):
    """Item 14: after a SIGTERM during `run --force ...` the message said "sae resumes at layer 1, epoch N",
    but the same command (with --force) starts over from prune. The command it names does resume."""
    out = copy_run(pipeline, tmp_path)
    quick = ["sae.epochs=400", "threads=1", "steer.alpha_step=0.5", "steer.reach=false", "steer.bootstrap=50"]
    cmd = [sys.executable, "-m", "headsteer", *argv("run", pipeline, out, *quick), "--force"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ckpt, deadline = out / "sae" / "layer_1" / "checkpoint.safetensors", time.time() + 300
    ckpt.unlink()  # the finished run's: wait for this command's first one
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    again = f"headsteer run {SMOKE} data.root={pipeline.data.root} out={out} {' '.join(PIPELINE + quick)}"
    want = f"headsteer: interrupted (SIGTERM); run it again without --force (`{again}`): sae resumes at layer 1, epoch "
    assert last.startswith(want), err
    r = subprocess.run([sys.executable, "-m", "headsteer", *again.split()[1:]], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "[prune] already done" in r.stdout and "[extract] already done" in r.stdout
    assert "[sae] resuming after epoch" in r.stdout, r.stdout


def test_the_interrupt_message_of_a_forced_stage_names_the_stage_command(tmp_path, capsys):
    from headsteer.stages.common import RUNNING
    from headsteer.stages.resume import interrupted
    from headsteer.stages.signals import Terminated

    RUNNING.update(out=str(tmp_path), stage="steer", force=True, again="headsteer steer c.yaml --out R")
    try:
        assert interrupted(Terminated()) == 143
    finally:
        RUNNING.clear()
    assert capsys.readouterr().err == (
        "headsteer: interrupted (SIGTERM); run it again without --force (`headsteer steer c.yaml --out R`): steer "
        "restarts (it keeps no checkpoint)\n"
    )


def test_a_finished_sae_layers_marker_of_another_shape_is_trained_again(pipeline, tmp_path, capsys):
    """An unfinished sae stage reads each finished layer's metrics.json as its marker: one of another shape
    (a list here) resumes that layer from its checkpoint instead of a TypeError."""
    out = copy_run(pipeline, tmp_path)
    marker = out / "sae" / "layer_1" / "metrics.json"
    before = json.loads(marker.read_text())
    (out / "sae" / "done.json").unlink()
    marker.write_text("[1]")
    assert main(argv("sae", pipeline, out)) == 0
    assert "[sae] resuming after epoch 2" in capsys.readouterr().out
    assert json.loads(marker.read_text())["mse"] == before["mse"]
