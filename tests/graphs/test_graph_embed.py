"""The graph page as an embed: `?embed=true` on a graph (not on the graph list) drops the chrome and may be framed
under EMBED_FRAME_ANCESTORS; the Embed button's snippet carries the URL's state; a PRIVATE graph is never served
to others, embed or not. Through Django's client, then in Chromium from a second origin."""

import html
import json
import re
import time
from urllib.parse import parse_qs, urlparse

import pytest

from graphs.models import Subgraph
from tests.features.test_browser_pages import other_site  # noqa: F401 (fixture)
from tests.graphs.conftest import TINY_ID
from tests.graphs.test_browser_graph import _ready, page_graph  # noqa: F401 (fixture)
from tests.graphs.test_visibility_and_subgraphs import stored_graph  # noqa: F401 (fixture)


def _snippet_src(page_html: str) -> str:
    m = re.search(r"&lt;iframe src=&quot;(.*?)&quot;", page_html) or re.search(r'&lt;iframe src="(.*?)"', page_html)
    assert m, "no embed snippet on the page"
    return html.unescape(html.unescape(m.group(1)))


def test_a_graph_embed_may_be_framed_and_drops_the_chrome_and_the_editing_tools(client, stored_graph, user):  # noqa: F811
    stored_graph("open")
    response = client.get(f"/{TINY_ID}/graph?slug=open&embed=true")
    assert response.status_code == 200
    assert "X-Frame-Options" not in response
    assert "frame-ancestors *" in response["Content-Security-Policy"]
    page = response.content.decode()
    assert 'class="site-header"' not in page and 'id="graph-svg"' in page
    assert 'id="embed-button"' not in page and 'id="graph-steer"' not in page
    client.force_login(user)
    assert 'id="graph-subgraph-save"' not in client.get(f"/{TINY_ID}/graph?slug=open&embed=true").content.decode()


def test_the_graph_page_and_the_graph_list_stay_unframable(client, stored_graph):  # noqa: F811
    stored_graph("open")
    for path in (f"/{TINY_ID}/graph?slug=open", f"/{TINY_ID}/graph?embed=true", f"/{TINY_ID}/graph"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"], path
        assert 'class="site-header"' in response.content.decode(), path


def test_the_graph_embed_follows_the_frame_ancestors_setting(client, stored_graph, settings):  # noqa: F811
    stored_graph("open")
    settings.EMBED_FRAME_ANCESTORS = "https://blog.example.org"
    response = client.get(f"/{TINY_ID}/graph?slug=open&embed=true")
    assert "frame-ancestors https://blog.example.org" in response["Content-Security-Policy"]
    settings.EMBED_FRAME_ANCESTORS = ""
    response = client.get(f"/{TINY_ID}/graph?slug=open&embed=true")
    assert response["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_the_embed_snippet_carries_the_urls_state(client, stored_graph):  # noqa: F811
    stored_graph("open")
    state = {
        "pinnedIds": "0_1_2,E_5_0",
        "supernodes": json.dumps([["path", "0_1_2", "E_5_0"]]),
        "clickedId": "0_1_2",
        "pruningThreshold": "0.55",
    }
    query = "&".join(f"{k}={v}" for k, v in state.items())
    page = client.get(f"/{TINY_ID}/graph?slug=open&{query}&unrelated=1").content.decode()
    assert 'id="embed-button"' in page
    src = urlparse(_snippet_src(page))
    assert (src.scheme, src.netloc, src.path) == ("http", "testserver", f"/{TINY_ID}/graph")
    q = {k: v[0] for k, v in parse_qs(src.query).items()}
    assert q == {"slug": "open", **state, "embed": "true"}


def test_a_private_graph_is_not_served_as_an_embed_to_others(client, stored_graph, user, other_user):  # noqa: F811
    graph = stored_graph("secret", "PRIVATE")
    sub = Subgraph.objects.create(graph=graph, user=user, pinned_ids=[])
    paths = [f"/{TINY_ID}/graph?slug=secret&embed=true", f"/{TINY_ID}/graph?subgraph={sub.pk}&embed=true"]
    for actor in (None, other_user):
        if actor:
            client.force_login(actor)
        for path in paths:
            response = client.get(path)
            assert response.status_code == 404, (actor, path)
            assert response["X-Frame-Options"] == "DENY" and b"secret" not in response.content
    client.force_login(user)
    assert client.get(paths[0]).status_code == 200
    assert 'id="embed-button"' not in client.get(f"/{TINY_ID}/graph?slug=secret").content.decode()  # nothing to share


@pytest.mark.slow
def test_another_site_frames_the_graph_embed_from_its_snippet_with_the_same_state(
    live_server,
    page,
    page_graph,  # noqa: F811
    other_site,  # noqa: F811
):
    features = [n for n in page_graph["nodes"] if n["feature_type"] == "cross layer transcoder"]
    logit = next(n for n in page_graph["nodes"] if n["feature_type"] == "logit")
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live_server.url}/{TINY_ID}/graph?slug=br&pruningThreshold=1")
    _ready(page)
    # build some state: pin a feature and the logit, group them, click the logit, move the threshold
    page.locator(f'[data-node-id="{features[0]["node_id"]}"]').click(modifiers=["Shift"], force=True)
    page.locator(f'[data-node-id="{logit["node_id"]}"]').click(modifiers=["Shift"], force=True)
    page.locator(f'[data-node-id="{logit["node_id"]}"]').click(force=True)
    page.locator("#graph-pins input[type=checkbox]").nth(0).check()
    page.locator("#graph-pins input[type=checkbox]").nth(1).check()
    page.fill("#graph-supernode-name", "to the answer")
    page.click("#graph-group")
    page.locator("#graph-threshold").fill("0.9")
    page.click("#embed-button")
    snippet = page.locator(".embed-snippet").input_value()
    src = re.search(r'<iframe src="([^"]+)"', snippet).group(1).replace("&amp;", "&")
    q = {k: v[0] for k, v in parse_qs(urlparse(src).query).items()}
    assert q["embed"] == "true" and q["slug"] == "br" and q["pruningThreshold"] == "0.9"
    assert q["pinnedIds"] == f"{features[0]['node_id']},{logit['node_id']}" and q["clickedId"] == logit["node_id"]
    assert json.loads(q["supernodes"]) == [["to the answer", features[0]["node_id"], logit["node_id"]]]
    plain = src.replace("&embed=true", "")
    frames = {"embed": src, "page": plain}
    frames_html = "".join(
        f'<iframe name="{n}" src="{u}" width="1000" height="720"></iframe>' for n, u in frames.items()
    )
    page.goto(other_site(f"<!doctype html><title>blog</title>{frames_html}"))
    page.wait_for_load_state("load")
    embed = page.frame(name="embed")
    embed.wait_for_selector("body[data-graph-drawn]", state="attached", timeout=20_000)
    assert embed.locator(".site-header").count() == 0
    # the framed embed shows the same state: pins, the supernode, the clicked node, the threshold
    assert embed.locator("#graph-pins li").count() == 2
    assert embed.locator('#graph-supernodes li[data-supernode="to the answer"]').count() == 1
    assert embed.locator(".graph-node.clicked").get_attribute("data-node-id") == logit["node_id"]
    assert embed.locator("#graph-threshold").input_value() == "0.9"
    time.sleep(0.5)
    # Chromium swaps a refused frame's document for its error page
    assert page.frame(name="page").url.startswith("chrome-error://"), page.frame(name="page").url
    assert errors == []
