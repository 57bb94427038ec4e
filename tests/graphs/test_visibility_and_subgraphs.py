"""PRIVATE and UNLISTED graphs on every read path; owners edit and delete; saved subgraphs."""

import gzip
import json

import pytest

from graphs.models import Graph, Subgraph
from graphs.services.storage import graph_object_put
from tests.graphs.conftest import TINY_ID


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


@pytest.fixture
def stored_graph(var_dir, tiny_graph_model, tiny_graph_json, user):
    """make(slug, visibility): a READY graph of `user` with the real tiny graph JSON in the store."""

    def make(slug, visibility="PUBLIC", owner=user):
        data = json.loads(json.dumps(tiny_graph_json))
        data["metadata"]["slug"] = slug
        key = f"user-graphs/{owner.pk}/{slug}.json"
        graph_object_put(key=key, body=gzip.compress(json.dumps(data).encode()))
        return Graph.objects.create(
            model=tiny_graph_model, slug=slug, creator=owner, visibility=visibility, prompt=data["metadata"]["prompt"],
            prompt_tokens=data["metadata"]["prompt_tokens"], storage_key=key, n_nodes=len(data["nodes"]),
            source_set_name="tc-tiny",
        )  # fmt: skip

    return make


def _routes(client, graph):
    """Every way to read a graph or act on it: (name, response)."""
    m, s = graph.model_id, graph.slug
    sub = Subgraph.objects.create(graph=graph, user=graph.creator, pinned_ids=[])
    return [
        ("get", client.get(f"/api/graph/{m}/{s}")),
        ("json", client.get(f"/api/graph/{m}/{s}/json")),
        ("page", client.get(f"/{m}/graph?slug={s}")),
        ("embed", client.get(f"/{m}/graph?slug={s}&embed=true")),
        ("subgraph page", client.get(f"/{m}/graph?subgraph={sub.pk}")),
        ("subgraph get", client.get(f"/api/graph/subgraph/{sub.pk}")),
        ("subgraph list", post(client, "/api/graph/subgraph/list", {"modelId": m, "slug": s})),
        ("subgraph save", post(client, "/api/graph/subgraph/save", {"modelId": m, "slug": s, "pinnedIds": []})),
        ("clerps", post(client, "/api/graph/clerps", {"modelId": m, "slug": s, "clerps": []})),
        ("delete", post(client, "/api/graph/delete", {"modelId": m, "slug": s})),
    ]


def test_a_private_graph_is_invisible_to_others_on_every_route(client, stored_graph, other_user):
    graph = stored_graph("secret", "PRIVATE")
    client.force_login(other_user)
    for name, r in _routes(client, graph):
        assert r.status_code == 404, (name, r.status_code)
    for path in ("/api/graph/list", f"/api/graph/list?modelId={TINY_ID}", f"/{TINY_ID}/graph", "/graphs/"):
        assert b"secret" not in client.get(path).content, path
    assert post(client, "/api/graph/list-owned", {}).json() == []
    client.logout()
    for name, r in _routes(client, graph):
        assert r.status_code in (401, 404), (name, r.status_code)
    assert Graph.objects.filter(pk=graph.pk).exists()


def test_the_owner_reads_their_private_graph_everywhere(client, stored_graph, user):
    graph = stored_graph("secret", "PRIVATE")
    client.force_login(user)
    assert client.get(f"/api/graph/{TINY_ID}/secret").json()["visibility"] == "PRIVATE"
    assert client.get(f"/api/graph/{TINY_ID}/secret/json").json()["metadata"]["slug"] == "secret"
    assert [g["slug"] for g in client.get("/api/graph/list").json()] == ["secret"]
    assert b"secret" in client.get(f"/{TINY_ID}/graph").content
    post(client, "/api/graph/delete", {"modelId": TINY_ID, "slug": "secret"})
    assert not Graph.objects.filter(pk=graph.pk).exists()


def test_an_unlisted_graph_is_readable_by_link_but_never_listed(client, stored_graph, other_user):
    stored_graph("hidden", "UNLISTED")
    stored_graph("open", "PUBLIC")
    assert client.get(f"/api/graph/{TINY_ID}/hidden").status_code == 200
    assert client.get(f"/{TINY_ID}/graph?slug=hidden").status_code == 200
    assert [g["slug"] for g in client.get("/api/graph/list").json()] == ["open"]
    assert b"hidden" not in client.get("/graphs/").content and b"open" in client.get("/graphs/").content


def test_only_the_owner_deletes_a_public_graph_or_edits_its_labels(client, stored_graph, other_user, user):
    graph = stored_graph("shared")
    client.force_login(other_user)
    assert post(client, "/api/graph/delete", {"modelId": TINY_ID, "slug": "shared"}).status_code == 403
    node = client.get(f"/api/graph/{TINY_ID}/shared/json").json()["nodes"][0]["node_id"]
    r = post(client, "/api/graph/clerps", {"modelId": TINY_ID, "slug": "shared", "clerps": [[node, "mine now"]]})
    assert r.status_code == 403
    client.force_login(user)
    r = post(client, "/api/graph/clerps", {"modelId": TINY_ID, "slug": "shared", "clerps": [[node, "a label"]]})
    assert r.status_code == 200, r.content
    nodes = client.get(f"/api/graph/{TINY_ID}/shared/json").json()["nodes"]
    assert next(n for n in nodes if n["node_id"] == node)["clerp"] == "a label"
    assert Graph.objects.filter(pk=graph.pk).exists()


def test_subgraphs_are_saved_listed_overwritten_and_deleted_by_their_owner(client, stored_graph, user, other_user):
    stored_graph("sg")
    client.force_login(user)
    body = {"modelId": TINY_ID, "slug": "sg", "displayName": "path", "pinnedIds": ["a", "b"],
            "supernodes": [["group", "a", "b"]], "clerps": [["a", "x"]], "pruningThreshold": 0.7}  # fmt: skip
    sid = post(client, "/api/graph/subgraph/save", body).json()["subgraphId"]
    r = post(client, "/api/graph/subgraph/save", {**body, "pinnedIds": ["a"], "overwriteId": sid})
    assert r.json()["subgraphId"] == sid
    listed = post(client, "/api/graph/subgraph/list", {"modelId": TINY_ID, "slug": "sg"}).json()["subgraphs"]
    assert [(s["id"], s["pinnedIds"], s["supernodes"]) for s in listed] == [(sid, ["a"], [["group", "a", "b"]])]
    client.force_login(other_user)
    assert client.get(f"/api/graph/subgraph/{sid}").json()["pinnedIds"] == ["a"]  # shared with its graph
    assert post(client, "/api/graph/subgraph/delete", {"subgraphId": sid}).status_code == 403
    assert post(client, "/api/graph/subgraph/save", {**body, "overwriteId": sid}).status_code == 403
    client.force_login(user)
    assert post(client, "/api/graph/subgraph/delete", {"subgraphId": sid}).json()["success"] is True
    assert not Subgraph.objects.exists()


def test_another_users_private_transcoder_set_is_never_used_for_a_graph_or_an_intervention(
    client, tiny_graph_model, tset_dir, user, other_user
):
    from features.models import SourceSet
    from graphs.services.graphs import graph_source_set
    from graphs.services.transcoders import transcoder_set_register

    transcoder_set_register(model=tiny_graph_model, set_dir=tset_dir, set_name="tc-secret", dataset="brown")
    SourceSet.objects.filter(name="tc-secret").update(visibility="PRIVATE", creator=other_user)
    # tc-secret is the newest set: the default for its owner only
    assert graph_source_set(model=tiny_graph_model, user=other_user).name == "tc-secret"
    assert graph_source_set(model=tiny_graph_model, user=user).name == "tc-tiny"
    assert graph_source_set(model=tiny_graph_model, user=None).name == "tc-tiny"
    client.force_login(user)
    body = {"modelId": TINY_ID, "prompt": "The capital of France is", "slug": "g-secret", "sourceSetName": "tc-secret"}
    r = post(client, "/api/graph/generate", body)
    assert r.status_code == 400 and "tc-secret" in r.json()["message"], r.content
    feature = {"layer": 0, "index": 1, "token_active_position": 1, "steer_position": 1, "ablate": True}
    body = {"modelId": TINY_ID, "prompt": "The capital", "sourceSetName": "tc-secret", "features": [feature]}
    r = post(client, "/api/steer-logits", body)
    assert r.status_code == 400 and "tc-secret" in r.json()["message"], r.content
    assert not Graph.objects.exists()
    SourceSet.objects.filter(name="tc-secret").update(visibility="UNLISTED")  # readable by name, never a default
    assert graph_source_set(model=tiny_graph_model, name="tc-secret", user=user).name == "tc-secret"
    assert graph_source_set(model=tiny_graph_model, user=user).name == "tc-tiny"


def test_a_subgraph_of_a_public_graph_on_a_private_model_is_hidden_from_others(client, stored_graph, other_user):
    graph = stored_graph("on-private")
    sub = Subgraph.objects.create(graph=graph, user=graph.creator, pinned_ids=["a"])
    assert client.get(f"/api/graph/subgraph/{sub.pk}").status_code == 200
    graph.model.visibility, graph.model.creator = "PRIVATE", graph.creator
    graph.model.save(update_fields=["visibility", "creator"])
    for viewer in (None, other_user):
        if viewer:
            client.force_login(viewer)
        assert client.get(f"/api/graph/subgraph/{sub.pk}").status_code == 404
        assert client.get(f"/{TINY_ID}/graph?subgraph={sub.pk}").status_code == 404
    client.force_login(graph.creator)
    assert client.get(f"/api/graph/subgraph/{sub.pk}").json()["pinnedIds"] == ["a"]


def test_graphs_are_listed_per_user_on_the_page_and_in_the_api(client, stored_graph, user, other_user):
    stored_graph("mine")
    stored_graph("theirs", owner=other_user)
    stored_graph("their-secret", "PRIVATE", owner=other_user)
    api = client.get(f"/api/graph/list?user={other_user.username}").json()
    assert [g["slug"] for g in api] == ["theirs"]
    page = client.get(f"/graphs/?user={other_user.username}").content.decode()
    assert "theirs" in page and "mine" not in page and "their-secret" not in page
    assert {g["slug"] for g in client.get("/api/graph/list").json()} == {"mine", "theirs"}


def test_generate_checks_its_limits_and_slugs_before_queuing(client, tiny_graph_model, user):
    client.force_login(user)
    base = {"modelId": TINY_ID, "prompt": "The capital of France is", "slug": "g1"}
    for extra, word in (({"nodeThreshold": 0.3}, "nodeThreshold"), ({"maxNLogits": 50}, "maxNLogits"),
                        ({"slug": "a.b"}, "slug"), ({"prompt": "x" * 10_001}, "prompt")):  # fmt: skip
        r = post(client, "/api/graph/generate", {**base, **extra})
        assert r.status_code == 400 and word in r.json()["message"], (extra, r.content)
    assert not Graph.objects.exists()
    r = post(client, "/api/graph/generate", {**base, "modelId": "nope"})
    assert r.status_code == 404
    Graph.objects.create(model=tiny_graph_model, slug="taken", creator=user, prompt="x")
    r = post(client, "/api/graph/generate", {**base, "slug": "taken"})
    assert r.status_code == 400 and "Model + Slug/ID Exists" in r.json()["message"], r.content


def test_a_public_graph_is_reached_by_links_from_the_header_the_model_page_and_its_transcoder_set(client, stored_graph):
    """Graphs were reachable only by typing their URL: no page linked to a graph list."""
    graph = stored_graph("linked")
    model, page = graph.model_id, f"/{graph.model_id}/graph?slug=linked"

    def links(path):
        response = client.get(path, follow=True)
        assert response.status_code == 200, path
        return response.content.decode()

    assert 'href="/graphs/"' in links("/")  # the header, on every page
    assert page in links("/graphs/")
    assert f'href="/{model}/graph"' in links(f"/{model}/")
    assert f'href="/{model}/graph"' in links(f"/{model}/tc-tiny/")
    assert page in links(f"/{model}/graph")
    for path in ("/graphs/", f"/{model}/graph", page):  # the header marks its Graphs tab on every graph page
        assert '<a href="/graphs/" class="active">Graphs</a>' in links(path), path
    assert 'class="active">Graphs' not in links(f"/{model}/")


def test_a_transcoder_sets_pages_name_the_hooks_each_layer_reads_and_writes(client, tiny_graph_model):
    page = client.get(f"/{tiny_graph_model.id}/tc-tiny/").content.decode()
    assert "blocks.1.hook_resid_mid → blocks.1.hook_mlp_out" in page
    layer = client.get(f"/{tiny_graph_model.id}/0-tc-tiny/").content.decode()
    assert "blocks.0.hook_resid_mid → blocks.0.hook_mlp_out" in layer
