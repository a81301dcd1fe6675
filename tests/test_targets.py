"""Budgets bound to profiles, the node lock, the latency cache."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from autoprune.core.errors import AutopruneError
from autoprune.latency import node_lock
from autoprune.latency.budget import Budget
from autoprune.latency.cache import LocalLatencyCache
from autoprune.latency.measure import latency_for
from autoprune.latency.profiles import HardwareProfile
from autoprune.study.run import resolve_targets
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


def _hold_training_step(seconds: float, started, lock_dir: str) -> None:
    import os

    os.environ["AUTOPRUNE_LOCK_DIR"] = lock_dir
    with node_lock.training_step():
        started.set()
        time.sleep(seconds)


def _try_training_step(lock_dir: str, out) -> None:
    import os

    os.environ["AUTOPRUNE_LOCK_DIR"] = lock_dir
    with node_lock.training_step():
        out.put(time.time())


def test_measurement_waits_for_fine_tune_steps_and_blocks_new_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOPRUNE_LOCK_DIR", str(tmp_path))
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    holder = ctx.Process(target=_hold_training_step, args=(1.0, started, str(tmp_path)))
    holder.start()
    assert started.wait(60)
    t0 = time.time()
    with node_lock.measuring():
        waited = time.time() - t0
        q = ctx.Queue()
        stepper = ctx.Process(target=_try_training_step, args=(str(tmp_path), q))
        stepper.start()
        time.sleep(1.5)  # long enough for a spawned process to reach the lock
        released = time.time()
    step_ran_at = q.get(timeout=60)
    holder.join()
    stepper.join()
    assert waited >= 0.5  # the measurement waited for the step in flight
    assert step_ran_at >= released  # and no new step ran while it measured


def test_repeated_architecture_is_not_measured_again():
    cache = LocalLatencyCache()
    profile = HardwareProfile(name="t", batch_size=4, warmup=1, repeats=5)
    model = tiny_resnet()
    first = latency_for(model, profile, input_shape=(1, 8, 8), arch_key="a", cache=cache)
    again = latency_for(tiny_resnet(), profile, input_shape=(1, 8, 8), arch_key="a", cache=cache)
    assert first.source == "measured" and again.source == "cached"
    assert again.p50_ms == first.p50_ms
    other = latency_for(model, profile.model_copy(update={"batch_size": 8}), input_shape=(1, 8, 8), arch_key="a",
                        cache=cache)
    assert other.source == "measured"  # another profile setting is another figure
    assert "reused" in again.describe() and "on t" in again.describe()
