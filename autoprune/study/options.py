"""How a run's trials are run: the sampler, the study's storage, resources, early stopping (choices: core.records)."""

from __future__ import annotations

from dataclasses import dataclass

from autoprune.study.repair import BudgetAim


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How the trials are run: the sampler, the study's storage, resources and early stopping."""

    trials: int
    concurrency: int = 1
    seed: int = 0
    sampler: str = "tpe"
    storage: str = ""  # an Optuna RDB URL
    study_name: str = "autoprune"
    cpus_per_trial: float | None = None  # None: the cluster's CPUs shared by the concurrent trials
    gpus_per_trial: float = 0.0
    early_stop: str = "none"
    initial_plans: tuple[dict[str, float], ...] = ()  # tried first, in order
    land_initial: bool = False  # the initial plans (seeds) land on the budget too; plans a user lists run as given
    formulation: str = "budget"  # budget: best accuracy at the budget; front: accuracy and latency
    aim: BudgetAim | None = None  # the budget formulation's repair (cost model, latency models)
