"""Graph generation through a real gpu_batch worker process on the tiny model (slow: real processes)."""

import json

import pytest
import requests
from neuronpedia.requests.graph_request import GraphRequest

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
                    "wait": False,
                }
            ),  # fmt: skip
            content_type="application/json",
        )
        assert r.status_code == 202, r.content
        assert r.json()["status"] == "PENDING" and r.json()["numNodes"] is None  # wait: false: answered at once
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


def test_generate_waits_for_the_worker_like_neuronpedias_and_says_when_it_stops_waiting_or_fails(
    start_worker, tiny_graph_model, np_base, key, user, settings, tmp_path
):
    """Neuronpedia's client posts generate and then gets the graph at once: the POST must wait for the job."""
    settings.VAR_DIR = tmp_path
    headers = {"X-Api-Key": key}
    base = {"modelId": TINY_ID, "prompt": "The capital of France is", "maxFeatureNodes": 100}
    # no worker yet: the wait runs out and the answer says which job to follow
    settings.GRAPH_GENERATE_WAIT_S = 1
    r = requests.post(f"{np_base}/api/graph/generate", json={**base, "slug": "queued"}, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "PENDING" and r.json()["jobId"] == Graph.objects.get(slug="queued").job_id
    settings.GRAPH_GENERATE_WAIT_S = 240
    # not waited for: a solo worker busy with the queued job answers no ping; generate waits for its own job
    start_worker(["gpu_batch"], name="graphs-wait", wait=False, MEMICOS_VAR_DIR=tmp_path)
    meta = GraphRequest(api_key=key).generate(TINY_ID, "The capital of France is", "client-1")
    graph = Graph.objects.get(slug="client-1")
    assert graph.status == Graph.Status.READY and graph.job.status == "SUCCEEDED"  # a real worker finished it
    assert meta.slug == "client-1" and meta.prompt_tokens == graph.prompt_tokens
    r = requests.post(f"{np_base}/api/graph/generate", json={**base, "slug": "direct"}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "READY" and body["numLinks"] == Graph.objects.get(slug="direct").n_links > 0
    assert requests.get(body["s3url"], headers=headers).json()["metadata"]["slug"] == "direct"
    # a prompt over the token limit fails in the job: a 422 that says why, not a 500
    long_prompt = " ".join(["word"] * 80)
    r = requests.post(f"{np_base}/api/graph/generate", json={**base, "prompt": long_prompt, "slug": "long"},
                      headers=headers)  # fmt: skip
    assert r.status_code == 422, r.text
    assert r.json()["status"] == "FAILED" and "the limit is 64" in r.json()["message"], r.json()
    assert Graph.objects.get(slug="long").status == Graph.Status.FAILED
