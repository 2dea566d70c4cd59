"""Where a run executes and how it reports progress: device lookup and progress bars.

Progress goes to a tqdm bar on a terminal (rank 0 only under torchrun). When stderr is not a terminal
(CI logs, `make demo 2>&1 | tee log`, `nohup`), a bar would print nothing useful, so `progress` prints
a short flushed line to stdout at most every `LOG_EVERY_S` seconds while the loop runs. It prints
nothing when the loop ends: every loop's end is reported once, by its caller's own summary line
(`[prune] dense epoch 1/3: ...`, `[steer] 744 points in ...`).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, Optional

import torch
from tqdm.auto import tqdm

from headsteer.core import distributed
from headsteer.core.errors import HeadsteerError

LOG_EVERY_S = 30.0
"""Seconds between progress lines when the output is not a terminal."""


def resolve_device(name: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a torch device (one GPU per torchrun process)."""
    if name in ("auto", "cuda") and torch.cuda.is_available() and distributed.info().enabled:
        return torch.device("cuda", distributed.info().local_rank)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HeadsteerError(f"device='{name}' but no CUDA GPU is visible; use device=cpu (or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise HeadsteerError(f"device='{name}' is not a torch device; use auto, cpu, cuda or cuda:N") from None


_busy_hint_shown = False


def configure_threads(threads: Optional[int]) -> int:
    """Set torch's CPU threads to `threads`; None leaves torch's default (one per CPU core), which is left
    untouched rather than set to the same number: on torch 2.14's CPU build, calling set_num_threads at
    all made scaled_dot_product_attention twice as slow (2.2 -> 4.7 ms for the demo's shapes, 2 cores).
    The count never depends on the load, so a run repeats bitwise; but when other programs already keep
    the CPUs busy, threads that spin on shared cores slow each other down, so a hint to set `threads=1`
    is printed once."""
    global _busy_hint_shown
    if threads is not None:
        torch.set_num_threads(threads)
    n = torch.get_num_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if threads is None and n > 1 and load > n + 0.5 and not _busy_hint_shown and distributed.info().is_main:
        _busy_hint_shown = True
        print(
            f"[threads] the machine is busy (load {load:.1f} on {n} CPUs) and torch uses {n} threads; with other "
            "programs on the same cores, threads=1 is often faster (see docs: Performance, threads)",
            flush=True,
        )
    return n


def is_terminal() -> bool:
    return sys.stderr.isatty()


class LogProgress:
    """The part of tqdm's interface we use, printing `[desc] i/total (p %), s elapsed` lines.

    Lines appear at most every `every` seconds while the loop runs, flushed, on rank 0 only; none at
    the last step or at the end (the caller's summary line says the loop finished).
    """

    def __init__(
        self,
        iterable: Optional[Iterable] = None,
        desc: str = "",
        total: Optional[int] = None,
        every: float = LOG_EVERY_S,
    ):
        self.iterable, self.desc, self.every = iterable, desc, every
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n = total, 0
        self.start = self.last = time.monotonic()
        self.postfix = ""
        self.quiet = not distributed.info().is_main

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        finished = self.total is not None and self.n >= self.total
        if not finished and time.monotonic() - self.last >= self.every:
            self._print()

    def set_postfix(self, **kwargs) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kwargs.items())

    def close(self) -> None:
        """Nothing to print: the caller's own summary line reports the end of the loop."""

    def _print(self) -> None:
        self.last = time.monotonic()
        if self.quiet:
            return
        of = f"/{self.total} ({100 * self.n / max(1, self.total):.0f} %)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"[{self.desc}] {self.n}{of}, {self.last - self.start:.0f} s elapsed{extra}", flush=True)


def progress(iterable: Optional[Iterable] = None, **kwargs):
    """A tqdm bar on a terminal; periodic flushed log lines otherwise (see module docstring)."""
    if is_terminal():
        return tqdm(iterable, dynamic_ncols=True, leave=False, disable=not distributed.info().is_main, **kwargs)
    return LogProgress(iterable, desc=kwargs.get("desc", ""), total=kwargs.get("total"))
