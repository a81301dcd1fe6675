"""One machine, one latency measurement at a time, and no fine-tuning while it runs.

A reader-writer file lock per machine (so per Ray node): a latency measurement holds it
exclusively; each fine-tune step holds it shared. A turnstile gives measurements priority, so a
stream of fine-tune steps cannot starve them: a waiting measurement closes the turnstile, the
steps in flight finish, and new steps wait until the measurement is done.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

_handles: dict[tuple[int, Path], IO[str]] = {}


def _lock_dir() -> Path:
    return Path(os.environ.get("AUTOPRUNE_LOCK_DIR", tempfile.gettempdir()))


def _handle(name: str) -> IO[str]:
    # One open file per process and lock file: flock locks belong to the open file description.
    path = _lock_dir() / f"autoprune-{name}.lock"
    key = (os.getpid(), path)
    if key not in _handles:
        _handles[key] = open(path, "a")  # noqa: SIM115 - kept open on purpose
    return _handles[key]


@contextlib.contextmanager
def _flock(name: str, mode: int) -> Iterator[None]:
    fh = _handle(name)
    fcntl.flock(fh, mode)
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)


PATIENCE_S = 1.0  # a wait longer than this is said: another process is timing or training here


def _say_waiting(_: str) -> None:
    print(f"waiting for this machine's latency-measurement lock ({_lock_dir()}/autoprune-*.lock): another "
          "search or measurement is timing or training here; it goes on when that one is done", file=sys.stderr)


def _wait_flock(fh: IO[str], mode: int, *, on_wait: Callable[[str], None]) -> None:
    """flock, saying so once when the lock is still held by another process after ``PATIENCE_S``."""
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        try:
            fcntl.flock(fh, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.05)
    on_wait("measurement lock busy")
    fcntl.flock(fh, mode)


@contextlib.contextmanager
def measuring(*, on_wait: Callable[[str], None] = _say_waiting) -> Iterator[None]:
    """Exclusive: no other measurement and no fine-tune step on this machine meanwhile. A wait
    longer than ``PATIENCE_S`` is said once (``on_wait``; default: a line on stderr)."""
    turnstile = _handle("turnstile")
    _wait_flock(turnstile, fcntl.LOCK_EX, on_wait=on_wait)
    try:
        _wait_flock(_handle("cores"), fcntl.LOCK_EX, on_wait=on_wait)
    finally:
        fcntl.flock(turnstile, fcntl.LOCK_UN)
    try:
        yield
    finally:
        fcntl.flock(_handle("cores"), fcntl.LOCK_UN)


@contextlib.contextmanager
def training_step() -> Iterator[None]:
    """Shared: many fine-tune steps at once, none while a measurement runs or waits."""
    with _flock("turnstile", fcntl.LOCK_EX):
        pass
    with _flock("cores", fcntl.LOCK_SH):
        yield
