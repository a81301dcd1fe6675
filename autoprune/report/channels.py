"""Kept against original channels per prunable group, for one or several plans: a grouped bar chart."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from autoprune.core.errors import AutopruneError
from autoprune.core.files import atomic_path
from autoprune.core.metric import ACCURACY, MetricSense
from autoprune.prune.groups import channels_to_remove
from autoprune.prune.plan import Plan
from autoprune.space.space import SearchSpace

MAX_PLANS = 6  # more bars per group than this stop being readable
_ORIGINAL_COLOUR = "#d0d0d0"
_PLAN_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def kept_channels(ratios: Mapping[str, float], channels: Mapping[str, int], *, round_to: int) -> dict[str, int]:
    """Exact kept channel count per group of ``ratios``, as ``prune`` would leave it (see ``channels_to_remove``)."""
    kept = {}
    for name, ratio in ratios.items():
        if name not in channels:
            known = ", ".join(list(channels)[:8]) + (f", ... ({len(channels)} in all)" if len(channels) > 8 else "")
            raise AutopruneError(f"group {name!r} has no known channel count; groups with one: {known or '(none)'}")
        if not 0.0 <= ratio < 1.0:
            raise AutopruneError(f"ratio of group {name!r} is {ratio}; a ratio must be in [0, 1)")
        kept[name] = channels[name] - channels_to_remove(channels[name], ratio, round_to)
    return kept


def channels_of(space: SearchSpace) -> dict[str, int]:
    """Original channel count of each group of ``space`` whose count is known, in the space's order."""
    return {name: g.channels for name, g in space.groups.items() if g.channels is not None}


def _figure_size(n_groups: int, n_bars: int, longest_label: int, rotation: int) -> tuple[float, float]:
    """Width grows with the bar count (capped, so ~60 groups of 7 bars still give a sane image); the plot
    gets taller as it gets wider, and the height leaves room for the rotated group names."""
    per_group = max(0.3, 0.09 * n_bars + 0.12)
    width = min(max(6.0, 1.2 + n_groups * per_group), 36.0)
    label_in = longest_label * 0.075 * (1.0 if rotation == 90 else 0.87)
    return width, min(max(4.2, 0.15 * width), 7.0) + label_in


def _legend_columns(labels: list[str], width_in: float) -> int:
    """As many legend columns as fit above the plot (fontsize 8: ~0.06 in per character plus the handle)."""
    entry = 0.45 + 0.06 * max(map(len, labels))
    return max(1, min(len(labels), int((width_in - 1.2) / entry)))


def plot_channels(plans: Mapping[str, Mapping[str, float]], *, channels: Mapping[str, int], round_to: int,
                  path: str | Path, title: str = "") -> Path:
    """Grouped bars per group (x, in the order of ``channels``: forward order): the original width in light
    grey, then the kept channels of each plan. ``plans`` maps a legend label to group ratios; a group a plan
    does not name is kept whole. At most ``MAX_PLANS`` plans are drawn (the first ones; the title says so).
    Writes a PNG and returns its path."""
    if not plans:
        raise AutopruneError("no plans to plot; pass at least one label -> group ratios")
    if not channels:
        raise AutopruneError("no group has a known channel count; nothing to plot")
    labels = list(plans)
    kept = {label: {**channels, **kept_channels(plans[label], channels, round_to=round_to)} for label in labels}

    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt
    import numpy as np

    shown = labels[:MAX_PLANS]
    if len(labels) > MAX_PLANS:
        note = f"first {MAX_PLANS} of {len(labels)} plans shown"
        title = f"{title} ({note})" if title else note
    groups = list(channels)
    n_bars = len(shown) + 1
    rotation = 60 if len(groups) <= 20 else 90
    size = _figure_size(len(groups), n_bars, max(map(len, groups)), rotation)
    fig, ax = plt.subplots(figsize=size, dpi=120)
    x = np.arange(len(groups))
    width = 0.85 / n_bars
    offset = (np.arange(n_bars) - (n_bars - 1) / 2) * width
    ax.bar(x + offset[0], [channels[g] for g in groups], width, color=_ORIGINAL_COLOUR, label="original",
           edgecolor="#a0a0a0", linewidth=0.4)
    for i, label in enumerate(shown, start=1):
        ax.bar(x + offset[i], [kept[label][g] for g in groups], width, color=_PLAN_COLOURS[i - 1], label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=rotation, ha="right" if rotation != 90 else "center",
                       rotation_mode="anchor" if rotation != 90 else "default", fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_xlabel("prunable group (forward order)")
    ax.set_ylabel(f"output channels (kept rounded to {round_to})" if round_to > 1 else "output channels")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.01), frameon=False,
              ncol=_legend_columns(["original", *shown], size[0]))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def plot_front_channels(run_dir: Path, front: pd.DataFrame, *, most: int = 6,
                        sense: MetricSense = ACCURACY) -> Path | None:
    """``pareto_channels.png``: kept vs original channels per group for plans of the front (the best
    within budget first, the rest spread along the front), beside ``pareto.png``."""
    if front.empty or not (run_dir / "space.yaml").is_file():
        return None
    space = SearchSpace.load(run_dir / "space.yaml")
    if not channels_of(space):
        return None
    within = front[front["meets_budget"].astype(bool)] if "meets_budget" in front else front.iloc[0:0]
    picks = [int(sense.key(within["accuracy"]).idxmax())] if not within.empty else []
    rest = [i for i in front.index if i not in picks]
    step = max(1, len(rest) / max(1, most - len(picks)))
    picks += [rest[int(k * step)] for k in range(min(len(rest), most - len(picks)))]
    plans = {}
    for i in picks:
        r = front.loc[i]
        label = f"{r['trial']} · {sense.fmt(r['accuracy'])} · {r['latency_p50_ms']:.2f} ms" + (
            " (best within budget)" if not within.empty and i == picks[0] else "")
        plans[label] = Plan.load(run_dir / r["plan"]).ratios
    return plot_channels(plans, channels=channels_of(space), round_to=space.round_to,
                         path=run_dir / "pareto_channels.png", title="channels kept per group, plans of the Pareto front")
