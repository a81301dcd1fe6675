"""The confirmation stage: the top plans within budget re-trained with fresh seeds before one is named best.

A search keeps the best of N noisy trials, and the best of N is partly the luckiest of N: on a
demo search, the trial with the top in-search accuracy confirmed 0.5 points lower than another
plan that tied it. Each of the ``k`` most accurate distinct plans within budget is pruned again
from the base model and fine-tuned with ``seeds`` fresh fine-tune seeds (the trial's own recipe;
its latency comes from the cache: shapes are unchanged). The mean of the fresh seeds, not the
in-search figure, then decides ``best``. Runs on Ray actors with a trial's resources, each
started once for the re-trainings it is given.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autoprune.core.metric import ACCURACY, MetricSense
from autoprune.core.records import Status, ratios_of
from autoprune.prune.plan import Plan
from autoprune.study.budgeted import plan_key
from autoprune.study.trial import TrialSettings, run_trial

SEED_OFFSET = 10_000  # fresh seeds: far from every seed a search or a bench uses for its trials


@dataclass(frozen=True)
class Confirmation:
    trial: str
    accuracies: tuple[float, ...]  # one per fresh seed

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0

    def columns(self) -> dict[str, Any]:
        return {"confirmed_accuracy": self.mean, "confirmed_sd": self.sd, "confirmed_seeds": len(self.accuracies)}


def fresh_seeds(seed: int, count: int) -> list[int]:
    return [seed + SEED_OFFSET + i for i in range(count)]


def candidates(rows: Sequence[dict[str, Any]], k: int, *, sense: MetricSense = ACCURACY) -> list[dict[str, Any]]:
    """The ``k`` best completed trials within budget (by the metric, as ``sense`` ranks it), one per plan."""
    ok = [r for r in rows if r.get("status") == Status.COMPLETED and bool(r.get("meets_budget"))
          and isinstance(r.get("accuracy"), (int, float)) and not math.isnan(r["accuracy"])]
    ok.sort(key=lambda r: (-sense.key(r["accuracy"]), r.get("latency_p50_ms", 0.0), r["trial"]))
    out, seen = [], set()
    for r in ok:
        key = plan_key(ratios_of(r))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out[:k]


def _retrain(model, data, ratios: dict[str, float], plan_fields: dict[str, Any], settings: TrialSettings,
             seed: int) -> float:
    from autoprune.study.ray_backend import on_assigned_resources

    settings = dataclasses.replace(on_assigned_resources(settings),
                                   finetune=dataclasses.replace(settings.finetune, seed=seed), precheck=False,
                                   eval_every=0)
    return float(run_trial(model, data, Plan(ratios=ratios, **plan_fields), settings=settings)["accuracy"])


class Retrainer:
    """One Ray actor holding the model and data: its process is started (and warmed up) once for all
    the re-trainings it is given, not once per re-training as a task would be (5-10 s each on 2 cores)."""

    def __init__(self, model, data) -> None:
        self.model, self.data = model, data

    def retrain(self, ratios: dict[str, float], plan_fields: dict[str, Any], settings: TrialSettings,
                seed: int) -> float:
        return _retrain(self.model, self.data, ratios, plan_fields, settings, seed)


def _actors_for(jobs: int, resources: dict[str, float]) -> int:
    """As many actors as the cluster runs at once with a trial's resources, at most one per job."""
    import ray

    total = ray.cluster_resources()
    fits = [int(total.get("CPU", 1) // max(resources.get("cpu", 1), 1e-9))]
    if resources.get("gpu"):
        fits.append(int(total.get("GPU", 0) // resources["gpu"]))
    return max(1, min(jobs, *fits))


def confirm(rows: Sequence[dict[str, Any]], *, model, data, settings: TrialSettings, plan_fields: dict[str, Any],
            k: int, seeds: int, resources: dict[str, float], progress) -> list[Confirmation]:
    """Re-train the top ``k`` plans with ``seeds`` fresh seeds each, on Ray actors (a trial's resources)."""
    import ray

    chosen = [r for r in candidates(rows, k, sense=settings.sense)  # a resumed run keeps what it confirmed before
              if not (isinstance(r.get("confirmed_seeds"), (int, float)) and r["confirmed_seeds"] >= seeds)]
    if not chosen or seeds < 1:
        return []
    jobs = [(r["trial"], s) for r in chosen for s in fresh_seeds(settings.finetune.seed, seeds)]
    actor = ray.remote(Retrainer).options(num_cpus=resources.get("cpu", 1), num_gpus=resources.get("gpu", 0),
                                          max_restarts=0)
    model_ref, data_ref = ray.put(model), ray.put(data)
    actors = [actor.remote(model_ref, data_ref) for _ in range(_actors_for(len(jobs), resources))]
    ratios = {r["trial"]: ratios_of(r) for r in chosen}
    try:
        with progress.phase(f"confirming the top {len(chosen)} plan(s) within budget: each re-trained with {seeds} "
                            f"fresh seed(s) on {len(actors)} worker(s)", key="confirm_s"):
            futures: dict[str, list] = {r["trial"]: [] for r in chosen}
            for i, (trial, seed) in enumerate(jobs):  # round robin: an actor runs its calls one after another
                futures[trial].append(actors[i % len(actors)].retrain.remote(ratios[trial], plan_fields, settings,
                                                                            seed))
            out = []
            for row in chosen:
                try:
                    accs = tuple(ray.get(futures[row["trial"]]))
                except Exception as exc:  # noqa: BLE001 - one plan's re-training failing leaves the others' figures
                    progress.print(f"  {row['trial']}: [red]confirmation failed[/]: {type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0][:200]}")
                    continue
                c = Confirmation(trial=row["trial"], accuracies=accs)
                progress.confirmed(row, c)
                out.append(c)
    finally:
        for a in actors:
            ray.kill(a)
    return out


def with_confirmations(rows: list[dict[str, Any]], confirmations: Sequence[Confirmation]) -> list[dict[str, Any]]:
    by_trial = {c.trial: c.columns() for c in confirmations}
    return [{**r, **by_trial[r["trial"]]} if r["trial"] in by_trial else r for r in rows]

