"""Sensitivity tables: per group and ratio, the accuracy drop and latency saving of pruning it alone.

Read back (``load_sensitivity``), they narrow a space (``narrowed_space``) and give seed plans
(``threshold_plans``, ``sensitivity_seeds``). The table is computed by ``commands.sensitivity``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from autoprune.core.errors import AutopruneError, ConfigError
from autoprune.space.space import GroupRange, SearchSpace


def narrowed_space(space: SearchSpace, table: pd.DataFrame, *, max_drop: float) -> SearchSpace:
    """Each group's ``high`` becomes the largest ratio tried whose accuracy drop stays within
    ``max_drop`` (never below ``low``), so the search spends no trials past it."""
    groups = {}
    for name, g in space.groups.items():
        ok = table[(table["group"] == name) & (table["accuracy_drop"] <= max_drop)]
        high = min(g.high, float(ok["ratio"].max())) if not ok.empty else g.low
        groups[name] = GroupRange.model_validate({**g.model_dump(), "high": max(g.low, high)})
    return space.model_copy(update={"groups": groups})


SENSITIVITY_COLUMNS = ("group", "ratio", "accuracy_drop", "latency_saving")


def load_sensitivity(path: str | Path, *, space: SearchSpace) -> pd.DataFrame:
    """A sensitivity.csv (or the directory holding it) checked against ``space``'s groups."""
    p = Path(path)
    p = p / "sensitivity.csv" if p.is_dir() else p
    if not p.is_file():
        raise AutopruneError(f"sensitivity {str(path)!r}: no such file; pass the sensitivity.csv (or its directory) "
                             "that autoprune sensitivity wrote")
    try:
        table = pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same user error
        raise AutopruneError(f"{p}: not a CSV table ({type(exc).__name__})") from None
    missing = [c for c in SENSITIVITY_COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(file=str(p), key=missing[0], value=None,
                          expected=f"a sensitivity table with columns {', '.join(SENSITIVITY_COLUMNS)}")
    unknown = sorted(set(table["group"]) - set(space.groups))
    if unknown:
        raise ConfigError(file=str(p), key="group", value=unknown[0],
                          expected=f"groups of the searched model: {', '.join(space.groups)} (a table of another model?)")
    return table


def threshold_plans(space: SearchSpace, table: pd.DataFrame) -> list[dict[str, float]]:
    """Greedy selection's plans, from the lowest accuracy-drop threshold t to the highest, each once:
    every group at the largest ratio whose drop alone was within t, snapped to its grid."""
    plans: list[dict[str, float]] = []
    for t in sorted({0.0, *table["accuracy_drop"].clip(lower=0.0)}):
        plan = {}
        for name, g in space.groups.items():
            ok = table[(table["group"] == name) & (table["accuracy_drop"] <= t)]
            r = float(ok["ratio"].max()) if len(ok) else 0.0
            plan[name] = min(g.choices(), key=lambda v, r=r: (abs(v - r), v))
        if plan not in plans:
            plans.append(plan)
    return plans


def sensitivity_seeds(space: SearchSpace, table: pd.DataFrame, *, target: float, count: int = 4
                      ) -> list[dict[str, float]]:
    """Plans that prune the least sensitive groups most, bracketing a latency target.

    ``target`` is the budget as a fraction of the unpruned latency. For an accuracy-drop threshold
    t, each group takes the largest measured ratio whose drop alone was within t (snapped to its
    grid); latency is predicted as 1 - the sum of the groups' measured savings (first order). The
    seeds are the plan of the smallest t predicted to meet the target, the next one, and the
    ``count - 2`` before it: on the demo the estimate under-counted the combined saving (predicted
    0.45x and 0.32x of the unpruned latency, measured 0.24x and 0.18x), and a seed over budget costs
    only its latency pre-check, while one far under budget costs a fine-tune and accuracy.
    """
    def saving(name: str, r: float) -> float:
        g = table[table["group"] == name].sort_values("ratio")
        return float(np.interp(r, [0.0, *g["ratio"]], [0.0, *g["latency_saving"]])) if len(g) else 0.0

    plans = threshold_plans(space, table)
    predicted = [1.0 - sum(saving(n, r) for n, r in p.items()) for p in plans]
    meets = [i for i, f in enumerate(predicted) if f <= target]
    first = meets[0] if meets else len(plans) - 1  # none predicted to meet it: prune as far as the table goes
    lo = max(0, min(first - count // 2, len(plans) - count))
    return plans[lo:lo + count]
