"""A profile that names a Ray resource is measured on the node that holds it (two simulated nodes)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from autoprune import search
from autoprune.latency import export_onnx
from autoprune.measure import measure_on_profile
from autoprune.profiles import HardwareProfile
from tests.conftest import TINY_PROFILE
from tests.helpers import tiny_resnet


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    from autoprune.search import env_for_ray

    env_for_ray()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    edge = c.add_node(num_cpus=1, resources={"edge_arm": 1})
    ray.init(address=c.address, log_to_driver=False, logging_level="ERROR")
    c.wait_for_nodes()
    yield c, edge.node_id
    ray.shutdown()
    c.shutdown()


def test_measurement_runs_on_the_node_with_the_resource(cluster, tmp_path):
    _, edge_id = cluster
    profile = HardwareProfile(name="edge", batch_size=2, warmup=1, repeats=3, ray_resources={"edge_arm": 1})
    path = export_onnx(tiny_resnet(), tmp_path / "m.onnx", input_shape=(1, 8, 8), batch_size=2)
    stats = measure_on_profile(path, profile)
    assert stats.node.endswith(f"ray-node:{edge_id}")
    assert stats.p50_ms > 0


def test_missing_resource_is_refused(cluster, tmp_path):
    from autoprune.errors import AutopruneError

    profile = HardwareProfile(name="tpu", ray_resources={"tpu_v9": 1})
    path = export_onnx(tiny_resnet(), tmp_path / "m.onnx", input_shape=(1, 8, 8), batch_size=1)
    with pytest.raises(AutopruneError, match="'tpu_v9', which no node of this cluster has"):
        measure_on_profile(path, profile)


def test_search_measures_the_remote_profile_on_its_node(cluster, tmp_path):
    import ray

    _, edge_id = cluster
    edge = yaml.safe_load(TINY_PROFILE.read_text()) | {"name": "edge", "ray_resources": {"edge_arm": 1}}
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(edge))
    result = search(budget=["0.9x@tiny", "10s@edge"], model="tests.helpers:tiny_resnet",
                    profile=[TINY_PROFILE, tmp_path / "edge.yaml"], trials=3, finetune_steps=2, out=tmp_path,
                    quiet=True)
    trials = pd.read_csv(result.run_dir / "trials.csv")
    done = trials[trials["status"] == "completed"]
    assert len(done) == 3
    measured = done[done["latency_source@edge"] == "measured"]
    assert len(measured) >= 1
    assert measured["latency_node@edge"].str.endswith(f"ray-node:{edge_id}").all()
    head_id = next(n["NodeID"] for n in ray.nodes() if "edge_arm" not in n["Resources"])
    assert head_id != edge_id
