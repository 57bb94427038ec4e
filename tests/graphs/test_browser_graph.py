"""The graph page in Chromium: it draws; clicking a node shows its dashboard; pins and supernodes survive a reload
through the URL."""

import gzip
import json
from urllib.parse import parse_qs, urlparse

import pytest

from features.models import Feature, Source
from graphs.models import Graph
from graphs.services.storage import graph_object_put
from tests.graphs.conftest import TINY_ID

pytestmark = pytest.mark.slow


@pytest.fixture
def page_graph(var_dir, tiny_graph_model, tiny_graph_json, user):
    for source in Source.objects.filter(model=tiny_graph_model):
        Feature.objects.bulk_create([Feature(model=tiny_graph_model, source=source, index=i) for i in range(64)])
    data = json.loads(json.dumps(tiny_graph_json))
    data["metadata"]["slug"] = "br"
    graph_object_put(key="user-graphs/br.json", body=gzip.compress(json.dumps(data).encode()))
    Graph.objects.create(
        model=tiny_graph_model, slug="br", creator=user, prompt=data["metadata"]["prompt"], storage_key="user-graphs/br.json",
        prompt_tokens=data["metadata"]["prompt_tokens"], n_nodes=len(data["nodes"]), source_set_name="tc-tiny",
    )  # fmt: skip
    return data


def _ready(page):
    page.wait_for_selector("body[data-graph-drawn]", state="attached", timeout=20_000)


def test_the_graph_page_draws_shows_a_dashboard_and_keeps_pins_and_supernodes_in_the_url(live_server, page, page_graph):
    features = [n for n in page_graph["nodes"] if n["feature_type"] == "cross layer transcoder"]
    logit = next(n for n in page_graph["nodes"] if n["feature_type"] == "logit")
    assert len(features) >= 2
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live_server.url}/{TINY_ID}/graph?slug=br&pruningThreshold=1")
    _ready(page)
    # every node of the graph is drawn at threshold 1, and the links are painted on the canvas
    assert page.locator("#graph-svg .graph-node").count() == len(page_graph["nodes"])
    painted = page.evaluate(
        "() => { const c = document.getElementById('graph-links'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++;"
        " return n; }"
    )
    assert painted > 1000
    # click a feature: its dashboard opens in the side pane
    first = features[0]
    layer, index, _ = first["node_id"].split("_")
    page.locator(f'[data-node-id="{first["node_id"]}"]').click(force=True)
    frame = page.locator("iframe.graph-dashboard")
    assert f"/{TINY_ID}/{layer}-tc-tiny/{index}/?embed=true" in frame.get_attribute("src")
    body = page.frame_locator("iframe.graph-dashboard").locator("body")
    body.wait_for(timeout=15_000)
    assert f"{layer}-tc-tiny" in body.inner_text()
    # pin two nodes (shift-click and the side pane's button), group them into a named supernode
    page.locator(f'[data-node-id="{features[1]["node_id"]}"]').click(modifiers=["Shift"], force=True)
    page.locator(f'[data-node-id="{logit["node_id"]}"]').click(force=True)
    page.locator("#graph-pin").click()
    assert page.locator("#graph-pins li").count() == 2
    page.locator("#graph-pins input[type=checkbox]").nth(0).check()
    page.locator("#graph-pins input[type=checkbox]").nth(1).check()
    page.fill("#graph-supernode-name", "answer path")
    page.click("#graph-group")
    q = parse_qs(urlparse(page.url).query)
    assert q["pinnedIds"] == [f"{features[1]['node_id']},{logit['node_id']}"]
    assert json.loads(q["supernodes"][0]) == [["answer path", features[1]["node_id"], logit["node_id"]]]
    assert q["clickedId"] == [logit["node_id"]]
    page.reload()
    _ready(page)
    assert page.locator("#graph-pins li").count() == 2
    assert page.locator('#graph-supernodes li[data-supernode="answer path"]').count() == 1
    assert page.locator(".graph-node.pinned").count() == 2
    assert page.locator(".graph-node.clicked").get_attribute("data-node-id") == logit["node_id"]
    assert "Output" in page.locator(".graph-detail-title").inner_text()
    assert errors == []


def test_the_embed_view_has_no_site_chrome(live_server, page, page_graph):
    page.goto(f"{live_server.url}/{TINY_ID}/graph?slug=br&embed=true")
    _ready(page)
    assert page.locator("header.site-header").count() == 0
    assert page.locator("#graph-svg .graph-node").count() > 0


def test_a_graph_generated_from_the_models_page_opens_when_its_job_finishes(
    live_server, page, tiny_graph_model, var_dir
):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live_server.url}/{TINY_ID}/graph")
    page.fill("#graph-generate textarea[name=prompt]", "The capital of France is")
    page.fill("#graph-generate input[name=slug]", "from-page")
    page.fill("#graph-generate input[name=maxFeatureNodes]", "200")
    page.click("#graph-generate button[type=submit]")
    # the form follows the job (static/js/jobs.js) and opens the graph when it has succeeded
    page.wait_for_url("**/graph?slug=from-page", timeout=120_000)
    _ready(page)
    assert page.locator("#graph-svg .graph-node").count() > 0
    assert Graph.objects.get(slug="from-page").status == "READY"
    page.goto(f"{live_server.url}/{TINY_ID}/graph")
    assert page.locator('tr[data-slug="from-page"]').count() == 1
    assert errors == []


def test_a_graph_generated_on_a_worker_shows_its_jobs_progress_live_on_the_page_then_opens(
    live_server, page, tiny_graph_model, start_worker, var_dir
):
    start_worker(["gpu_batch"], name="graph-page", MEMICOS_VAR_DIR=var_dir)
    page.goto(f"{live_server.url}/{TINY_ID}/graph")
    page.fill("#graph-generate textarea[name=prompt]", "The capital of France is")
    page.fill("#graph-generate input[name=slug]", "live")
    page.fill("#graph-generate input[name=maxFeatureNodes]", "200")
    page.click("#graph-generate button[type=submit]")
    # answered at once (202): the box follows the job on the worker while it loads the model and traces
    page.wait_for_function(
        "() => { const s = document.querySelector('.graph-progress:not([hidden]) [data-job-status]');"
        " return s && ['pending', 'running'].includes(s.textContent); }",
        timeout=30_000,
    )
    page.wait_for_url("**/graph?slug=live", timeout=120_000)
    _ready(page)
    assert Graph.objects.get(slug="live").status == "READY"


def test_pinned_features_can_be_zeroed_or_clamped_from_the_graph_page_to_compare_the_next_tokens(
    live_server, page, page_graph
):
    feature = next(n for n in page_graph["nodes"] if n["feature_type"] == "cross layer transcoder")
    layer, index, pos = (int(v) for v in feature["node_id"].split("_"))
    page.goto(f"{live_server.url}/{TINY_ID}/graph?slug=br&pruningThreshold=1&pinnedIds={feature['node_id']}")
    _ready(page)
    with page.expect_request("**/api/steer-logits") as sent:
        page.click("#graph-steer-run")
    assert sent.value.post_data_json["features"] == [
        {"layer": layer, "index": index, "token_active_position": pos, "steer_position": pos, "ablate": True}
    ]
    page.wait_for_selector("#graph-steer-out:not([hidden])", timeout=60_000)
    assert page.locator("#graph-steer-default-top li").count() == 5
    assert page.locator("#graph-steer-steered-top li").count() == 5
    assert page.locator("#graph-steer-default").inner_text() != ""
    zeroed = page.locator("#graph-steer-steered-top").inner_text()
    # clamp to a value: the amount is an activation now, not a multiplier
    page.select_option("#graph-steer-mode", "value")
    assert page.locator("#graph-steer-amount-label").inner_text() == "Value"
    page.fill("#graph-steer-mult", "40")
    with page.expect_response("**/api/steer-logits") as answered:
        page.click("#graph-steer-run")
    assert answered.value.status == 200
    assert answered.value.request.post_data_json["features"][0]["value"] == 40
    page.wait_for_function(
        "z => document.getElementById('graph-steer-steered-top').innerText !== z", arg=zeroed, timeout=10_000
    )


def test_only_the_owner_edits_a_nodes_label_on_the_page_and_never_in_an_embed(
    live_server, page, page_graph, user, other_user, client
):
    from tests.conftest import browser_sign_in

    node = next(n for n in page_graph["nodes"] if n["feature_type"] == "cross layer transcoder")["node_id"]
    url = f"{live_server.url}/{TINY_ID}/graph?slug=br&pruningThreshold=1&clickedId={node}"
    browser_sign_in(page, live_server, other_user)
    page.goto(url)
    _ready(page)
    assert page.locator(".graph-detail-title").count() == 1 and page.locator("#graph-label").count() == 0
    browser_sign_in(page, live_server, user)
    page.goto(url + "&embed=true")
    _ready(page)
    assert page.locator(".graph-detail-title").count() == 1 and page.locator("#graph-label").count() == 0
    page.goto(url)
    _ready(page)
    page.fill("#graph-label", "capital-city feature")
    with page.expect_response("**/api/graph/clerps") as saved:
        page.click("#graph-label-save")
    assert saved.value.status == 200
    stored = client.get(f"/api/graph/{TINY_ID}/br/json").json()["nodes"]
    assert next(n for n in stored if n["node_id"] == node)["clerp"] == "capital-city feature"
    page.reload()
    _ready(page)
    assert page.locator("#graph-label").input_value() == "capital-city feature"


LONG_PROMPT = (
    "The quick brown fox jumps over the lazy dog because the capital of France is Paris and the river Seine is long"
    " and slow, while the old man in the boat sings a song about the sea and the"
)


def test_a_graph_of_over_5000_links_draws_every_node_and_marks_its_first_draw(
    live_server, page, tiny_model, tiny_lm, var_dir, tmp_path
):
    """A real graph of over 5,000 links draws completely, and the page marks when (bench/graph.py's draw part
    times it against its target)."""
    from inference.runtime import graphs as G
    from inference.runtime import transcoders as T
    from inference.runtime.corpus import corpus_contexts

    contexts = corpus_contexts(tiny_lm.tokenizer, "brown", context_size=32, max_tokens=16_384)
    params = T.TranscoderParams(width=512, k=16, tokens=8192, batch_size_tokens=256, eval_contexts=8, lr=3e-3)
    T.transcoders_train(tiny_lm, contexts, params, tmp_path / "wide", model_name=TINY_ID)
    rm = G.replacement_model_build(tiny_lm, T.transcoder_set_load(tmp_path / "wide", scan=TINY_ID))
    result = G.graph_generate(tiny_lm, rm, prompt=LONG_PROMPT, model_id=TINY_ID, slug="big",
                              params=G.GraphParams(node_threshold=0.95, max_feature_nodes=3000))  # fmt: skip
    assert result.n_links >= 5000, result.n_links
    graph_object_put(key="big.json", body=gzip.compress(json.dumps(result.graph).encode()))
    Graph.objects.create(model=tiny_model, slug="big", prompt=LONG_PROMPT, storage_key="big.json",
                         prompt_tokens=result.prompt_tokens, n_nodes=result.n_nodes, n_links=result.n_links)  # fmt: skip
    page.goto(f"{live_server.url}/{TINY_ID}/graph?slug=big&pruningThreshold=1")
    _ready(page)
    assert page.locator("#graph-svg .graph-node").count() == result.n_nodes
    marks = page.evaluate("['graph:data', 'graph:drawn'].map(n => performance.getEntriesByName(n)[0].startTime)")
    assert 0 < marks[0] <= marks[1], marks  # JSON parsed, then drawn
    print(f"time to first draw, {result.n_links} links, {result.n_nodes} nodes: {marks[1]:.0f} ms")
