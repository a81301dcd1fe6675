"""Where a run's files go, and what is written there as each trial ends: a directory (local, or
shared by a team's machines), or a URL (``s3://bucket/prefix``…), where they are written in a
local copy and pushed."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from autoprune.core.errors import AutopruneError, first_line
from autoprune.core.location import Location, local_path
from autoprune.core.metric import ACCURACY, MetricSense
from autoprune.core.mirror import RunMirror, fetch, local_copy_dir
from autoprune.core.records import Status
from autoprune.report.channels import plot_front_channels
from autoprune.report.frames import trials_frame, write_pareto, write_trials
from autoprune.report.html import write_report
from autoprune.report.plots import plot_pareto


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
            msg = first_line(exc)
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


class Checkpoint:
    """What is written as each trial ends: trials.csv, the Pareto front(s), the trial's plan (by
    the recorder), the plots and report.html; then pushed to the run's URL, if it has one. A
    teammate sees the run as it goes; a dead driver loses nothing. The pictures are skipped for a
    trial that ends sooner after the last drawing than ``draw_share`` allows (at most that share
    of the driver's time goes to drawing: on thousands of fast trials, not every one is drawn)."""

    draw_share = 0.1

    def __init__(self, outputs: RunOutputs, *, budgets_ms: dict[str, float], baseline: dict[str, Any],
                 profiles: list[str], timings: dict[str, float] | None = None, sense: MetricSense = ACCURACY) -> None:
        self.outputs, self.budgets_ms, self.baseline, self.profiles = outputs, budgets_ms, baseline, profiles
        self.sense = sense
        self.timings = {} if timings is None else timings  # outputs_s: the driver's time spent here
        self._drawn_at, self._draw_s = time.monotonic(), 0.0

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        run_dir = self.outputs.local
        table = trials_frame(rows, baseline=self.baseline, profiles=self.profiles)
        write_trials(table, run_dir)
        front = write_pareto(table, run_dir, profiles=self.profiles, sense=self.sense)
        start = time.monotonic()
        if (start - self._drawn_at) * self.draw_share >= self._draw_s:
            try:
                draw_plots(run_dir, table, front, budgets_ms=self.budgets_ms, baseline=self.baseline,
                           profiles=self.profiles, sense=self.sense)
                write_report(run_dir)
            except Exception:  # noqa: BLE001, S110 - pictures mid-run are a courtesy; finish() draws them for sure
                pass
            self._drawn_at = time.monotonic()
            self._draw_s = self._drawn_at - start
        self.outputs.sync()
        self.timings["outputs_s"] = self.timings.get("outputs_s", 0.0) + time.perf_counter() - t0


def draw_plots(run_dir: Path, table: pd.DataFrame, front: pd.DataFrame, *, budgets_ms: dict[str, float],
               baseline: dict[str, Any], profiles: list[str],
               sense: MetricSense = ACCURACY) -> tuple[Path | None, Path | None]:
    """pareto.png (once a trial completed) and pareto_channels.png (for a front that has plans)."""
    plot = None
    if (table["status"] == Status.COMPLETED).any():
        plot = plot_pareto(table, run_dir, budgets_ms=budgets_ms, baseline=baseline, profiles=profiles, sense=sense)
    return plot, plot_front_channels(run_dir, front, sense=sense)
