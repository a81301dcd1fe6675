"""Where a run's files go: a directory (local, or shared by a team's machines), or a URL
(``s3://bucket/prefix``…), where they are written locally and pushed as each trial ends."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autoprune.core.errors import AutopruneError
from autoprune.core.location import Location, local_path
from autoprune.core.mirror import RunMirror, fetch, local_copy_dir


@dataclass(kw_only=True)
class RunOutputs:
    """``local``: the directory this process writes; ``location``: where people (and ``apply``,
    ``--resume``, ``autoprune runs``) find the run: the same directory, or the URL it is pushed to."""

    local: Path
    location: str
    mirror: RunMirror | None = None
    warn: Callable[[str], None] = print
    _failing: bool = field(default=False, repr=False)

    def where(self, name: str = "") -> str:
        """How to name one of the run's files (or the run itself) to a person."""
        if self.mirror is None:
            return str(self.local / name) if name else str(self.local)
        return f"{self.location}/{name}" if name else self.location

    def sync(self, *, final: bool = False) -> None:
        """Push what changed to the URL (nothing to do for a directory). A failure mid-run is a
        warning (the next trial's sync retries); at the end it is an error naming the local copy."""
        if self.mirror is None:
            return
        try:
            self.mirror.push()
        except Exception as exc:  # noqa: BLE001 - network, credentials, quota: the run goes on locally
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if final:
                raise AutopruneError(f"--out {self.location}: the run's files could not be written there ({msg}); "
                                     f"all of them are in {self.local}: copy them there, or --resume "
                                     f"{self.local}") from None
            if not self._failing:
                self.warn(f"[yellow]cannot write to {self.location}[/] ({msg}); the run goes on in {self.local} "
                          "and is pushed when the storage answers again")
            self._failing = True
        else:
            self._failing = False


def check_out(out: str | Path) -> None:
    """A URL given as ``--out`` is reachable (checked before any work); a directory always is."""
    if local_path(out) is None:
        Location.parse(str(out)).check(what="--out")


def new_run(out: str | Path, *, warn: Callable[[str], None] = print) -> RunOutputs:
    """A new run, named by the time it started, under ``out`` (a directory or a URL)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = local_path(out)
    if base is not None:
        run_dir, n = base / stamp, 1
        while run_dir.exists():
            run_dir, n = base / f"{stamp}-{n}", n + 1
        (run_dir / "plans").mkdir(parents=True)
        return RunOutputs(local=run_dir, location=str(run_dir), warn=warn)
    root = Location.parse(str(out))
    name, n = stamp, 1
    while root.exists(name):
        name, n = f"{stamp}-{n}", n + 1
    remote = root.child(name)
    local = local_copy_dir(remote)
    shutil.rmtree(local, ignore_errors=True)  # a copy left by an earlier run of the same name
    (local / "plans").mkdir(parents=True)
    return RunOutputs(local=local, location=remote.url, mirror=RunMirror(local, remote), warn=warn)


def existing_run(run: str | Path, *, what: str, warn: Callable[[str], None] = print) -> RunOutputs:
    """A run to continue (``--resume``): a directory as it is, or a fresh local copy of a URL's run."""
    path = local_path(run)
    if path is not None:
        return RunOutputs(local=path, location=str(path), warn=warn)
    remote = Location.parse(str(run), what=what)
    remote.check(what=what)
    if not remote.is_file("config.yaml"):
        raise AutopruneError(f"{what} {run}: not an autoprune run (no config.yaml there); pass a run's URL "
                             "as `autoprune runs --out URL` lists them")
    local = local_copy_dir(remote)
    shutil.rmtree(local, ignore_errors=True)  # the URL holds the truth: no file of an older copy survives
    fetch(remote, dest=local)
    mirror = RunMirror(local, remote)
    mirror.mark_pushed()  # what was just fetched is there already
    return RunOutputs(local=local, location=remote.url, mirror=mirror, warn=warn)

