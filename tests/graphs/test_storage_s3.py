"""Graph JSON in an S3-compatible bucket (moto server on loopback) when GRAPHS_S3_BUCKET is set."""

import gzip
import json
import uuid

import pytest
import requests
from neuronpedia.requests.graph_request import GraphRequest

from graphs.models import Graph
from tests.graphs.conftest import TINY_ID


@pytest.fixture
def graph_bucket(s3_client, s3_endpoint, monkeypatch):
    name = f"graphs-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=name)
    monkeypatch.setenv("GRAPHS_S3_BUCKET", name)
    monkeypatch.setenv("GRAPHS_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    return name


def test_an_uploaded_graph_is_stored_in_the_bucket_served_from_it_and_deleted_with_its_row(
    np_base,
    key,
    graph_bucket,
    s3_client,
    tiny_graph_model,
    tiny_graph_json,
    var_dir,
):
    client = GraphRequest(api_key=key)
    data = json.loads(json.dumps(tiny_graph_json))
    data["metadata"]["slug"] = "in-s3"
    meta = client.upload(json.dumps(data))
    graph = Graph.objects.get(slug="in-s3")
    stored = s3_client.get_object(Bucket=graph_bucket, Key=graph.storage_key)["Body"].read()
    assert json.loads(gzip.decompress(stored))["metadata"]["slug"] == "in-s3"
    assert not (var_dir / "graphs").exists()  # nothing written locally
    assert client.get(TINY_ID, "in-s3") == meta
    assert requests.get(meta.json_url, headers={"X-Api-Key": key}).json()["nodes"] == data["nodes"]
    client.delete(meta)
    assert s3_client.list_objects_v2(Bucket=graph_bucket).get("KeyCount", 0) == 0
