"""Processes that take the node lock (tests/test_targets.py): a module of their own, so that a
spawned child imports the lock and nothing heavier."""

from __future__ import annotations

from autoprune.latency import node_lock


def record(path: str, event: str) -> None:
    with open(path, "a") as f:  # one short append per event: the file keeps their order across processes
        f.write(event + "\n")


def hold_training_step(lock_dir: str, events: str, started, release) -> None:
    import os

    os.environ["AUTOPRUNE_LOCK_DIR"] = lock_dir
    with node_lock.training_step():
        record(events, "step-1 enter")
        started.set()
        release.wait(60)  # held until the measurement is waiting for it
        record(events, "step-1 exit")


def try_training_step(lock_dir: str, events: str, trying) -> None:
    import os

    os.environ["AUTOPRUNE_LOCK_DIR"] = lock_dir
    trying.set()
    with node_lock.training_step():
        record(events, "step-2 enter")
