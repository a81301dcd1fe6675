"""Reports over trials: trials.csv, the Pareto front (accuracy up, latency down) and its plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

PARETO_COLUMNS = ["trial", "accuracy", "latency_p50_ms", "latency_ci_low_ms", "latency_ci_high_ms", "latency_p90_ms",
                  "macs", "params", "meets_budget", "plan"]


def pareto_front(trials: pd.DataFrame, *, latency: str = "latency_p50_ms", accuracy: str = "accuracy") -> pd.DataFrame:
    """Completed trials no other trial beats on both ``accuracy`` and ``latency``, sorted by latency."""
    done = trials[trials["status"] == "completed"] if "status" in trials else trials
    if latency not in done or accuracy not in done or done.empty:
        return done.iloc[0:0]  # nothing finished on this profile yet
    done = done.dropna(subset=[accuracy, latency])
    acc, lat = done[accuracy].to_numpy(), done[latency].to_numpy(dtype=float)
    keep = [not ((acc >= acc[i]) & (lat <= lat[i]) & ((acc > acc[i]) | (lat < lat[i]))).any() for i in range(len(done))]
    front = done[keep].sort_values([latency, "accuracy"], ascending=[True, False])
    return front.reset_index(drop=True)


def write_trials(trials: pd.DataFrame, run_dir: Path) -> Path:
    path = run_dir / "trials.csv"
    trials.to_csv(path, index=False)
    return path


def write_pareto(trials: pd.DataFrame, run_dir: Path, *, profiles: list[str]) -> pd.DataFrame:
    """``pareto.csv``: the front on the primary profile, with every profile's latency beside it;
    ``pareto@NAME.csv``: the front on each further profile. Returns the primary front."""
    per_profile = [c for p in profiles for c in (f"latency_p50_ms@{p}", f"latency_ci_low_ms@{p}",
                                                 f"latency_ci_high_ms@{p}", f"latency_p90_ms@{p}", f"meets_budget@{p}",
                                                 f"budget_verdict@{p}")]
    fronts = []
    for i, name in enumerate(profiles):
        # A further profile that deploys INT8 has its own accuracy (the quantized model's): its front uses it.
        acc = f"accuracy@{name}" if i and f"accuracy@{name}" in trials else "accuracy"
        front = pareto_front(trials, latency=f"latency_p50_ms@{name}" if i else "latency_p50_ms", accuracy=acc)
        extra = ["accuracy_float", *(f"accuracy@{p}" for p in profiles)]
        cols = [c for c in PARETO_COLUMNS + extra + per_profile if c in front] + sorted(c for c in front if c.startswith("ratio."))
        front = front[cols]
        front.to_csv(run_dir / ("pareto.csv" if i == 0 else f"pareto@{name}.csv"), index=False)
        fronts.append(front)
    return fronts[0]


def _ci_bars(ax, trials: pd.DataFrame, profile: str, colour: str) -> None:
    """Horizontal error bars: each trial's latency CI (none for single-process or table figures)."""
    low, high, lat = (f"latency_ci_low_ms@{profile}", f"latency_ci_high_ms@{profile}", f"latency_p50_ms@{profile}")
    if low not in trials:
        return
    has = trials.dropna(subset=[low, high])
    if has.empty:
        return
    ax.errorbar(has[lat], has["accuracy"] * 100, xerr=[has[lat] - has[low], has[high] - has[lat]], fmt="none",
                ecolor=colour, elinewidth=1, capsize=2, zorder=2)


def plot_pareto(trials: pd.DataFrame, run_dir: Path, *, budgets_ms: dict[str, float], baseline: dict[str, Any],
                profiles: list[str]) -> Path:
    """One panel per profile: all trials, that profile's front, its budget line and the unpruned model."""
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    done = trials[trials["status"] == "completed"]
    fig, axes = plt.subplots(1, len(profiles), figsize=(7 * len(profiles), 4.5), dpi=120, squeeze=False)
    for ax, name in zip(axes[0], profiles, strict=True):
        lat = f"latency_p50_ms@{name}"
        front = pareto_front(trials, latency=lat)
        ok, over = done[done["meets_budget"]], done[~done["meets_budget"]]
        skipped = trials[trials["status"] == "infeasible"] if "accuracy_before_finetune" in trials else trials.iloc[0:0]
        if not skipped.empty:
            ax.scatter(skipped[lat], skipped["accuracy_before_finetune"] * 100, s=14, marker="x", c="#d5a6a6",
                       label="over budget, not fine-tuned (accuracy before)")
        for part, colour in ((over, "#bbbbbb"), (ok, "#7fb3d5"), (front, "#1f4e79")):
            _ci_bars(ax, part, name, colour)
        ax.scatter(over[lat], over["accuracy"] * 100, s=18, c="#bbbbbb", label="trial over budget")
        ax.scatter(ok[lat], ok["accuracy"] * 100, s=18, c="#7fb3d5", label="trial within budget")
        ax.step(front[lat], front["accuracy"] * 100, where="post", c="#1f4e79", lw=1.5)
        ax.scatter(front[lat], front["accuracy"] * 100, s=36, c="#1f4e79", label="Pareto front", zorder=3)
        base = baseline["profiles"][name]
        ax.scatter([base["latency_p50_ms"]], [baseline["accuracy"] * 100], marker="*", s=160, c="#e67e22",
                   label="unpruned", zorder=4)
        if name in budgets_ms:
            ax.axvline(budgets_ms[name], ls="--", c="#c0392b", lw=1, label=f"budget {budgets_ms[name]:.3g} ms")
        ax.set_xlabel(f"latency (ms per batch) on {name}; bars: 95 % CI")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(f"accuracy against measured latency: {name}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = run_dir / "pareto.png"
    fig.savefig(path)
    plt.close(fig)
    return path
