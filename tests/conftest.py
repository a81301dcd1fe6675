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


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto's standalone server, a process of its own) with one bucket,
    ``team``; its endpoint and credentials are in the environment, as a team's AWS settings would be
    (Ray nodes and drivers started after it inherit them)."""
    import socket
    import subprocess
    import time
    import urllib.request

    import pyarrow.fs as pafs

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60  # a guard against a server that never starts, not a timing
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto's S3 server did not start") from None
            time.sleep(0.1)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True).create_dir("team")
    try:
        yield endpoint
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def s3_prefix(s3_server, request):
    """A prefix of its own in the bucket for one test: ``s3://team/<test name>``."""
    return f"s3://team/{request.node.name.replace('[', '-').replace(']', '')}"
