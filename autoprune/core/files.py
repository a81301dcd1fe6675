"""Local files: the cache directory, and writes a concurrent reader never sees half done."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


def cache_dir() -> Path:
    """autoprune's cache (trained demo weights, latency anchors, local copies of runs at URLs)."""
    return Path(os.environ.get("AUTOPRUNE_CACHE", Path.home() / ".cache" / "autoprune"))


def _umask() -> int:
    """The process's umask (read by setting it, the only portable way, and putting it back)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block succeeds.

    Another process (a teammate reading a shared directory, ``autoprune runs``) sees the old file or
    the new one, never a half-written one; a failed write leaves the old file in place.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    # mkstemp makes 0600 whatever the umask: the file gets the mode open() would give it (0644 under
    # umask 022), so a teammate can read a run in a shared directory.
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)


def is_temporary(name: str) -> bool:
    """A file ``atomic_path`` is still writing (never copied or listed)."""
    return name.startswith(".") and name.endswith(".tmp")
