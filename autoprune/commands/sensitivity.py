"""Layer sensitivity: prune each group alone at several ratios; record accuracy and latency.

The table says which groups can lose channels cheaply (accuracy barely moves) and which buy
latency (the latency falls most); ``narrowed_space`` turns it into a search space whose ranges
stop where a group alone would cost more than ``max_drop`` accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console

from autoprune.core.errors import AutopruneError
from autoprune.latency.cache import LocalLatencyCache
from autoprune.latency.measure import baseline_latency
from autoprune.latency.profiles import DEFAULT_PROFILE, resolve_profile
from autoprune.load.models import architecture_fingerprint
from autoprune.prune.plan import Plan
from autoprune.report.plots import plot_sensitivity
from autoprune.space.sensitivity import narrowed_space
from autoprune.space.space import SearchSpace
from autoprune.study.trial import TrialSettings, run_trial
from autoprune.train.finetune import FinetuneConfig, evaluate


@dataclass(frozen=True)
class SensitivityResult:
    table: pd.DataFrame  # group, ratio, kept, accuracy, accuracy_drop, latency_p50_ms, latency_saving, macs
    csv: Path
    plot: Path
    space: SearchSpace  # the input space with each group's high narrowed by max_drop


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
    from autoprune.core.device import resolve_device
    from autoprune.study.workload import load_workload

    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise AutopruneError(f"ratios {list(ratios)} are not valid; give ratios in (0, 1), e.g. 0.25,0.5,0.75")
    if max_drop < 0:
        raise AutopruneError(f"max_drop is {max_drop}; it is how much worse the metric may get, >= 0 (e.g. 0.01: "
                             "one point of accuracy)")
    from autoprune.train.task import metric_sense

    sense = metric_sense(metric)
    if sense.percent and max_drop > 1:
        raise AutopruneError(f"max_drop is {max_drop}; for {metric} it is a fraction in [0, 1], e.g. 0.01")
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
    console.print(f"unpruned: {metric} {sense.fmt(base_acc)}, {base.describe()}; training on {dev}")
    settings = TrialSettings(input_shape=work.input_shape, profiles=(hw,), cache=cache,
                             finetune=FinetuneConfig(steps=finetune_steps, loss=loss), bn_recalibration=bn_recalibration,
                             references={hw.name: ref} if ref is not None else {}, metric=metric, sense=sense,
                             device=str(dev))
    rows = []
    total = len(work.space.groups) * len(ratios)
    for name in work.space.groups:
        for r in sorted(ratios):
            plan = Plan(ratios={name: r}, criterion=work.space.criterion, round_to=work.space.round_to,
                        ignored=work.space.ignored)
            m = run_trial(work.model, work.data, plan, settings=settings)
            rows.append({"group": name, "ratio": r, "accuracy": m["accuracy"], "accuracy_drop": sense.drop(base_acc, m["accuracy"]),
                         "latency_p50_ms": m["latency_p50_ms"], "latency_saving": 1 - m["latency_p50_ms"] / base_ms,
                         "macs": m["macs"], "params": m["params"]})
            console.print(f"[{len(rows):>3}/{total}] {name} at {r:.2f}: {sense.label} {sense.fmt(m['accuracy'])} "
                          f"({sense.fmt_drop(base_acc, m['accuracy'])} worse), {m['latency_p50_ms']:.2f} ms")
    table = pd.DataFrame(rows)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / "sensitivity.csv"
    table.to_csv(csv, index=False)
    plot = plot_sensitivity(table, out_dir / "sensitivity.png", title=f"{model} on {hw.name}", sense=sense)
    narrowed = narrowed_space(work.space, table, max_drop=max_drop)
    narrowed.save(out_dir / "space.yaml")
    console.print(f"wrote {csv}, {plot} and {out_dir / 'space.yaml'} (ranges cut where one group alone costs "
                  f"more than {sense.fmt(max_drop)}); search it with --space {out_dir / 'space.yaml'}")
    return SensitivityResult(table=table, csv=csv, plot=plot, space=narrowed)
