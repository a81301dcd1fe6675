"""Budgets bound to profiles, the node lock, the latency cache."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from autoprune.core.errors import AutopruneError
from autoprune.latency import node_lock
from autoprune.latency.budget import Budget
from autoprune.latency.cache import LocalLatencyCache
from autoprune.latency.measure import latency_for
from autoprune.latency.profiles import HardwareProfile
from autoprune.study.arguments import resolve_targets
from tests import lock_workers
from tests.conftest import ROOT
from tests.helpers import tiny_resnet

TINY, TINY_B4 = str(ROOT / "tests/profiles/tiny.yaml"), str(ROOT / "tests/profiles/tiny-b4.yaml")


def test_budget_names_its_profile():
    b = Budget.parse("50ms@cpu-1thread-b1")
    assert b.profile == "cpu-1thread-b1" and b.value == 50.0
    assert Budget.parse("0.5x@edge.v2").relative


def test_targets_put_the_first_budgets_profile_first():
    profiles, budgets = resolve_targets(["0.5x@tiny-b4", "80ms"], [TINY, TINY_B4])
    assert [p.name for p in profiles] == ["tiny-b4", "tiny"]
    assert [b.profile for b in budgets] == ["tiny-b4", "tiny"]  # the unbound budget takes the first --profile


@pytest.mark.parametrize(("budgets", "pattern"), [
    (["50ms@nowhere"], "'nowhere', which is not searched; profiles: tiny, tiny-b4"),
    (["50ms", "60ms@tiny"], "two budgets for one profile"),
])
def test_bad_budget_bindings(budgets, pattern):
    with pytest.raises(AutopruneError, match=pattern):
        resolve_targets(budgets, [TINY, TINY_B4])


def test_measurement_waits_for_fine_tune_steps_and_blocks_new_ones(tmp_path, monkeypatch):
    """The order of lock events, not their timing: the measurement starts after the step in flight
    ends, and a step that asks while it measures runs after it."""
    monkeypatch.setenv("AUTOPRUNE_LOCK_DIR", str(tmp_path))
    log = str(tmp_path / "events.log")
    ctx = mp.get_context("spawn")
    started, release, trying = ctx.Event(), ctx.Event(), ctx.Event()
    holder = ctx.Process(target=lock_workers.hold_training_step, args=(str(tmp_path), log, started, release))
    holder.start()
    assert started.wait(60)
    queued: list[str] = []

    def let_the_step_end(why: str) -> None:  # called once the measurement found the lock held: queued behind it
        queued.append(why)
        release.set()

    with node_lock.measuring(on_wait=let_the_step_end):
        lock_workers.record(log, "measure enter")
        stepper = ctx.Process(target=lock_workers.try_training_step, args=(str(tmp_path), log, trying))
        stepper.start()
        assert trying.wait(60)
        stepper.join(0.5)  # were the lock broken, the step would run (and log) now
        lock_workers.record(log, "measure exit")
    stepper.join(60)
    holder.join(60)
    assert queued == ["measurement lock busy"]  # the measurement did wait on the step in flight
    assert Path(log).read_text().split("\n")[:-1] == ["step-1 enter", "step-1 exit", "measure enter", "measure exit",
                                                      "step-2 enter"]


def test_a_measurement_that_waits_on_another_process_says_so_once(tmp_path, monkeypatch):
    """A fine-tune step held in another process: the measurement says it is waiting (once), then
    takes the lock when the step ends; one that finds the lock free says nothing."""
    monkeypatch.setenv("AUTOPRUNE_LOCK_DIR", str(tmp_path))
    said: list[str] = []
    with node_lock.measuring(on_wait=said.append):
        pass
    assert said == []
    ctx = mp.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=lock_workers.hold_training_step,
                         args=(str(tmp_path), str(tmp_path / "events.log"), started, release))
    holder.start()
    assert started.wait(60)

    def release_once_said(text: str) -> None:
        said.append(text)
        release.set()  # the step ends only after the wait was said: no timing decides the outcome

    with node_lock.measuring(on_wait=release_once_said):
        said.append("measured")
    holder.join(60)
    assert said == ["measurement lock busy", "measured"]


def test_repeated_architecture_is_not_measured_again():
    cache = LocalLatencyCache()
    profile = HardwareProfile(name="t", batch_size=4, warmup=1, repeats=5, method="single")
    model = tiny_resnet()
    first = latency_for(model, profile, input_shape=(1, 8, 8), arch_key="a", cache=cache)
    again = latency_for(tiny_resnet(), profile, input_shape=(1, 8, 8), arch_key="a", cache=cache)
    assert first.source == "measured" and again.source == "cached"
    assert again.p50_ms == first.p50_ms
    other = latency_for(model, profile.model_copy(update={"batch_size": 8}), input_shape=(1, 8, 8), arch_key="a",
                        cache=cache)
    assert other.source == "measured"  # another profile setting is another figure
    assert "reused" in again.describe() and "on t" in again.describe()
