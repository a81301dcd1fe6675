"""Live progress of a search on the terminal (rich), and the closing table of the front."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from autoprune.core.metric import ACCURACY, MetricSense
from autoprune.core.records import Status
from autoprune.latency.onnx import fmt_ms
from autoprune.latency.pooling import describe_rule


def _latency(row: dict[str, Any]) -> str:
    """``12.3 ms [12.1, 12.6]``: the estimate and, where there is one, its 95 % CI."""
    low, high = row.get("latency_ci_low_ms"), row.get("latency_ci_high_ms")
    if low is None or pd.isna(low):
        return f"{fmt_ms(row['latency_p50_ms'])} ms"
    return f"{fmt_ms(row['latency_p50_ms'])} ms [{fmt_ms(low)}, {fmt_ms(high)}]"


# Progress for the Python API: every line the terminal gets, as INFO on this logger, quiet or not
# (``logging.basicConfig(level=logging.INFO)`` shows it; Python shows no INFO until configured).
log = logging.getLogger("autoprune")


class SearchProgress:
    def __init__(self, *, total: int, quiet: bool = False, console: Console | None = None, done: int = 0,
                 budget_rule: str = "upper", sense: MetricSense = ACCURACY) -> None:
        self.total = total
        self.sense = sense  # the metric's direction and format; set once the workload is loaded
        self.budget_rule = budget_rule  # how "within budget" is decided; said once, and in every best line
        self._rule = describe_rule(budget_rule, short=True)
        self.done = done  # a resumed run counts on from the trials it already has
        self.failed = 0
        self.best: dict[str, Any] | None = None
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.quiet = quiet
        self.t0 = time.perf_counter()
        self.timings: dict[str, float] = {}

    def print(self, *args: Any) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info(" ".join(Text.from_markup(a).plain if isinstance(a, str) else str(a) for a in args))
        if not self.quiet:
            self.console.print(*args)

    @contextlib.contextmanager
    def phase(self, what: str, *, key: str) -> Iterator[None]:
        """Announce a stage and record its duration under ``key`` in ``self.timings``."""
        t0 = time.perf_counter()
        self.print(f"[dim]…[/] {what}")
        yield
        self.timings[key] = time.perf_counter() - t0
        self.print(f"[dim]  done in {self.timings[key]:.1f} s[/]")

    def baseline(self, base: dict[str, Any], *, budgets: Sequence[Any], budgets_ms: dict[str, float]) -> None:
        self.print(f"unpruned: {self.sense.label} {self.sense.fmt(base['accuracy'])}, {base['macs'] / 1e6:.1f} M MACs")
        for fig in base["profiles"].values():
            self.print(f"  {fig['latency']}")
        for b in budgets:
            ms = budgets_ms[b.profile]
            ratio = base["profiles"][b.profile]["latency_p50_ms"] / ms
            self.print(f"budget {b} = {ms:.2f} ms on {b.profile}: the unpruned model is {ratio:.2f}x the budget")
        self.print(f"a plan is within budget when {describe_rule(self.budget_rule)} of its latency is within the budget")

    def trial(self, row: dict[str, Any]) -> None:
        self.timings.setdefault("first_trial_s", time.perf_counter() - self.t0)  # what a user waits for first
        self.done += 1
        head = f"[{self.done:>3}/{self.total}] {row['trial']}"
        if row["status"] == Status.FAILED:
            self.failed += 1
            self.print(f"{head} [red]failed[/]: {row['error']}")
            return
        if row["status"] == Status.INFEASIBLE:
            self.print(f"{head} [yellow]infeasible[/]: {_latency(row)} is over budget ({self._rule}); "
                       f"not fine-tuned ({row['wall_s']:.1f} s)")
            return
        if row["status"] == Status.STOPPED:
            when = ("by the adaptive-BN screen, before fine-tuning" if row.get("finetune_step") == 0
                    else f"at step {row.get('finetune_step', '?')}")
            self.print(f"{head} [dim]stopped early[/] {when}: interim {self._short} "
                       f"{self.sense.fmt(row['accuracy'])}  {fmt_ms(row['latency_p50_ms'])} ms ({row['wall_s']:.1f} s)")
            return
        if row["meets_budget"] and (self.best is None or self.sense.better(row["accuracy"], self.best["accuracy"])):
            self.best = row
        mark = "[green]within budget[/]" if row["meets_budget"] else "[yellow]over budget[/]"
        best = (f"best within budget ({self._rule}): {self.sense.fmt(self.best['accuracy'])} @ "
                f"{fmt_ms(self.best['latency_p50_ms'])} ms" if self.best else "none within budget yet")
        self.print(f"{head} {self._short} {self.sense.fmt(row['accuracy'])}  {_latency(row)}  "
                   f"{row['macs'] / 1e6:.1f} M MACs  {mark}  ({row['wall_s']:.1f} s)   {best}")

    @property
    def _short(self) -> str:
        return "acc" if self.sense.label == "accuracy" else self.sense.label

    def confirmed(self, row: dict[str, Any], confirmation: Any) -> None:
        """One plan of the confirmation stage: its fresh seeds' mean ± sd beside its in-search figure."""
        c = confirmation
        fmt = self.sense.fmt
        self.print(f"  {row['trial']}: {fmt(c.mean)} ± {fmt(c.sd)} over {len(c.accuracies)} fresh seed(s) "
                   f"(in the search {fmt(row['accuracy'])}) at {_latency(row)}")

    def summary(self, front: pd.DataFrame, *, run_dir: Path, where: Callable[[str], str], plot: Path | None,
                counts: dict[str, int], best: pd.Series | None = None, failure: str | None = None) -> None:
        """``where(name)``: how to name the run's file ``name`` (or the run, for "") to the user;
        ``failure``: the most common reason trials failed, with its count (None: none failed)."""
        if self.quiet:
            return
        table = Table(title=f"Pareto front ({len(front)} plans)", title_justify="left")
        fmt = self.sense.fmt
        for col in ("trial", self.sense.label, "fresh seeds", "latency p50 ms", "95 % CI", "M MACs",
                    f"meets budget ({self._rule})"):
            table.add_column(col, justify="right" if col != "trial" else "left")
        for r in front.itertuples():
            ci = "" if pd.isna(r.latency_ci_low_ms) else f"{fmt_ms(r.latency_ci_low_ms)}–{fmt_ms(r.latency_ci_high_ms)}"
            fresh = "" if pd.isna(r.confirmed_accuracy) else f"{fmt(r.confirmed_accuracy)} ± {fmt(r.confirmed_sd)}"
            table.add_row(r.trial, fmt(r.accuracy), fresh, fmt_ms(r.latency_p50_ms), ci,
                          f"{r.macs / 1e6:.2f}", "yes" if r.meets_budget else "no")
        self.console.print(table)
        if best is not None:
            how = ("confirmed with fresh seeds: " f"{fmt(best['confirmed_accuracy'])} ± {fmt(best['confirmed_sd'])}"
                   if not pd.isna(best.get("confirmed_accuracy")) else f"{fmt(best['accuracy'])} in the search")
            self.print(f"best within budget: {best['trial']}, {how}, at {_latency(best)}")
        states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        self.print(f"finished in {time.perf_counter() - self.t0:.0f} s; trials: {states}")
        if failure is not None:
            self.print(f"[yellow]{counts.get(Status.FAILED, 0)} trial(s) failed[/]; the most common cause: "
                       f"{failure}; trials.csv has each trial's error")
        for name in ("trials.csv", "pareto.csv"):
            self.print(f"  {where(name)}")
        if plot is not None:
            self.print(f"  {where(plot.name)}")
        for name in ("pareto_channels.png", "report.html"):
            if (run_dir / name).is_file():
                self.print(f"  {where(name)}")
        if best is not None:
            self.print(f"next: autoprune apply {where('')}")
        elif counts.get(Status.COMPLETED, 0):
            self.print("no plan met the budget: search again with a looser --budget (or a space whose `high` "
                       f"prunes more), or apply one anyway: autoprune apply {where('')} --pick TRIAL")
