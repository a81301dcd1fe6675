"""The figures a person would rather look at than read: ``pareto.png`` (the metric against latency per
profile, the budget and the unpruned model marked), the sensitivity curves and the BatchNorm-scale histogram."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoprune.core.files import atomic_path
from autoprune.core.metric import ACCURACY, MetricSense
from autoprune.core.records import Status, at
from autoprune.report.frames import pareto_front


def _ci_bars(ax, trials: pd.DataFrame, profile: str, colour: str, sense: MetricSense) -> None:
    """Horizontal error bars: each trial's latency CI (none for single-process or table figures)."""
    low, high, lat = (at(c, profile) for c in ("latency_ci_low_ms", "latency_ci_high_ms", "latency_p50_ms"))
    if low not in trials:
        return
    has = trials.dropna(subset=[low, high])
    if has.empty:
        return
    ax.errorbar(has[lat], sense.shown(has["accuracy"]), xerr=[has[lat] - has[low], has[high] - has[lat]], fmt="none",
                ecolor=colour, elinewidth=1, capsize=2, zorder=2)


def plot_pareto(trials: pd.DataFrame, run_dir: Path, *, budgets_ms: dict[str, float], baseline: dict[str, Any],
                profiles: list[str], sense: MetricSense = ACCURACY) -> Path:
    """``pareto.png`` in ``run_dir``: see ``pareto_figure``."""
    import matplotlib.pyplot as plt

    fig = pareto_figure(trials, budgets_ms=budgets_ms, baseline=baseline, profiles=profiles, sense=sense)
    path = run_dir / "pareto.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return path


def pareto_figure(trials: pd.DataFrame, *, budgets_ms: dict[str, float], baseline: dict[str, Any],
                  profiles: list[str], sense: MetricSense = ACCURACY):
    """One panel per profile: all trials, that profile's front, its budget line and the unpruned model.
    The legend sits under each panel: inside, it hid the unpruned model's star (top right) or trials."""
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    done = trials[trials["status"] == Status.COMPLETED]
    fig, axes = plt.subplots(1, len(profiles), figsize=(7 * len(profiles), 5.2), dpi=120, squeeze=False)
    for ax, name in zip(axes[0], profiles, strict=True):
        lat = at("latency_p50_ms", name)
        front = pareto_front(trials, latency=lat, sense=sense)
        ok, over = done[done["meets_budget"]], done[~done["meets_budget"]]
        skipped = trials[trials["status"] == Status.INFEASIBLE] if "accuracy_before_finetune" in trials else trials.iloc[0:0]
        if not skipped.empty:
            ax.scatter(skipped[lat], sense.shown(skipped["accuracy_before_finetune"]), s=14, marker="x", c="#d5a6a6",
                       label=f"over budget, not fine-tuned ({sense.label} before)")
        stopped = trials[trials["status"] == Status.STOPPED]
        if not stopped.empty:  # the screen's or ASHA's stops: an interim figure, not a result
            ax.scatter(stopped[lat], sense.shown(stopped["accuracy"]), s=14, marker="+", c="#9bb7c9",
                       label=f"stopped early (interim {sense.label})")
        for part, colour in ((over, "#bbbbbb"), (ok, "#7fb3d5"), (front, "#1f4e79")):
            _ci_bars(ax, part, name, colour, sense)
        ax.scatter(over[lat], sense.shown(over["accuracy"]), s=18, c="#bbbbbb", label="trial over budget")
        ax.scatter(ok[lat], sense.shown(ok["accuracy"]), s=18, c="#7fb3d5", label="trial within budget")
        ax.step(front[lat], sense.shown(front["accuracy"]), where="post", c="#1f4e79", lw=1.5)
        ax.scatter(front[lat], sense.shown(front["accuracy"]), s=36, c="#1f4e79", label="Pareto front", zorder=3)
        base = baseline["profiles"][name]
        ax.scatter([base["latency_p50_ms"]], [sense.shown(baseline["accuracy"])], marker="*", s=160, c="#e67e22",
                   label="unpruned", zorder=4)
        if name in budgets_ms:
            ax.axvline(budgets_ms[name], ls="--", c="#c0392b", lw=1, label=f"budget {budgets_ms[name]:.3g} ms")
        ax.set_xlabel(f"latency (ms per batch) on {name}; bars: 95 % CI")
        ax.set_ylabel(sense.axis() + ("" if sense.higher_is_better else ", lower is better"))
        ax.set_title(f"{sense.label} against measured latency: {name}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def plot_widths(probes: list, path: Path, *, profile: str) -> Path:
    """Milliseconds against width, one panel per layer kind, the recommended multiple's widths marked:
    the steps a pruned width should land on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(probes), figsize=(5.5 * len(probes), 3.8), squeeze=False)
    for ax, probe in zip(axes[0], probes):
        widths = sorted(probe.ms)
        ax.plot(widths, [probe.ms[w] for w in widths], "o-", ms=3, color="tab:blue", label="ms per run")
        marked = [w for w in widths if probe.multiple > 1 and w % probe.multiple == 0]
        ax.plot(marked, [probe.ms[w] for w in marked], "s", ms=7, color="tab:orange",
                label=f"multiples of {probe.multiple} (recommended)")
        ax.set(title=f"{probe.layer} chain on {profile}", xlabel="width (channels)", ylabel="ms")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_sensitivity(table: pd.DataFrame, path: Path, *, title: str, sense: MetricSense = ACCURACY) -> Path:
    """``sensitivity``'s figure: each group's metric drop and latency saved against its ratio (others intact)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_lat) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=120)
    for name, g in table.groupby("group", sort=False):
        ax_acc.plot(g["ratio"], sense.shown(g["accuracy_drop"]), marker="o", label=name)
        ax_lat.plot(g["ratio"], g["latency_saving"] * 100, marker="o", label=name)
    ax_acc.set(xlabel="ratio of the group's channels removed (others intact)", ylabel=f"{sense.label} drop (points)" if sense.percent else f"{sense.label}: how much worse",
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


def plot_bn_scales(before: np.ndarray, after: np.ndarray, path: Path, *, title: str) -> Path:
    """``regularize``'s histogram: |BatchNorm scale| of every channel before and after the penalty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if len(before):
        lo = max(1e-6, float(min(before.min(), after.min())) or 1e-6)
        hi = float(max(before.max(), after.max())) + 1e-6
        bins = np.logspace(np.log10(lo), np.log10(hi), 50)
        ax.hist(np.clip(before, lo, None), bins=bins, alpha=0.6, label="input model")
        ax.hist(np.clip(after, lo, None), bins=bins, alpha=0.6, label="regularised")
        ax.set_xscale("log")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no BatchNorm layers", ha="center", transform=ax.transAxes)
    ax.set(xlabel="|BatchNorm scale γ| (log)", ylabel="channels", title=title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
