"""Graph generation through a real gpu_batch worker process on the tiny model (slow: real processes)."""

import json

import pytest

from graphs.models import Graph
from inference.runtime.graph_schema import graph_problems
from tests.conftest import wait_until
from tests.graphs.conftest import TINY_ID

pytestmark = [pytest.mark.slow]


def test_a_worker_generates_graphs_that_validate_and_keep_more_nodes_as_the_node_threshold_rises(
    client, start_worker, tiny_graph_model, user, settings, tmp_path
):
    settings.VAR_DIR = tmp_path
    start_worker(["gpu_batch"], name="graphs", MEMICOS_VAR_DIR=tmp_path)
    client.force_login(user)
    jobs = {}
    for threshold in (0.5, 0.8, 0.95):
        r = client.post(
            "/api/graph/generate",
            json.dumps(
                {
                    "modelId": TINY_ID,
                    "prompt": "The capital of France is",
                    "slug": f"t{int(threshold * 100)}",
                    "nodeThreshold": threshold,
                    "maxFeatureNodes": 300,
                }
            ),  # fmt: skip
            content_type="application/json",
        )
        assert r.status_code == 200, r.content
        assert r.json()["status"] == "PENDING" and r.json()["numNodes"] is None  # a real worker: answered at once
        jobs[threshold] = r.json()["jobId"]
    wait_until(lambda: Graph.objects.filter(status="READY").count() == 3, 240, "three graphs", 0.5)
    counts = {}
    for threshold in jobs:
        slug = f"t{int(threshold * 100)}"
        data = client.get(f"/api/graph/{TINY_ID}/{slug}/json").json()
        assert graph_problems(data) == []
        assert data["metadata"]["pruning_settings"]["node_threshold"] == threshold
        assert client.get(f"/api/job/{jobs[threshold]}").json()["status"] == "SUCCEEDED"
        counts[threshold] = len(data["nodes"])
        assert Graph.objects.get(slug=slug).n_nodes == counts[threshold]
    # Neuronpedia's node threshold is the cumulative influence kept: a higher one keeps more nodes
    assert counts[0.5] < counts[0.8] < counts[0.95], counts
