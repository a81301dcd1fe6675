"""Past runs: one summary per run directory (what it searched, how far it got, its best plan), and
their fronts plotted together."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from autoprune.core.config import read_yaml
from autoprune.core.errors import AutopruneError
from autoprune.core.files import atomic_path
from autoprune.core.location import Location, local_path
from autoprune.core.metric import ACCURACY, MetricSense
from autoprune.core.mirror import fetch, readable_run
from autoprune.core.records import RunConfig
from autoprune.report.frames import best_within_budget

FINISHED, INTERRUPTED, INCOMPLETE, UNREADABLE = "finished", "interrupted", "incomplete", "unreadable"
_SUMMARY_FILES = ("config.yaml", "trials.csv", "summary.yaml")  # what a run's line needs


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """``status``: finished (all trials, outputs written), interrupted (Ctrl-C: outputs of what
    finished), incomplete (still running, or its driver died before writing outputs: ``--resume``),
    unreadable (``detail`` says why)."""

    run_dir: Path  # for a run at a URL: its local copy
    status: str
    model: str = ""
    budgets: tuple[str, ...] = ()
    trials_done: int = 0
    trials_planned: int = 0
    best_trial: str | None = None  # the most accurate completed plan within budget (confirmed, where it was)
    best_accuracy: float = math.nan
    best_latency_ms: float = math.nan
    sense: MetricSense = ACCURACY  # the run's metric: how best_accuracy reads
    started: dt.datetime | None = None
    detail: str = ""
    location: str = ""  # what to pass to apply and --resume: the run's directory or URL


def _summary(run: Path) -> dict:
    try:
        data = read_yaml(run / "summary.yaml")
    except AutopruneError:
        return {}
    return data if isinstance(data, dict) else {}


def summarize_run(run_dir: str | Path, *, location: str | None = None) -> RunSummary:
    run = Path(run_dir)
    location = str(run) if location is None else location
    try:
        conf = RunConfig.read(run, what="run")
    except AutopruneError as exc:
        return RunSummary(run_dir=run, status=UNREADABLE, detail=str(exc), location=location)
    trials = pd.read_csv(run / "trials.csv") if (run / "trials.csv").is_file() else pd.DataFrame()
    done = len(trials)
    if (run / "summary.yaml").is_file():
        exhausted = bool(_summary(run).get("space_exhausted"))  # it ended early by design: every plan had run
        status = FINISHED if done >= conf.trials or exhausted else INTERRUPTED
    else:
        status = INCOMPLETE
    best = best_within_budget(trials, sense=conf.sense)
    return RunSummary(sense=conf.sense,
        run_dir=run, status=status, model=conf.model, budgets=tuple(b.budget for b in conf.budgets.values()),
        trials_done=done, trials_planned=conf.trials, best_trial=None if best is None else str(best["trial"]),
        best_accuracy=math.nan if best is None else float(best["confirmed_accuracy"] if pd.notna(
            best.get("confirmed_accuracy")) else best["accuracy"]),  # the fresh seeds' mean, where confirmed
        best_latency_ms=math.nan if best is None else float(best["latency_p50_ms"]),
        started=dt.datetime.fromtimestamp((run / "config.yaml").stat().st_mtime), location=location)


def find_runs(out: str | Path) -> list[RunSummary]:
    """Every run directly under ``out`` (a directory or URL holding a config.yaml), oldest first."""
    root = local_path(out)
    if root is None:
        return _sorted(_remote_runs(str(out)))
    if not root.is_dir():
        raise AutopruneError(f"--out {str(out)!r}: no such directory; pass the directory searches wrote into "
                             "(their --out, default runs)")
    return _sorted([summarize_run(d) for d in sorted(root.iterdir()) if (d / "config.yaml").is_file()])


def _remote_runs(url: str) -> list[RunSummary]:
    root = Location.parse(url, what="--out")
    root.check(what="--out")
    found = []
    for name in root.dirs():
        run = root.child(name)
        local = fetch(run, only=_SUMMARY_FILES)
        if (local / "config.yaml").is_file():
            found.append(summarize_run(local, location=run.url))
    return found


def _sorted(runs: list[RunSummary]) -> list[RunSummary]:
    return sorted(runs, key=lambda r: (r.started or dt.datetime.min, str(r.run_dir)))


def plot_fronts(runs: Sequence[str | Path], path: str | Path) -> Path:
    """The Pareto fronts (primary profile) of several runs on one plot, each with its budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fronts = []
    for r in runs:
        run, where = readable_run(r, what="--compare", only=("config.yaml", "pareto.csv"))
        conf = RunConfig.read(run, what="--compare")
        if not (run / "pareto.csv").is_file():
            raise AutopruneError(f"--compare {where}: no pareto.csv yet (the run wrote no outputs); "
                                 f"finish it with autoprune search --resume {where}")
        fronts.append((run, conf, pd.read_csv(run / "pareto.csv")))
    profiles = {conf.profiles[0]["name"] for _, conf, _ in fronts}
    senses = {conf.sense for _, conf, _ in fronts}
    if len(senses) > 1:
        raise AutopruneError("--compare: these runs rank plans by different metrics ("
                             + ", ".join(sorted(s.name for s in senses)) + "); compare runs of one metric")
    sense = next(iter(senses))
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for i, (run, conf, front) in enumerate(fronts):
        colour = f"C{i % 10}"
        label = f"{run.name}: {conf.model}, {conf.budget}"
        if front.empty:
            label += " (no completed trial)"
        ax.step(front["latency_p50_ms"], sense.shown(front["accuracy"]), where="post", c=colour, lw=1.5)
        ax.scatter(front["latency_p50_ms"], sense.shown(front["accuracy"]), s=30, c=colour, label=label, zorder=3)
        ax.axvline(conf.budget_ms, ls="--", c=colour, lw=1, alpha=0.7)
    where = next(iter(profiles)) if len(profiles) == 1 else "each run's primary profile: " + ", ".join(sorted(profiles))
    ax.set_xlabel(f"latency (ms per batch) on {where}; dashed: budgets")
    ax.set_ylabel(sense.axis())
    ax.set_title("Pareto fronts of the runs compared", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
