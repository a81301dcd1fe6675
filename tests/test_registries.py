"""One registry shape: every registry (criteria, samplers, penalties, hardware profiles) behaves the
same way, and the records that cross boundaries (a run's config.yaml, a trial's row) are checked."""

from __future__ import annotations

import math

import pytest
import yaml

from autoprune.core.errors import AutopruneError, ConfigError
from autoprune.core.records import RunConfig, Status, TrialRecord, at, status_of
from autoprune.core.registry import Registry


def _registries() -> dict[str, Registry]:
    """Every registry autoprune makes, found by importing every module: a new one is under contract
    the day it is added."""
    import importlib
    import pkgutil

    import autoprune

    for info in pkgutil.walk_packages(autoprune.__path__, "autoprune."):
        importlib.import_module(info.name)
    return {r.kind: r for r in Registry.every if r.owner.startswith("autoprune.")}


REGISTRIES = _registries()


def test_the_registries_found_include_every_kind_users_choose_from():
    assert {"criterion", "sampler", "regularisation", "profile"} <= set(REGISTRIES)


@pytest.mark.parametrize("kind", REGISTRIES)
def test_every_registry_has_the_same_shape(kind):
    import importlib

    registry = REGISTRIES[kind]
    names = registry.names()
    listers = [f for n, f in vars(importlib.import_module(registry.owner)).items()
               if n.startswith("list_") and callable(f) and f() == names]
    assert listers, f"{registry.owner} offers no list_* function that lists its {kind} registry"
    assert names and len(registry) == len(names)
    for name in names:
        assert name in registry and registry.get(name) is not None
    with pytest.raises(AutopruneError) as info:
        registry.get("no-such-entry")
    message = str(info.value)
    assert message.startswith(f"{kind} 'no-such-entry' is unknown; choose one of: {names[0]}") and "\n" not in message
    with pytest.raises(ValueError, match="already registered"):
        registry.register(names[0], registry.get(names[0]))


def test_a_registry_takes_entries_by_decorator_and_discovers_lazily():
    found = []

    def discover(reg: Registry[int]) -> None:
        found.append(True)
        reg.register("two", 2)

    reg: Registry = Registry("thing", discover=discover)
    assert not found  # nothing is discovered before the first use

    @reg.register("double")
    def double(x: int) -> int:
        return 2 * x

    assert reg.names() == ["double", "two"] and found == [True]
    assert reg.get("double")(4) == 8 and reg.get("two") == 2
    reg.names()
    assert found == [True]  # discovered once


def test_status_and_row_columns():
    record = TrialRecord(trial="trial-003", status=Status.INFEASIBLE, plan="plans/trial-003.yaml",
                         ratios={"stem.0": 0.5}, started_at=10.0, finished_at=12.5,
                         metrics={"accuracy": 0.0, "latency_p50_ms@cpu": 3.0, "prune_s": 0.5},
                         budgets={"cpu": (False, "missed")})
    row = record.row()
    assert row["status"] == "infeasible" and math.isnan(row["accuracy"])  # the sampler's 0.0 is not a result
    assert row["ratio.stem.0"] == 0.5 and row["wall_s"] == 2.5 and row["overhead_s"] == 2.0
    assert row[at("meets_budget", "cpu")] is False and row[at("budget_verdict", "cpu")] == "missed"
    assert row["meets_budget"] is False
    assert status_of(row) is Status.INFEASIBLE and status_of({"status": "exploded"}) is None
    assert str(Status.COMPLETED) == "completed"


def _config(run_dir, **change):
    data = yaml.safe_load((run_dir / "config.yaml").read_text()) | change
    (run_dir / "config.yaml").write_text(yaml.safe_dump(data))


def test_a_bad_or_old_run_directory_is_one_line(tmp_path, run_config_dir):
    run_dir = run_config_dir
    assert RunConfig.read(run_dir, what="--resume").format == 2
    _config(run_dir, budget_confidence="p99")
    with pytest.raises(ConfigError) as info:
        RunConfig.read(run_dir, what="--resume")
    assert "config.yaml: budget_confidence: 'p99'" in str(info.value) and "upper, p50" in str(info.value)
    _config(run_dir, format=1)
    with pytest.raises(AutopruneError, match=r"apply .*: written by another autoprune version \(format 1"):
        RunConfig.read(run_dir, what="apply")
    (run_dir / "config.yaml").write_text("- not\n- a mapping\n")
    with pytest.raises(AutopruneError, match="written by another autoprune version"):
        RunConfig.read(run_dir, what="apply")


@pytest.fixture
def run_config_dir(tmp_path):
    """A config.yaml as search writes it (the fields a run records), without running a search."""
    config = {
        "format": 2, "model": "builtin:demo", "weights": None, "model_fingerprint": "f", "data": "builtin:digits",
        "metric": "top1", "loss": "cross_entropy", "val_samples": None, "preprocessing": None, "input_shape": [1, 8, 8],
        "budget": "50ms@cpu", "budget_ms": 50.0, "budgets": {"cpu": {"budget": "50ms@cpu", "ms": 50.0}},
        "trials": 4, "concurrency": 1, "seed": 0, "sampler": "tpe", "budget_confidence": "upper",
        "formulation": "budget", "seed_plans": ["uniform"], "precheck": True, "bn_recalibration": 10,
        "early_stop": "none", "eval_every": 0, "finetune": {"steps": 30, "lr": 0.01, "batch_size": 64},
        "study": {"storage": None, "name": "autoprune"}, "initial_plans": [], "seeded_from": "uniform",
        "profiles": [{"name": "cpu"}], "space": {"groups": {}}, "plan": {}, "baseline": {}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path
