"""The one exception type for mistakes a user can fix.

The CLI prints a ``HeadsteerError`` as a single line (no traceback) and exits with status 2; anything
else is a bug and keeps its traceback.
"""

import errno
from pathlib import Path

_AGAIN = "nothing was half-written (the previous version, if any, is intact): free space and run the same command again"
_FIXES = {
    errno.ENOSPC: "disk full while writing {path}; " + _AGAIN,
    errno.EDQUOT: "disk quota exceeded while writing {path}; " + _AGAIN,
    errno.EROFS: "cannot write {path}: the file system is read-only; choose another --out",
    errno.EACCES: "cannot write {path}: permission denied; fix the folder's permissions or choose another --out",
    errno.EPERM: "cannot write {path}: operation not permitted; fix the folder's permissions or choose another --out",
}


class HeadsteerError(Exception):
    """A problem the user caused and can fix; the message names the problem and the fix."""


def write_error(exc: OSError, path: str | Path) -> HeadsteerError:
    """The one-line error for an OSError while writing `path` (disk full, quota, read-only, permissions)."""
    fix = _FIXES.get(exc.errno, "cannot write {path} ({reason}); choose another --out")
    return HeadsteerError(fix.format(path=path, reason=exc.strerror or exc))
