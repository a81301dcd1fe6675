"""Layer sensitivity: prune each group alone at several ratios; record accuracy and latency.

The table says which groups can lose channels cheaply (accuracy barely moves) and which buy
latency (the latency falls most); ``narrowed_space`` turns it into a search space whose ranges
stop where a group alone would cost more than ``max_drop`` accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from autoprune.errors import AutopruneError, ConfigError
from autoprune.finetune import FinetuneConfig, evaluate
from autoprune.latency_cache import LocalLatencyCache
from autoprune.measure import baseline_latency
from autoprune.models import architecture_fingerprint
from autoprune.plan import Plan
from autoprune.profiles import DEFAULT_PROFILE, resolve_profile
from autoprune.space import GroupRange, SearchSpace
from autoprune.trial import TrialSettings, run_trial


@dataclass(frozen=True)
class SensitivityResult:
    table: pd.DataFrame  # group, ratio, kept, accuracy, accuracy_drop, latency_p50_ms, latency_saving, macs
    csv: Path
    plot: Path
    space: SearchSpace  # the input space with each group's high narrowed by max_drop


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


def sensitivity(*, model: str = "builtin:demo", data: str = "builtin:digits", space: str | Path | None = None,
                profile: str | Path = DEFAULT_PROFILE, ratios: Sequence[float] = (0.25, 0.5, 0.75),
                finetune_steps: int = 0, bn_recalibration: int = 10, max_drop: float = 0.01,
                out: str | Path = "sensitivity", criterion: str | None = None, quiet: bool = False,
                weights: str | Path | None = None, metric: str = "top1", loss: str = "cross_entropy",
                val_samples: int | None = None, device: str = "auto") -> SensitivityResult:
    """Prune every group of the space alone at each of ``ratios``; writes sensitivity.csv, a plot,
    and ``space.yaml`` narrowed to ratios that cost at most ``max_drop`` accuracy each.

    ``metric``/``loss``/``weights``/``val_samples`` as in ``search``; ``device``: where the fine-tune
    and evaluation run (``auto``: a GPU when there is one)."""
    from autoprune.device import resolve_device
    from autoprune.search import load_workload

    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise AutopruneError(f"ratios {list(ratios)} are not valid; give ratios in (0, 1), e.g. 0.25,0.5,0.75")
    if not 0 <= max_drop <= 1:
        raise AutopruneError(f"max_drop is {max_drop}; it is an accuracy fraction in [0, 1], e.g. 0.01")
    console = Console(quiet=quiet, highlight=False)
    hw = resolve_profile(profile)
    dev = resolve_device(device)
    work = load_workload(model=model, data=data, space=space, profiles=[hw], criterion=criterion, weights=weights,
                         metric=metric, loss=loss, val_samples=val_samples)
    cache = LocalLatencyCache()
    base_acc = evaluate(work.model.to(dev), work.data.trial_val, device=dev, metric=metric)
    work.model.to("cpu")
    base, ref = baseline_latency(work.model, hw, input_shape=work.input_shape,
                                 arch_key=architecture_fingerprint(work.model), cache=cache)
    base_ms = base.p50_ms
    console.print(f"unpruned: {metric} {base_acc:.1%}, {base.describe()}; training on {dev}")
    settings = TrialSettings(input_shape=work.input_shape, profiles=(hw,), cache=cache,
                             finetune=FinetuneConfig(steps=finetune_steps, loss=loss), bn_recalibration=bn_recalibration,
                             references={hw.name: ref} if ref is not None else {}, metric=metric, device=str(dev))
    rows = []
    total = len(work.space.groups) * len(ratios)
    for name in work.space.groups:
        for r in sorted(ratios):
            plan = Plan(ratios={name: r}, criterion=work.space.criterion, round_to=work.space.round_to,
                        ignored=work.space.ignored)
            m = run_trial(work.model, work.data, plan, settings=settings)
            rows.append({"group": name, "ratio": r, "accuracy": m["accuracy"], "accuracy_drop": base_acc - m["accuracy"],
                         "latency_p50_ms": m["latency_p50_ms"], "latency_saving": 1 - m["latency_p50_ms"] / base_ms,
                         "macs": m["macs"], "params": m["params"]})
            console.print(f"[{len(rows):>3}/{total}] {name} at {r:.2f}: accuracy {m['accuracy']:.1%} "
                          f"({base_acc - m['accuracy']:+.1%} drop), {m['latency_p50_ms']:.2f} ms")
    table = pd.DataFrame(rows)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / "sensitivity.csv"
    table.to_csv(csv, index=False)
    plot = _plot(table, out_dir / "sensitivity.png", title=f"{model} on {hw.name}")
    narrowed = narrowed_space(work.space, table, max_drop=max_drop)
    narrowed.save(out_dir / "space.yaml")
    console.print(f"wrote {csv}, {plot} and {out_dir / 'space.yaml'} (ranges cut where one group alone costs "
                  f"more than {max_drop:.1%}); search it with --space {out_dir / 'space.yaml'}")
    return SensitivityResult(table=table, csv=csv, plot=plot, space=narrowed)


def _plot(table: pd.DataFrame, path: Path, *, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_lat) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=120)
    for name, g in table.groupby("group", sort=False):
        ax_acc.plot(g["ratio"], g["accuracy_drop"] * 100, marker="o", label=name)
        ax_lat.plot(g["ratio"], g["latency_saving"] * 100, marker="o", label=name)
    ax_acc.set(xlabel="ratio of the group's channels removed (others intact)", ylabel="accuracy drop (points)",
               title=f"sensitivity: {title}")
    ax_lat.set(xlabel="ratio of the group's channels removed (others intact)", ylabel="latency saved (%)",
               title="what it buys")
    for ax in (ax_acc, ax_lat):
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
