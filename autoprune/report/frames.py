"""Reports over trials: trials.csv, the Pareto front (the metric better, latency down) and its plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoprune.core.files import atomic_path
from autoprune.core.metric import ACCURACY, MetricSense
from autoprune.core.records import (
    RATIO_PREFIX,
    TRIAL_COLUMNS,
    Status,
    at,
    pareto_columns,
)


def pareto_front(trials: pd.DataFrame, *, latency: str = "latency_p50_ms", accuracy: str = "accuracy",
                 sense: MetricSense = ACCURACY) -> pd.DataFrame:
    """Completed trials no other trial beats on both ``accuracy`` (the metric, better as ``sense``
    says) and ``latency``, sorted by latency; each plan once."""
    done = trials[trials["status"] == Status.COMPLETED] if "status" in trials else trials
    if latency not in done or accuracy not in done or done.empty:
        return done.iloc[0:0]  # nothing finished on this profile yet
    done = done.dropna(subset=[accuracy, latency])
    if done.empty:  # e.g. every completed trial's metric was NaN
        return done
    plan = [c for c in done if c.startswith(RATIO_PREFIX)]
    if plan:  # a plan run twice (an older run, a resumed one) is one point: its first trial
        done = (done.sort_values("trial") if "trial" in done else done).drop_duplicates(subset=plan, keep="first")
    acc, lat = sense.key(done[accuracy].to_numpy(dtype=float)), done[latency].to_numpy(dtype=float)
    keep = [not ((acc >= acc[i]) & (lat <= lat[i]) & ((acc > acc[i]) | (lat < lat[i]))).any() for i in range(len(done))]
    front = done[keep].sort_values([latency, accuracy], ascending=[True, not sense.higher_is_better])
    return front.reset_index(drop=True)


def best_within_budget(trials: pd.DataFrame, *, sense: MetricSense = ACCURACY) -> pd.Series | None:
    """The completed trial within budget with the best metric (the faster one on a tie), or None. Where the
    confirmation stage re-trained plans with fresh seeds, the best confirmed mean: the in-search
    figure of the best of N trials is biased up by the pick."""
    if trials.empty or "meets_budget" not in trials:
        return None
    ok = trials[(trials["status"] == Status.COMPLETED) & trials["meets_budget"].astype(bool)]
    if "confirmed_accuracy" in ok and ok["confirmed_accuracy"].notna().any():
        ok = ok[ok["confirmed_accuracy"].notna()]
        return ok.sort_values(["confirmed_accuracy", "latency_p50_ms"], ascending=[not sense.higher_is_better, True]).iloc[0]
    return None if ok.empty else ok.sort_values(["accuracy", "latency_p50_ms"],
                                                ascending=[not sense.higher_is_better, True]).iloc[0]


def write_trials(trials: pd.DataFrame, run_dir: Path) -> Path:
    path = run_dir / "trials.csv"
    with atomic_path(path) as tmp:  # a teammate reading the shared run never sees half a table
        trials.to_csv(tmp, index=False)
    return path


def write_pareto(trials: pd.DataFrame, run_dir: Path, *, profiles: list[str],
                 sense: MetricSense = ACCURACY) -> pd.DataFrame:
    """``pareto.csv``: the front on the primary profile, with every profile's latency beside it;
    ``pareto@NAME.csv``: the front on each further profile. Returns the primary front."""
    columns = pareto_columns(profiles)
    fronts = []
    for i, name in enumerate(profiles):
        # A further profile that deploys INT8 has its own accuracy (the quantized model's): its front uses it.
        acc = at("accuracy", name) if i and at("accuracy", name) in trials else "accuracy"
        front = pareto_front(trials, latency=at("latency_p50_ms", name) if i else "latency_p50_ms", accuracy=acc,
                             sense=sense)
        cols = [c for c in columns if c in front] + sorted(c for c in front if c.startswith(RATIO_PREFIX))
        front = front[cols]
        with atomic_path(run_dir / ("pareto.csv" if i == 0 else f"pareto@{name}.csv")) as tmp:
            front.to_csv(tmp, index=False)
        fronts.append(front)
    return fronts[0]


# A plan is "not faster" than one with at least MORE_MACS more MACs when it is not faster by more
# than NOT_FASTER_MARGIN (two timings of one plan differ by about 2 %).
NOT_FASTER_MARGIN = 0.03
MORE_MACS = 0.10


def mac_efficiency(table: pd.DataFrame, *, baseline: dict[str, Any], profiles: Sequence[str]) -> pd.DataFrame:
    """Per profile P, where MACs fell and latency did not follow:

    - ``speedup@P``: the unpruned model's ms over the plan's; ``mac_cut``: its MACs over the plan's;
    - ``speedup_per_mac_cut@P``: speedup ÷ MAC cut (1: latency fell as MACs did; far below 1: the
      target gains little from the cut: memory-bound layers, widths off its channel multiple);
    - ``not_faster_than@P``: a trial with ``MORE_MACS`` more MACs than this one that this one is not
      faster than on P (by the p50s, within ``NOT_FASTER_MARGIN``), else empty: the cut bought nothing there.
    """
    table = table.copy()
    macs = pd.to_numeric(table["macs"], errors="coerce")
    base_macs = baseline.get("macs")
    table["mac_cut"] = base_macs / macs if base_macs else float("nan")
    for name in profiles:
        col = at("latency_p50_ms", name)
        base_ms = baseline.get("profiles", {}).get(name, {}).get("latency_p50_ms")
        if col not in table or not base_ms:
            continue
        ms = pd.to_numeric(table[col], errors="coerce")
        table[at("speedup", name)] = base_ms / ms
        table[at("speedup_per_mac_cut", name)] = table[at("speedup", name)] / table["mac_cut"]
        m, t = macs.to_numpy(dtype=float), ms.to_numpy(dtype=float)
        ok, trials = ~(np.isnan(m) | np.isnan(t)), table["trial"].astype(str).to_numpy()
        flags = []
        for i in range(len(table)):
            bigger = np.flatnonzero(ok & ok[i] & (m >= m[i] * (1 + MORE_MACS)) & (t * (1 - NOT_FASTER_MARGIN) <= t[i]))
            # the heaviest plan it fails to beat: the clearest case
            flags.append(trials[bigger[np.argmax(m[bigger])]] if len(bigger) else "")
        table[at("not_faster_than", name)] = flags
    return table


def trials_frame(rows: list[dict[str, Any]], *, baseline: dict[str, Any] | None = None,
                 profiles: Sequence[str] = ()) -> pd.DataFrame:
    """trials.csv's table: ``TRIAL_COLUMNS`` first (present even before any trial finished), the rest
    sorted; with the run's ``baseline``, each profile's speedup against the MAC cut (``mac_efficiency``)."""
    table = pd.DataFrame(rows)
    for col in TRIAL_COLUMNS:
        if col not in table:
            table[col] = pd.NA
    table["meets_budget"] = table["meets_budget"].fillna(False).astype(bool)
    if baseline is not None:
        table = mac_efficiency(table, baseline=baseline, profiles=profiles)
    rest = [c for c in table.columns if c not in TRIAL_COLUMNS]
    return table[[*TRIAL_COLUMNS, *sorted(rest)]].sort_values("trial").reset_index(drop=True)
