"""One headsteer process per run folder: an exclusive `fcntl.flock` on `RUN/.lock`.

The lock is held for a whole `headsteer run` or stage command and released when the process ends,
however it ends (the kernel drops a dead process's locks, so a killed run never leaves a stale one).
The file holds the holder's pid, which the refusal names; it is never deleted.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from headsteer.artifacts.atomic import make_folder
from headsteer.core.errors import HeadsteerError, write_error

LOCK_NAME = ".lock"


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold RUN/.lock for the block; refuse with one line when another process holds it."""
    path = Path(run_dir) / LOCK_NAME
    make_folder(Path(run_dir))
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise HeadsteerError(
            f"cannot create the run folder's lock {path} ({exc.strerror or exc}); choose another --out"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise HeadsteerError(
                f"run folder {run_dir} is in use by another headsteer process (pid {holder}); wait for it to "
                "finish (or stop it), or choose another --out"
            ) from None
        except OSError as exc:  # a file system without locks (some network mounts)
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            print(f"headsteer: note: {path} cannot be locked here ({exc.strerror}); run one headsteer at a time in it")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            raise write_error(exc, path) from None
        yield
    finally:
        os.close(fd)  # releases the lock
