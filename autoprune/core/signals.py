"""SIGTERM (how ``timeout``, batch schedulers and container runtimes stop a job) ends a search the
way Ctrl-C does: the running trials stop, what finished is written, and one line says how to resume.

Ray installs its own SIGTERM handler in ``ray.init`` (it exits the driver, and its core worker
dumps a native stack trace), so the search installs this one again once Ray is up.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_received: int | None = None  # the signal that ended the search, once one did


def _as_interrupt(signum: int, frame) -> None:
    global _received
    _received = signum
    handler = signal.getsignal(signal.SIGINT)  # Ray Tune's during tuner.fit(): it ends the loop cleanly
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM acts as Ctrl-C (main thread only: signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _as_interrupt)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler not set from Python; ours stays until the outer block ends
            signal.signal(signal.SIGTERM, previous)


def terminated() -> bool:
    """Whether SIGTERM ended the search (the CLI then exits 143, as a terminated process does)."""
    return _received == signal.SIGTERM
