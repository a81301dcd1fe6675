from __future__ import annotations

import os
import sys

import pytest

from tests.helpers import ROOT, TINY_GROUPS  # noqa: F401 - shared with the test modules from here

# Ray workers import tests.helpers (pickled model classes) through PYTHONPATH, set before Ray starts.
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
sys.path.insert(0, str(ROOT))

TINY_PROFILE = ROOT / "tests" / "profiles" / "tiny.yaml"  # pooled: a CI from 2-3 worker processes
# the same target timed in one process: for tests that search but do not test the measurement
TINY_SINGLE = ROOT / "tests" / "profiles" / "tiny-single.yaml"


@pytest.fixture(scope="session", autouse=True)
def demo_trained():
    """Train and cache the demo model once, before any test: on a fresh machine its one-time
    "training the demo model" line would otherwise land in whichever CLI test loads it first."""
    from autoprune.load.demo import demo_model

    demo_model()


def start_local_ray() -> None:
    import ray

    from autoprune.study.ray_backend import env_for_ray

    env_for_ray()
    # address="local": always a new Ray of our own, never one another process on this machine started
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")


@pytest.fixture(scope="session")
def ray_local():
    """One small local Ray for the whole session (starting one costs seconds, and its warm workers
    keep torch imported); every search in the tests reuses it. tests/test_cluster.py stops it while
    its simulated cluster runs, and starts it again after."""
    import ray

    if not ray.is_initialized():
        start_local_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def digits():
    from autoprune.load.data import load_data

    return load_data("builtin:digits")


@pytest.fixture
def demo_untrained():
    import torch

    from autoprune.load.demo import DemoResNet

    torch.manual_seed(0)
    return DemoResNet().eval()
