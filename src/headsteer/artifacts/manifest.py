"""Which files in a stage folder headsteer wrote: the folder's marker, which is also its manifest.

A stage folder carries `.headsteer-manifest`, written when headsteer creates (or adopts) the folder.
While a stage runs inside `recording(folder)`, every artifact the atomic writer (`headsteer.artifacts.atomic`)
puts under that folder is appended to the manifest, by its path relative to the folder, BEFORE the file
itself is written; so the manifest lists everything headsteer may have left there. Cleaning a stage
(`--force`, a damaged artifact) removes only listed files; files someone else put there stay. The marker
itself is written through `atomic` too (created whole, then appended one fsynced line at a time).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

MARKER = ".headsteer-manifest"
HEADER = "# headsteer stage folder: files headsteer wrote here (one per line, relative to this folder)\n"

_folder: ContextVar[Path | None] = ContextVar("headsteer_recording", default=None)
_seen: dict[Path, set[str]] = {}
_lock = threading.Lock()


def has_marker(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def create(folder: Path) -> None:
    """Mark `folder` as a headsteer stage folder (keeps the list when the marker exists already)."""
    path = Path(folder) / MARKER
    if not path.is_file():
        from headsteer.artifacts import atomic  # here: atomic imports this module

        atomic.write_bytes(path, HEADER.encode("utf-8"))


def listed(folder: Path) -> list[str]:
    """Relative paths the manifest of `folder` lists (each once, in the order first written)."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return list(dict.fromkeys(ln for ln in lines if ln and not ln.startswith("#")))


@contextmanager
def recording(folder: Path) -> Iterator[None]:
    """Inside this block, every artifact written under `folder` is listed in its manifest first."""
    folder = Path(folder).resolve()
    token = _folder.set(folder)
    try:
        yield
    finally:
        _folder.reset(token)
        with _lock:
            _seen.pop(folder, None)


def note(path: Path) -> None:
    """List `path` in the manifest of the folder being recorded, when it lies inside it."""
    folder = _folder.get()
    if folder is None:
        return
    try:
        rel = Path(path).resolve().relative_to(folder).as_posix()
    except ValueError:  # written outside the stage folder (another stage's file, a temp dir)
        return
    if rel == MARKER:
        return
    with _lock:
        seen = _seen.setdefault(folder, set(listed(folder)))
        if rel in seen:
            return
        seen.add(rel)
        from headsteer.artifacts import atomic  # here: atomic imports this module

        atomic.append_line(folder / MARKER, rel)
