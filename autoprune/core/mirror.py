"""A run kept at a URL: written in a local directory and pushed there file by file as it changes;
read by fetching a local copy (only the files that changed since the last fetch)."""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path

from autoprune.core.files import cache_dir, is_temporary
from autoprune.core.location import Location, local_path

# Ray Tune's own experiment state: large, and nothing autoprune reads back.
SKIPPED = ("ray",)
# What reading a run (apply, autoprune runs) does not need: also the study and earlier apply outputs.
READ_SKIPPED = ("ray", "study.db", "apply-")
# Pushed last, in this order: a reader who finds a trial in trials.csv finds its plan, and
# summary.yaml (which says the run finished) appears after everything it summarises.
_LAST = ("trials.csv", "pareto.csv", "report.html", "summary.yaml")


def _skipped(rel: str, skip: Sequence[str]) -> bool:
    """``rel``'s first part is one of ``skip`` (a name ending in "-" is a prefix)."""
    top = rel.split("/", 1)[0]
    return any(top == s or (s.endswith("-") and top.startswith(s)) for s in skip)


def _order(rel: str) -> tuple[int, str]:
    if "/" in rel:
        return (0, rel)  # plans/, profiles/, apply-*/ first
    if rel in _LAST:
        return (2 + _LAST.index(rel), rel)
    return (1 if not rel.startswith("pareto") else 2, rel)


class RunMirror:
    """Pushes the files of ``local`` that changed since the last push to ``remote``."""

    def __init__(self, local: Path, remote: Location, *, skip: Sequence[str] = SKIPPED) -> None:
        self.local, self.remote, self.skip = local, remote, tuple(skip)
        self._pushed: dict[str, tuple[int, int]] = {}

    def changed(self) -> list[str]:
        out = []
        for path in self.local.rglob("*"):
            rel = path.relative_to(self.local).as_posix()
            if not path.is_file() or _skipped(rel, self.skip) or is_temporary(path.name) \
                    or path.name.endswith(("-journal", "-wal", "-shm")):
                continue
            if self._pushed.get(rel) != _stamp(path):
                out.append(rel)
        return sorted(out, key=_order)

    def mark_pushed(self) -> None:
        """Take the local files as already at the remote (a run just fetched from there)."""
        for rel in self.changed():
            self._pushed[rel] = _stamp(self.local / rel)

    def push(self) -> list[str]:
        """Upload what changed; returns the files pushed. Raises OSError when the remote fails
        (what was not pushed is pushed by the next call)."""
        pushed = []
        for rel in self.changed():
            path = self.local / rel
            stamp = _stamp(path)  # before reading: a write during the upload is pushed next time
            data = _sqlite_snapshot(path) if path.suffix == ".db" else path.read_bytes()
            self.remote.write(rel, data)
            self._pushed[rel] = stamp
            pushed.append(rel)
        return pushed


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _sqlite_snapshot(path: Path) -> bytes:
    """A consistent copy of a SQLite database another connection may be writing (Optuna's study)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.db"
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        return copy.read_bytes()


def local_copy_dir(remote: Location) -> Path:
    """Where this machine keeps its copy of the run at ``remote`` (one per URL)."""
    key = hashlib.sha256(remote.url.encode()).hexdigest()[:16]
    return cache_dir() / "runs" / key / remote.name


def fetch(remote: Location, *, dest: Path | None = None, only: Sequence[str] | None = None,
          skip: Sequence[str] = SKIPPED) -> Path:
    """A local copy of the directory at ``remote`` (default: ``local_copy_dir``), refreshed: files
    whose size or time differ from the remote's are downloaded again. ``only``: just these files."""
    dest = dest if dest is not None else local_copy_dir(remote)
    dest.mkdir(parents=True, exist_ok=True)
    for f in remote.files():
        if _skipped(f.path, skip) or (only is not None and f.path not in only):
            continue
        target = dest / f.path
        if target.is_file():
            st = target.stat()
            same_time = f.mtime is None or abs(st.st_mtime - f.mtime.timestamp()) < 1e-3
            if st.st_size == f.size and same_time:
                continue
        remote.download(f.path, target, mtime=f.mtime)
    return dest


def push_tree(local: Path, remote: Location) -> list[str]:
    """Upload every file under ``local`` to ``remote`` (e.g. an ``apply`` output for a run at a URL)."""
    return RunMirror(local, remote, skip=()).push()


def readable_run(run: str | Path, *, what: str, only: Sequence[str] | None = None) -> tuple[Path, str]:
    """A run to read (``apply``, ``autoprune runs``): its directory, or a refreshed local copy of the
    run at a URL (without the study and Ray's state). Returns the local directory and the run's
    location as the user names it."""
    path = local_path(run)
    if path is not None:
        return path, str(path)
    remote = Location.parse(str(run), what=what)
    remote.check(what=what)
    return fetch(remote, only=only, skip=READ_SKIPPED), remote.url
