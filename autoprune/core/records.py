"""Records that cross a boundary: a trial's result (one row of trials.csv), one profile's latency
figure, a trial's status, and a run's ``config.yaml``. The CSV column names are written here only.

A row is flat because pandas, Ray's result dicts and the CSV are flat: a per-profile column is
``NAME@PROFILE`` (``at``), a ratio column ``ratio.GROUP``; the primary profile's figure also
appears unsuffixed, since that is the search's second objective.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from autoprune.core import config
from autoprune.core.config import StrictModel
from autoprune.core.errors import AutopruneError
from autoprune.core.metric import MetricSense


class Status(str, Enum):
    """What became of a trial."""

    COMPLETED = "completed"  # fine-tuned and evaluated
    INFEASIBLE = "infeasible"  # over budget at the latency pre-check: never fine-tuned, no accuracy
    STOPPED = "stopped"  # early-stopped by the scheduler: its accuracy is an interim figure
    FAILED = "failed"  # crashed; ``error`` says in which phase and why

    def __str__(self) -> str:
        return self.value


FINISHED = frozenset(Status)  # a trial in one of these states is not run again on resume
TOLD = frozenset({Status.COMPLETED, Status.INFEASIBLE, Status.STOPPED})  # Optuna was told a value


def at(column: str, profile: str) -> str:
    """The column of ``column`` on one profile, e.g. ``latency_p50_ms@cpu-default``."""
    return f"{column}@{profile}"


RATIO_PREFIX = "ratio."


def ratio_column(group: str) -> str:
    return f"{RATIO_PREFIX}{group}"


def ratios_of(row: Mapping[str, Any]) -> dict[str, float]:
    """Group → ratio from a row's ``ratio.GROUP`` columns."""
    return {k.removeprefix(RATIO_PREFIX): v for k, v in row.items() if k.startswith(RATIO_PREFIX)}


@dataclass(frozen=True, kw_only=True)
class ProfileLatency:
    """One profile's latency figure in a trial (from ``latency.onnx.LatencyStats``)."""

    profile: str
    p50_ms: float
    ci_low_ms: float = math.nan
    ci_high_ms: float = math.nan
    p90_ms: float = math.nan
    spread: float = math.nan
    ratio: float = math.nan
    ratio_ci_low: float = math.nan
    ratio_ci_high: float = math.nan
    reference: str = ""
    reference_ms: float = math.nan
    method: str = "single"
    processes: int = 1
    source: str = "measured"
    repeats: int = 0
    node: str = ""

    # columns that also appear unsuffixed for the primary profile (the rest only as NAME@PROFILE)
    FIGURE = ("latency_p50_ms", "latency_ci_low_ms", "latency_ci_high_ms", "latency_p90_ms", "latency_spread")

    @classmethod
    def from_stats(cls, stats: Any) -> ProfileLatency:
        return cls(profile=stats.profile, p50_ms=stats.p50_ms, ci_low_ms=stats.ci_low_ms, ci_high_ms=stats.ci_high_ms,
                   p90_ms=stats.p90_ms, spread=stats.spread, ratio=stats.ratio, ratio_ci_low=stats.ratio_low,
                   ratio_ci_high=stats.ratio_high, reference=stats.reference, reference_ms=stats.reference_ms,
                   method=stats.method, processes=stats.attempts if stats.method == "pooled" else 1,
                   source=stats.source, repeats=stats.repeats, node=stats.node)

    def columns(self, *, primary: bool) -> dict[str, Any]:
        """``latency_p50_ms@NAME``… and, for the primary profile, the figure unsuffixed too."""
        figure = dict(zip(self.FIGURE, (self.p50_ms, self.ci_low_ms, self.ci_high_ms, self.p90_ms, self.spread),
                          strict=True))
        detail = {"latency_ratio": self.ratio, "latency_ratio_ci_low": self.ratio_ci_low,
                  "latency_ratio_ci_high": self.ratio_ci_high, "latency_reference": self.reference,
                  "latency_reference_ms": self.reference_ms, "latency_method": self.method,
                  "latency_processes": self.processes, "latency_source": self.source,
                  "latency_repeats": self.repeats, "latency_node": self.node}
        cols = {at(k, self.profile): v for k, v in {**figure, **detail}.items()}
        return {**cols, **figure} if primary else cols


PHASES = ("prune", "export", "measure", "recalibrate", "finetune", "evaluate")  # a trial's timed phases

# the confirmation stage: a top plan re-trained with fresh seeds (their mean and sd; NaN where not confirmed)
CONFIRMED_COLUMNS = ("confirmed_accuracy", "confirmed_sd", "confirmed_seeds")

# trials.csv: these first, in this order; then the per-profile, per-group and other columns, sorted.
TRIAL_COLUMNS = (
    "trial", "status", "accuracy", *CONFIRMED_COLUMNS, "latency_p50_ms", "latency_ci_low_ms", "latency_ci_high_ms",
    "latency_p90_ms", "latency_spread", "meets_budget", "predicted_ms", "repair_shift", "landing_moves",
    "accuracy_before_finetune", "finetuned",
    "finetune_device", "macs", "params", "wall_s", "trial_s", *(f"{p}_s" for p in PHASES), "overhead_s", "node",
    "started_at", "finished_at", "error", "plan")

# what a trial reports besides its latency columns (``latency_*``) and deployed accuracies (``accuracy@P``)
TRIAL_METRICS = frozenset({
    "accuracy", "accuracy_before_finetune", "accuracy_float", "finetuned", "finetune_step", "macs", "params", "node",
    "finetune_device", "arch_fingerprint", "pruned_fingerprint", "trial_s", "landing_moves",
    *(f"{p}_s" for p in PHASES)})

# pareto.csv: the front's columns, then each profile's (``pareto_columns``)
PARETO_COLUMNS = ("trial", "accuracy", *CONFIRMED_COLUMNS, "latency_p50_ms", "latency_ci_low_ms", "latency_ci_high_ms", "latency_p90_ms",
                  "macs", "params", "meets_budget", "plan")


def pareto_columns(profiles: list[str]) -> list[str]:
    """pareto.csv's columns before the ratios: the front's, deployed accuracies, then each profile's."""
    per_profile = [at(c, p) for p in profiles for c in ("latency_p50_ms", "latency_ci_low_ms", "latency_ci_high_ms",
                                                        "latency_p90_ms", "meets_budget", "budget_verdict")]
    return [*PARETO_COLUMNS, "accuracy_float", *(at("accuracy", p) for p in profiles), *per_profile]


@dataclass(kw_only=True)
class TrialRecord:
    """One finished trial: what the Ray callback writes and resume reads back (a row of trials.csv)."""

    trial: str
    status: Status
    plan: str  # the plan's YAML, relative to the run directory
    ratios: dict[str, float]
    started_at: float
    finished_at: float
    metrics: dict[str, Any] = field(default_factory=dict)  # TRIAL_METRICS and latency columns, as reported
    budgets: dict[str, tuple[bool, str]] = field(default_factory=dict)  # profile → (meets, verdict)
    predicted_ms: float | None = None
    repair_shift: float | None = None
    error: str | None = None

    def row(self) -> dict[str, Any]:
        out: dict[str, Any] = {"trial": self.trial, "status": self.status.value, "plan": self.plan,
                               "started_at": self.started_at, "finished_at": self.finished_at,
                               "wall_s": self.finished_at - self.started_at, "predicted_ms": self.predicted_ms,
                               "repair_shift": self.repair_shift,
                               **{ratio_column(k): v for k, v in self.ratios.items()}, **self.metrics}
        if self.status is Status.INFEASIBLE:
            out["accuracy"] = math.nan  # the sampler was told 0.0; the table records no accuracy
        if self.status is Status.FAILED:
            out["error"] = self.error
        for name, (meets, verdict) in self.budgets.items():
            out[at("meets_budget", name)] = meets
            out[at("budget_verdict", name)] = verdict  # met / missed / inconclusive, from the CI
        out["meets_budget"] = bool(self.budgets) and all(m for m, _ in self.budgets.values())
        if self.status is not Status.FAILED:
            out["overhead_s"] = out["wall_s"] - sum(float(self.metrics.get(f"{p}_s", 0.0)) for p in PHASES)
        return out


def status_of(row: Mapping[str, Any]) -> Status | None:
    """A row's status, or None for a row no run of this version wrote."""
    try:
        return Status(row.get("status"))
    except ValueError:
        return None


# ---------------------------------------------------------------- a run's config.yaml

RUN_FORMAT = 2  # 2: pooled latency with CIs, budget_confidence, the unpruned model as reference

# The choices of a run's options (search() checks them; RunConfig validates them read back).
BUDGET_RULES = ("upper", "p50")  # judge a budget on the CI's upper end (default) or on the point estimate
FORMULATIONS = ("budget", "front")
EARLY_STOP = ("none", "asha", "bn")  # bn: halve the plans by their adaptive-BN accuracy, before any fine-tune


class BudgetEntry(StrictModel):
    budget: str  # as given, e.g. 50ms@cpu-default
    ms: float = Field(gt=0)


class FinetuneEntry(StrictModel):
    steps: int = Field(ge=0)
    lr: float = Field(gt=0)
    batch_size: int = Field(gt=0)


class StudyEntry(StrictModel):
    storage: str | None = None  # an Optuna RDB URL; None: RUN/study.db
    name: str


class RunConfig(StrictModel):
    """``runs/<run>/config.yaml``: what the run searched and how; resume and apply read it back."""

    format: Literal[2]
    model: str
    weights: str | None = None
    model_fingerprint: str
    data: str
    metric: str = "top1"
    metric_direction: Literal["maximize", "minimize"] = "maximize"  # the metric's (core.metric.MetricSense)
    metric_percent: bool = True
    loss: str = "cross_entropy"
    val_samples: int | None = None
    preprocessing: dict[str, Any] | None = None
    input_shape: list[int]
    input_dtype: str = "float32"  # token ids: int64 (core.inputs.InputSpec)
    input_high: int | None = None  # token ids are below this
    input_names: list[str] | None = None  # several named inputs of that shape, the main one first
    budget: str  # the primary budget
    budget_ms: float
    budgets: dict[str, BudgetEntry]  # profile → budget, the primary first
    trials: int = Field(ge=1)
    concurrency: int = Field(ge=1)
    seed: int
    sampler: str
    budget_confidence: str
    formulation: str
    seed_plans: list[str]
    confirm: int = Field(default=0, ge=0)  # top plans re-trained with fresh seeds after the trials
    confirm_seeds: int = Field(default=0, ge=0)
    landing_moves: int = Field(default=0, ge=0)  # re-measures a trial may take to land on the budget
    precheck: bool
    bn_recalibration: int = Field(ge=0)
    early_stop: str
    eval_every: int = Field(ge=0)
    finetune: FinetuneEntry
    study: StudyEntry
    initial_plans: list[dict[str, float]]
    seeded_from: str
    profiles: list[dict[str, Any]]  # each a HardwareProfile (validated where it is loaded)
    space: dict[str, Any]  # a SearchSpace
    plan: dict[str, Any]  # the fields every trial's Plan shares
    baseline: dict[str, Any]  # the unpruned model's accuracy, size and latency per profile

    @field_validator("budget_confidence", "formulation", "early_stop")
    @classmethod
    def _one_of(cls, v: str, info: ValidationInfo) -> str:
        choices = {"budget_confidence": BUDGET_RULES, "formulation": FORMULATIONS, "early_stop": EARLY_STOP}[info.field_name]
        if v not in choices:
            raise ValueError(f"one of {', '.join(choices)}")
        return v

    @property
    def budgets_ms(self) -> dict[str, float]:
        return {name: b.ms for name, b in self.budgets.items()}

    @property
    def sense(self) -> MetricSense:
        """Which way the run's metric is better, read back without importing the user's function."""
        return MetricSense(name=self.metric, direction=self.metric_direction, percent=self.metric_percent)

    @classmethod
    def read(cls, run_dir: str | Path, *, what: str) -> RunConfig:
        """The run's config; ``what`` (e.g. ``--resume``) starts each one-line error."""
        path = Path(run_dir) / "config.yaml"
        if not path.is_file():
            raise AutopruneError(f"{what} {run_dir}: not an autoprune run directory (no config.yaml); "
                                 "pass the runs/<run> directory that autoprune search printed")
        data = config.read_yaml(path)
        found = data.get("format") if isinstance(data, dict) else None
        if found != RUN_FORMAT:
            raise AutopruneError(f"{what} {run_dir}: written by another autoprune version (format {found!r}, "
                                 f"this version reads {RUN_FORMAT}); start a new search")
        return config.validate(cls, data, source=str(path))

    def write(self, run_dir: str | Path) -> Path:
        return config.dump(self, Path(run_dir) / "config.yaml")
