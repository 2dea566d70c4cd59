"""SIGTERM handled like Ctrl-C (SIGINT): both stop the command with a KeyboardInterrupt, after which
the CLI says what the same command will resume (headsteer.stages.resume.interrupted) and exits 143
(SIGINT: 130). Every artifact is written atomically, so an interruption leaves no half-written file."""

from __future__ import annotations

import signal
import threading


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def install() -> None:
    """Turn SIGTERM into `Terminated` (a KeyboardInterrupt) in the main thread (elsewhere: nothing)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
