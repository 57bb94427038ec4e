"""Every GraphRequest method of Neuronpedia's client 1.2.1 against a live memicos server, and the upload checks."""

import copy
import gzip
import json

import pytest
import requests
from neuronpedia.requests.graph_request import GraphRequest

from graphs.models import Graph, GraphPutRequest
from tests.graphs.conftest import TINY_ID


@pytest.fixture
def np_graphs(np_base, key, var_dir, tiny_graph_model):
    return GraphRequest(api_key=key)


def _graph(data, slug):
    g = copy.deepcopy(data)
    g["metadata"]["slug"] = slug
    return g


def test_the_client_uploads_gets_lists_and_deletes_a_graph(np_graphs, np_base, tiny_graph_json, user, var_dir):
    meta = np_graphs.upload(json.dumps(_graph(tiny_graph_json, "uploaded-1")))
    assert (meta.model_id, meta.slug, meta.prompt) == (TINY_ID, "uploaded-1", tiny_graph_json["metadata"]["prompt"])
    assert meta.prompt_tokens == tiny_graph_json["metadata"]["prompt_tokens"]
    graph = Graph.objects.get(model_id=TINY_ID, slug="uploaded-1")
    assert graph.creator == user and graph.n_nodes == len(tiny_graph_json["nodes"])
    assert not GraphPutRequest.objects.exists()  # the ticket is used up
    # the JSON URL the client got serves the same graph (gzip-encoded on the wire, as uploaded)
    served = requests.get(meta.json_url, headers={"X-Api-Key": np_graphs.api_key}).json()
    assert served["nodes"] == tiny_graph_json["nodes"] and served["metadata"]["slug"] == "uploaded-1"
    assert [g.slug for g in np_graphs.list_owned()] == ["uploaded-1"]
    assert np_graphs.get(TINY_ID, "uploaded-1") == meta
    np_graphs.delete(meta)
    assert not Graph.objects.exists()
    assert not list((var_dir / "graphs").rglob("*.json"))  # the stored object went with it
    with pytest.raises(requests.exceptions.HTTPError):
        np_graphs.get(TINY_ID, "uploaded-1")


def test_the_client_uploads_a_file_and_replaces_its_own_graph_by_slug(np_graphs, tiny_graph_json, tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(_graph(tiny_graph_json, "file-1")))
    np_graphs.upload_file(str(path))
    smaller = _graph(tiny_graph_json, "file-1")
    smaller["metadata"]["prompt"] = "edited"
    np_graphs.upload(json.dumps(smaller))
    assert Graph.objects.get(slug="file-1").prompt == "edited"
    assert len(list((tmp_path / "graphs").rglob("*.json"))) == 1  # the replaced object is gone


def test_the_client_generates_a_graph_with_the_models_transcoders(np_graphs, tiny_lm):
    meta = np_graphs.generate(TINY_ID, "The capital of France is", "gen-1", node_threshold=0.8)
    graph = Graph.objects.get(slug="gen-1")
    assert graph.status == Graph.Status.READY  # eager Celery: the job ran inside the request
    assert meta.prompt_tokens == graph.prompt_tokens and len(meta.prompt_tokens) == 6  # BOS + 5 tokens
    assert graph.replacement_score is not None and 0 <= graph.completeness_score <= 1
    assert graph.job.status == "SUCCEEDED" and graph.job.kind == "graph_generate"


def test_another_users_slug_cannot_be_taken_by_upload(np_graphs, np_base, other_key, tiny_graph_json):
    np_graphs.upload(json.dumps(_graph(tiny_graph_json, "mine")))
    with pytest.raises(Exception, match="Another user's graph"):
        GraphRequest(api_key=other_key).upload(json.dumps(_graph(tiny_graph_json, "mine")))


def _start(np_base, key, size=2048):
    r = requests.post(f"{np_base}/api/graph/signed-put", json={"filename": "x.json", "contentLength": size},
                      headers={"X-Api-Key": key})  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()


def _save(np_base, key, put_id):
    return requests.post(f"{np_base}/api/graph/save-to-db", json={"putRequestId": put_id}, headers={"X-Api-Key": key})


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"{not json", "not valid JSON"),
        (gzip.compress(b'{"metadata": {}}'), "metadata"),
        (b"\x1f\x8b\x08garbage", "not valid gzip"),
    ],
)
def test_a_malformed_upload_is_a_400_that_names_the_problem(np_base, key, var_dir, tiny_graph_model, body, problem):
    t = _start(np_base, key)
    assert requests.put(t["url"], data=body).status_code == 200
    r = _save(np_base, key, t["putRequestId"])
    assert r.status_code == 400 and problem in r.json()["message"], r.text
    assert not Graph.objects.exists()


def test_a_graph_traced_by_circuit_tracer_itself_uploads_with_the_client_and_opens(
    np_graphs, np_base, tiny_lm, tset_dir, tmp_path, client
):
    """A graph made elsewhere: circuit-tracer's own attribute + create_graph_files, not our generator."""
    import torch

    from inference.runtime import graphs as G
    from inference.runtime import transcoders as T
    from inference.runtime.circuit_tracer_compat import ct_import

    rm = G.replacement_model_build(tiny_lm, T.transcoder_set_load(tset_dir, scan=TINY_ID))
    rm.cfg.tokenizer_name = str(tmp_path / "tokenizer")  # create_graph_files loads the tokenizer by name
    tiny_lm.tokenizer.save_pretrained(rm.cfg.tokenizer_name)
    with torch.enable_grad():
        traced = ct_import("attribution.attribute").attribute(
            G.prompt_tokens(tiny_lm, "The capital of France is"), rm, max_feature_nodes=100, batch_size=64
        )
    ct_import("utils.create_graph_files").create_graph_files(traced, "ct-made", tmp_path / "ct", scan=TINY_ID)
    path = tmp_path / "ct" / "ct-made.json"
    written = json.loads(path.read_text())
    ids = [n["node_id"] for n in written["nodes"]]
    assert len(ids) == len(set(ids)), "this prompt's graph has no id collision; the next test covers one"
    meta = np_graphs.upload_file(str(path))
    assert (meta.model_id, meta.slug) == (TINY_ID, "ct-made")
    served = requests.get(meta.json_url, headers={"X-Api-Key": np_graphs.api_key}).json()
    assert served["nodes"] == written["nodes"] and served["links"] == written["links"]
    assert client.get(f"/{TINY_ID}/graph?slug=ct-made").status_code == 200
    graph = Graph.objects.get(slug="ct-made")
    assert (graph.n_nodes, graph.n_links) == (len(written["nodes"]), len(written["links"]))


def test_a_graph_shaped_as_neuronpedia_org_serves_it_uploads_and_opens(np_graphs, tiny_graph_json, client):
    """neuronpedia.org's graphs carry what our generator does not write: `info`, features on a remote base URL,
    `qk_only_nodes`, per-node extras; the schema allows extra keys, so they upload and are served unchanged."""
    data = _graph(tiny_graph_json, "np-shaped")
    data["metadata"]["info"] = {
        "description": "uploaded from neuronpedia.org", "creator_name": "someone", "source_urls": [],
        "generator": {"name": "circuit-tracer by Hanna & Piotrowski", "version": "0.1", "url": "https://example.org"},
        "create_time_ms": 1_750_000_000_000,
    }  # fmt: skip
    data["metadata"]["feature_details"] = {"feature_json_base_url": "https://example.org/features/tiny"}
    data["metadata"]["transcoder_list"] = []
    data["qk_only_nodes"] = []
    for node in data["nodes"]:
        node["layer"] = str(node["layer"])
        node["reverse_ctx_idx"] = 0
    data["qParams"] = {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}
    meta = np_graphs.upload(json.dumps(data))
    served = requests.get(meta.json_url, headers={"X-Api-Key": np_graphs.api_key}).json()
    assert served == data
    page = client.get(f"/{TINY_ID}/graph?slug=np-shaped")
    assert page.status_code == 200 and b"np-shaped" in page.content


def test_an_upload_whose_error_node_shares_a_layer_0_features_id_is_refused_naming_why(
    np_base, key, var_dir, tiny_graph_model, tiny_graph_json
):
    data = copy.deepcopy(tiny_graph_json)
    feature = next(n for n in data["nodes"] if n["feature_type"] == "cross layer transcoder")
    error = next(n for n in data["nodes"] if n["feature_type"] == "mlp reconstruction error")
    error["node_id"] = feature["node_id"]  # what circuit-tracer 0.5.0 writes for 0_<layer>_<pos>
    body = gzip.compress(json.dumps(data).encode())
    t = _start(np_base, key, size=max(1024, len(body)))
    assert requests.put(t["url"], data=body).status_code == 200
    r = _save(np_base, key, t["putRequestId"])
    assert r.status_code == 400, r.text
    assert "not unique" in r.json()["message"] and "error node and a layer-0 feature" in r.json()["message"]


def test_an_upload_with_duplicate_node_ids_or_an_unknown_model_is_refused(np_base, key, var_dir, tiny_graph_model,
                                                                         tiny_graph_json):  # fmt: skip
    dup = copy.deepcopy(tiny_graph_json)
    dup["nodes"].append(dict(dup["nodes"][0]))
    unknown = _graph(tiny_graph_json, "x")
    unknown["metadata"]["scan"] = "no-such-model"
    for data, problem in ((dup, "unique"), (unknown, "ERR_MODEL_DOES_NOT_EXIST")):
        body = gzip.compress(json.dumps(data).encode())
        t = _start(np_base, key, size=max(1024, len(body)))
        assert requests.put(t["url"], data=body).status_code == 200
        r = _save(np_base, key, t["putRequestId"])
        assert r.status_code == 400 and problem in r.json()["message"], r.text


def test_an_oversized_upload_is_refused_at_signing_and_at_the_put(np_base, key, var_dir, settings):
    settings.GRAPH_UPLOAD_MAX_BYTES = 4096
    r = requests.post(f"{np_base}/api/graph/signed-put", json={"filename": "x.json", "contentLength": 5000},
                      headers={"X-Api-Key": key})  # fmt: skip
    assert r.status_code == 400 and "contentLength" in r.json()["message"]
    t = _start(np_base, key, size=4000)
    r = requests.put(t["url"], data=b"x" * 5000)
    assert r.status_code == 400 and "upload limit" in r.json()["message"]
    t = _start(np_base, key, size=1024)  # a URL is signed for a size: more than that is refused too
    r = requests.put(t["url"], data=b"x" * 2000)
    assert r.status_code == 400 and "contentLength" in r.json()["message"], r.text
    r = requests.post(f"{np_base}/api/graph/signed-put", json={"filename": "x.json", "contentLength": 10},
                      headers={"X-Api-Key": key})  # fmt: skip
    assert r.status_code == 400


def test_upload_routes_need_an_api_key(np_base, var_dir):
    r = requests.post(f"{np_base}/api/graph/signed-put", json={"filename": "x.json", "contentLength": 2048})
    assert r.status_code == 401 and "message" in r.json()
    r = requests.put(f"{np_base}/api/graph/put/00000000-0000-0000-0000-000000000000", data=b"x")
    assert r.status_code == 404
