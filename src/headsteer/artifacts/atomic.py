"""The one writer of every file headsteer produces (the run folder's lock file aside: `stages.runlock`).

`write_bytes` takes content already serialised in memory, writes it to a temp file with a unique
name (`.<name>.<pid>.<random>.tmp`) in the same folder, fsyncs it and renames it into place: a crash
or a full disk never leaves a half-written artifact where a finished one is expected, and two
writers of one path never touch each other's temp files. A temp file is removed by the writer that
made it, or later by a writer of the same path once the process named in it is gone. A full disk, a
quota, a read-only file system or a missing permission becomes one line naming the path.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

from headsteer.artifacts import manifest
from headsteer.core.errors import HeadsteerError, write_error


def _temp_pattern(path: Path) -> re.Pattern:
    return re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[0-9a-f]{12}\.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(path: Path) -> None:
    """Delete the temp files of `path` whose writer process is gone (killed mid-write); live ones stay."""
    pattern = _temp_pattern(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp") if path.parent.is_dir() else []:
        m = pattern.fullmatch(tmp.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            tmp.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_folder(folder: Path) -> None:
    """fsync a folder so that the rename itself is on disk (not possible everywhere: best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def make_folder(folder: Path) -> None:
    """mkdir -p, with a one-line error when the path cannot be a folder (a file in the way, no permission)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HeadsteerError(
            f"cannot create the run folder {folder} ({exc.strerror or exc}); "
            "choose another --out (or `out=` in the config)"
        ) from None


def append_line(path: Path, line: str) -> None:
    """Append `line` and a newline to `path`, fsynced (the manifest's log: a crash leaves earlier lines whole)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise write_error(exc, path) from None


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (unique temp file in the same folder, fsync, rename)."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        manifest.note(path)  # listed before it exists: the manifest never misses a file of ours
        remove_stale_temps(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(exc, path) from None
        raise
    _sync_folder(path.parent)
