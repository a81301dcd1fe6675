"""A simulated two-node Ray cluster: a profile that names a Ray resource is measured on the node that
holds it; trials spread over both nodes into one directory; a search submitted as a Ray job."""

from __future__ import annotations

import os
import shlex
import socket
import sys
import time

import pandas as pd
import pytest
import yaml

from autoprune import runs, search
from autoprune.latency.measure import measure_on_profile
from autoprune.latency.onnx import export_onnx
from autoprune.latency.profiles import HardwareProfile
from tests.conftest import ROOT, TINY_PROFILE, TINY_SINGLE, start_local_ray
from tests.helpers import cli, tiny_resnet


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    from autoprune.study.ray_backend import env_for_ray

    env_for_ray()
    shared = ray.is_initialized()  # the session's local Ray (conftest): this module needs its own cluster
    if shared:
        ray.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dashboard_port = s.getsockname()[1]
    # the dashboard takes Ray job submissions (a search submitted as a job)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": True,
                                                      "dashboard_host": "127.0.0.1",
                                                      "dashboard_port": dashboard_port})
    edge = c.add_node(num_cpus=1, resources={"edge_arm": 1})
    ray.init(address=c.address, log_to_driver=False, logging_level="ERROR")
    c.wait_for_nodes()
    c.dashboard = f"http://127.0.0.1:{dashboard_port}"
    yield c, edge.node_id
    ray.shutdown()
    c.shutdown()
    if shared:
        start_local_ray()


def test_measurement_runs_on_the_node_with_the_resource(cluster, tmp_path):
    _, edge_id = cluster
    profile = HardwareProfile(name="edge", batch_size=2, warmup=1, repeats=3, method="single",
                              ray_resources={"edge_arm": 1})
    path = export_onnx(tiny_resnet(), tmp_path / "m.onnx", input_shape=(1, 8, 8), batch_size=2)
    stats = measure_on_profile(path, profile)
    assert stats.node.endswith(f"ray-node:{edge_id}")
    assert stats.p50_ms > 0


def test_missing_resource_is_refused(cluster, tmp_path):
    from autoprune.core.errors import AutopruneError

    profile = HardwareProfile(name="tpu", ray_resources={"tpu_v9": 1})
    path = export_onnx(tiny_resnet(), tmp_path / "m.onnx", input_shape=(1, 8, 8), batch_size=1)
    with pytest.raises(AutopruneError, match="'tpu_v9', which no node of this cluster has"):
        measure_on_profile(path, profile)


def test_search_measures_the_remote_profile_on_its_node(cluster, tmp_path):
    import ray

    _, edge_id = cluster
    edge = yaml.safe_load(TINY_SINGLE.read_text()) | {"name": "edge", "ray_resources": {"edge_arm": 1}}
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(edge))
    result = search(budget=["1000ms@tiny", "10s@edge"], model="tests.helpers:tiny_resnet",
                    profile=[TINY_SINGLE, tmp_path / "edge.yaml"], trials=3, finetune_steps=2, out=tmp_path,
                    quiet=True)
    trials = pd.read_csv(result.run_dir / "trials.csv")
    done = trials[trials["status"] == "completed"]
    assert len(done) == 3
    measured = done[done["latency_source@edge"] == "measured"]
    assert len(measured) >= 1
    assert measured["latency_node@edge"].str.endswith(f"ray-node:{edge_id}").all()
    head_id = next(n["NodeID"] for n in ray.nodes() if "edge_arm" not in n["Resources"])
    assert head_id != edge_id


def test_trials_run_on_both_nodes_and_all_complete(cluster, tmp_path, monkeypatch):
    import ray

    # 3 CPUs in the cluster (2 + 1), 3 trials of 1 CPU each that wait for one another in their first forward pass
    # (GatheringResNet): all three run at once, so one of them must be on the second node.
    (tmp_path / "gather").mkdir()
    monkeypatch.setenv("AUTOPRUNE_TEST_GATHER", str(tmp_path / "gather"))
    result = search(budget="1000ms", model="tests.helpers:gathering_resnet", profile=TINY_SINGLE, trials=3,
                    concurrency=3, cpus_per_trial=1, finetune_steps=5, out=tmp_path, quiet=True,
                    confirm=0)  # only the trials' processes gather (the confirmation's would count too)
    trials = pd.read_csv(result.run_dir / "trials.csv")
    assert len(trials) == 3 and (trials["status"] == "completed").all()
    [listed] = runs(out=tmp_path, quiet=True)  # the directory both nodes' trials were recorded in
    assert (listed.status, listed.trials_done, listed.location) == ("finished", 3, str(result.run_dir))
    assert len(list((tmp_path / "gather").iterdir())) == 3  # three trial processes trained at once
    node_ids = {n.rsplit("ray-node:", 1)[1] for n in trials["node"]}
    assert node_ids == {n["NodeID"] for n in ray.nodes() if n["Alive"]}


def test_cpus_per_trial_beyond_any_node_is_refused(cluster, tmp_path):
    from autoprune.core.errors import AutopruneError

    with pytest.raises(AutopruneError, match="--cpus-per-trial 3 is more than any node has"):
        search(budget="1000ms", model="tests.helpers:tiny_resnet", profile=TINY_PROFILE, trials=1,
               cpus_per_trial=3, out=tmp_path, quiet=True)


def test_a_driver_joins_the_cluster_with_address(cluster, tmp_path, capsys):
    """``--address``: a driver not yet connected joins the running cluster (as a second terminal
    would), runs its trials there, and leaves the cluster running when it is done."""
    import ray

    c, _ = cluster
    nodes = {n["NodeID"] for n in ray.nodes()}
    ray.shutdown()  # this process becomes a fresh driver
    try:
        proc = cli("search", "--address", c.address, "--budget", "1000ms", "--model", "tests.helpers:tiny_resnet",
                   "--profile", str(TINY_SINGLE), "--trials", "2", "--finetune-steps", "2", "--out", str(tmp_path))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"joining the Ray cluster at {c.address}" in proc.stdout
        assert not ray.is_initialized()  # it let go of the cluster it joined
    finally:
        if not ray.is_initialized():
            ray.init(address=c.address, log_to_driver=False, logging_level="ERROR")
    trials = pd.read_csv(next(tmp_path.glob("*/trials.csv")))
    assert len(trials) == 2
    assert {n.rsplit("ray-node:", 1)[1] for n in trials["node"]} <= nodes
    assert {n["NodeID"] for n in ray.nodes() if n["Alive"]} == nodes  # the cluster is still up


def test_a_search_submitted_as_a_ray_job_writes_where_the_submitter_reads(cluster, s3_prefix, tmp_path):
    """``ray job submit -- autoprune search --out s3://…``: the job's driver runs on the head node in a
    folder Ray manages; the person who submitted it lists the run and applies its plan from the URL."""
    import ray
    from ray.job_submission import JobStatus, JobSubmissionClient

    c, _ = cluster
    out = f"{s3_prefix}/runs"
    client = JobSubmissionClient(c.dashboard)
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    entrypoint = (f"{shlex.quote(sys.executable)} -m autoprune.cli search --budget 1000ms --model "
                  f"tests.helpers:tiny_resnet --profile {TINY_SINGLE} --trials 2 --concurrency 2 "
                  f"--finetune-steps 2 --seed-plans none --out {out}")
    # the head's dashboard agent registers a while after the node is up (longer on a loaded machine);
    # until then Ray answers "No available agent to submit job, please try again later"
    deadline = time.monotonic() + 120  # a guard against an agent that never comes, not a timing
    while True:
        try:
            job = client.submit_job(entrypoint=entrypoint, runtime_env={"env_vars": {**aws, "PYTHONPATH": str(ROOT)}})
            break
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(1)
    deadline = time.monotonic() + 300  # a guard against a hung job, not a timing
    while (status := client.get_job_status(job)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, client.get_job_logs(job)[-3000:]
        time.sleep(0.5)
    assert status == JobStatus.SUCCEEDED, client.get_job_logs(job)[-3000:]
    [listed] = runs(out=out, quiet=True)
    assert (listed.status, listed.trials_done) == ("finished", 2)
    trials = pd.read_csv(listed.run_dir / "trials.csv")  # the submitter's copy, fetched from the URL
    assert {n.rsplit("ray-node:", 1)[1] for n in trials["node"]} <= {n["NodeID"] for n in ray.nodes()}
    assert listed.location in client.get_job_logs(job)  # the job told where its run is
