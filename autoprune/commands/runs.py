"""``autoprune runs``: the runs under a directory, one line each; ``--compare`` plots their fronts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from autoprune.core.errors import AutopruneError
from autoprune.core.location import local_path
from autoprune.report.runs import RunSummary, find_runs, plot_fronts


def runs(*, out: str | Path = "runs", quiet: bool = False) -> list[RunSummary]:
    """Every run under ``out`` (a directory or URL), oldest first, printed as a table (unless ``quiet``)."""
    found = find_runs(out)
    if not quiet:
        Console(highlight=False).print(_table(found, out=out) if found else f"no runs under {out}")
    return found


def compare_runs(runs: Sequence[str | Path], *, plot: str | Path | None = None, quiet: bool = False) -> Path:
    """Plot the Pareto fronts of ``runs`` (directories or URLs) together (default file: ``fronts.png`` in
    the first run's parent directory, or here when it is a URL)."""
    if len(runs) < 2:
        raise AutopruneError(f"--compare needs two or more run directories, got {len(runs)}; "
                             "e.g. autoprune runs --compare runs/A runs/B")
    first = local_path(runs[0])
    default = first.parent / "fronts.png" if first is not None else Path("fronts.png")  # a URL: here
    path = plot_fronts(runs, Path(plot) if plot is not None else default)
    if not quiet:
        Console(highlight=False).print(f"wrote {path}")
    return path


def _table(found: list[RunSummary], *, out: str | Path) -> Table:
    t = Table(title=f"runs under {out}", title_justify="left")
    for col in ("run", "model", "budget", "trials", "status", "best within budget"):
        t.add_column(col, justify="right" if col == "trials" else "left")
    for r in found:
        if r.status == "unreadable":
            t.add_row(r.run_dir.name, "", "", "", "unreadable", r.detail[:80])
            continue
        best = (f"{r.sense.fmt(r.best_accuracy)} @ {r.best_latency_ms:.2f} ms ({r.best_trial})"
                if r.best_trial is not None and not math.isnan(r.best_accuracy) else "none yet")
        t.add_row(r.run_dir.name, r.model, ", ".join(r.budgets), f"{r.trials_done}/{r.trials_planned}", r.status, best)
    return t
