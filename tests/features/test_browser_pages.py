"""Embeds, quick lists, the UMAP scatter at 131,072 points and page widths, in headless Chromium.

Set MEMICOS_SCREENSHOTS=<dir> to keep a screenshot of each page looked at."""

import http.server
import json
import os
import threading
import time
from urllib.parse import quote

import pytest
from django.db import connection

from features.models import Feature, List, Source
from tests.conftest import browser_sign_in
from tests.factories import ActivationFactory, ExplanationFactory, FeatureFactory, ModelFactory, SourceFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

UMAP_POINTS = 131_072  # a 131k-latent SAE (gemma-scope's width), the size that drew nothing before
UMAP_DRAW_BOUND_S = 30  # generous: 2.9 s from navigation to drawn (2.4 s in the page) on 2 shared dev cores


def shot(page, name: str) -> None:
    folder = os.environ.get("MEMICOS_SCREENSHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)


def no_horizontal_overflow(page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


def feature_with_dashboard():
    model = ModelFactory(id="gemma-test", display_name="Gemma (test data)", inference_enabled=True)
    source = SourceFactory(source_set__model=model, name="6-res-test", has_umap=True)
    feature = FeatureFactory(source=source, index=7, frac_nonzero=0.0031, max_act_approx=4.0)
    ActivationFactory(feature=feature, tokens=["The", " parrot", " sang", " loudly"], values=[0.0, 4.0, 1.2, 0.1],
                      max_value=4.0, max_value_token_index=1)  # fmt: skip
    ExplanationFactory(feature=feature, description="talking birds such as parrots")
    return feature


class _Framer(http.server.BaseHTTPRequestHandler):
    """Another site (another loopback address) that frames two pages of the site under test."""

    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def other_site():
    """serve(html) → the URL of a page on http://127.0.0.2:<port>/, a different site from the live server's."""
    servers = []

    def serve(html: str) -> str:
        handler = type("Framer", (_Framer,), {"body": html.encode()})
        server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.2:{server.server_address[1]}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_another_site_can_frame_an_embed_but_not_the_same_page_without_embed(live_server, page, other_site):
    feature = feature_with_dashboard()
    target = f"{live_server.url}/{feature.model_id}/{feature.source.name}/{feature.index}/"
    frames = {"embed": target + "?embed=true", "page": target, "steer-embed": f"{live_server.url}/steer?embed=true",
              "steer": f"{live_server.url}/steer"}  # fmt: skip
    html = "".join(f'<iframe name="{n}" src="{u}" width="600" height="400"></iframe>' for n, u in frames.items())
    page.goto(other_site(f"<!doctype html><title>blog</title>{html}"))
    page.wait_for_load_state("load")
    time.sleep(0.5)

    def loaded(name) -> bool:
        frame = page.frame(name=name)
        try:
            return frame.evaluate("document.querySelector('main') !== null")
        except Exception:
            return False

    assert loaded("embed") and loaded("steer-embed")
    assert page.frame(name="embed").locator("#headline").inner_text() == "talking birds such as parrots"
    assert page.frame(name="embed").locator(".site-header").count() == 0
    assert not loaded("page") and not loaded("steer")
    # Chromium swaps a refused frame's document for its error page
    assert page.frame(name="page").url.startswith("chrome-error://"), page.frame(name="page").url
    assert page.frame(name="steer").url.startswith("chrome-error://")


def test_a_quick_list_from_a_saelens_url_renders_and_saves(live_server, page, django_user_model):
    feature = feature_with_dashboard()
    refs = [{"modelId": feature.model_id, "layer": feature.source.name, "index": str(feature.index)},
            {"modelId": feature.model_id, "layer": feature.source.name, "index": "123456"}]  # fmt: skip
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # the URL as sae_lens.analysis.neuronpedia_integration.get_neuronpedia_quick_list builds it, on our base URL
    url = f"{live_server.url}/quick-list/?name={quote('birds I found')}&features={quote(json.dumps(refs))}"
    response = page.goto(url)
    assert response.status == 200
    assert page.locator("h1").inner_text() == "birds I found"
    assert "talking birds such as parrots" in page.locator("#quick-list").inner_text()
    assert page.locator("#quick-list .act-row").count() == 1
    assert "not found" in page.locator(".quick-item.missing").inner_text()
    width, viewport = no_horizontal_overflow(page)
    assert width <= viewport
    shot(page, "quick-list")
    assert page.locator("a", has_text="Log in to save").count() == 1 and page.locator("#save-quick-list").count() == 0

    # signed in, Save makes it the user's list of the features found, and opens it
    user = django_user_model.objects.create_user(username="ada", password="a-long-Passphrase-42")
    browser_sign_in(page, live_server, user)
    page.goto(url)
    with page.expect_navigation():
        page.click("#save-quick-list")
    saved = List.objects.get(user=user)
    assert saved.name == "birds I found"
    assert list(saved.items.values_list("feature_id", flat=True)) == [feature.pk]  # the missing one is left out
    assert page.url == f"{live_server.url}/list/{saved.id}/"
    assert "Saved as a list with 1 feature." in page.content()
    assert "talking birds such as parrots" in page.locator("main").inner_text()

    bad = page.goto(f"{live_server.url}/quick-list/?name=x&features=%5Bnope")
    assert bad.status == 400 and "not valid JSON" in page.locator("#quick-list-error").inner_text()
    assert not errors, errors


def _insert_umap_features(source: Source, n: int) -> None:
    """n features with UMAP coordinates in one INSERT … SELECT (factories would take minutes): a spiral of clusters."""
    columns, values = [], []
    for field in Feature._meta.concrete_fields:
        if field.primary_key or field.null:
            continue
        columns.append(field.column)
        default = field.get_default()
        if field.name == "model":
            values.append("%(model)s")
        elif field.name == "source":
            values.append("%(source)s")
        elif field.name == "index":
            values.append("i")
        elif field.name == "created_at":
            values.append("now()")
        elif isinstance(default, list):
            values.append("'{}'")
        elif isinstance(default, bool):
            values.append("true" if default else "false")
        else:
            values.append(repr(default) if default is not None else "0")
    columns += ["umap_x", "umap_y", "umap_cluster", "max_act_approx"]
    values += ["cos(i * 0.001) * (1 + i %% 97)", "sin(i * 0.001) * (1 + i %% 89)", "i %% 40", "1.0"]
    sql = (f"INSERT INTO {Feature._meta.db_table} ({', '.join(columns)}) "
           f"SELECT {', '.join(values)} FROM generate_series(0, %(last)s) AS i")  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, {"model": source.model_id, "source": source.pk, "last": n - 1})


def test_the_umap_page_draws_131072_points_without_a_javascript_error(live_server, page):
    source = SourceFactory(name="12-res-131k", has_umap=True, has_umap_clusters=True)
    _insert_umap_features(source, UMAP_POINTS)
    Feature.objects.filter(source=source, index=0).update(umap_x=150.0, umap_y=150.0)  # alone in a corner
    ExplanationFactory(feature=Feature.objects.get(source=source, index=0), description="the first latent of the SAE")
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    started = time.monotonic()
    page.goto(f"{live_server.url}/umap/{source.model_id}/{source.name}/")
    page.wait_for_selector("#umap[data-drawn]", timeout=UMAP_DRAW_BOUND_S * 1000)
    seconds = time.monotonic() - started
    drawn = page.evaluate("window.umapDrawn")
    fetched = page.evaluate(
        "(() => { const e = performance.getEntriesByType('resource').find(r => r.name.includes('points.json'));"
        " return {ms: Math.round(e.duration), bytes: e.encodedBodySize}; })()"
    )
    print(f"\nUMAP: {drawn['points']} points drawn {seconds:.2f} s after navigation ({drawn['ms']} ms in the page; "
          f"points.json {fetched['bytes'] / 1e6:.1f} MB in {fetched['ms']} ms)")  # fmt: skip
    assert fetched["bytes"] < 60 * UMAP_POINTS  # lean: ~40 bytes a point, not a feature row (~2.4 KB)
    assert drawn["points"] == UMAP_POINTS
    assert seconds < UMAP_DRAW_BOUND_S
    assert not errors, errors
    # pixels were painted: the canvas is not blank
    painted = page.evaluate(
        "(() => { const c = document.getElementById('umap'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++;"
        " return n; })()"
    )
    assert painted > 10_000
    # hovering the first latent's point shows its (short) explanation
    at = page.evaluate("window.umapDrawn.at(0)")
    box = page.locator("#umap").bounding_box()
    page.mouse.move(box["x"] + at["x"], box["y"] + at["y"])
    assert page.locator("#umap-tip").inner_text() == "#0 (cluster 0): the first latent of the SAE"
    width, viewport = no_horizontal_overflow(page)
    assert width <= viewport
    shot(page, "umap-131k")


def test_the_source_and_steer_pages_fit_a_1366_px_window(live_server, page):
    feature = feature_with_dashboard()
    source = feature.source
    source.metrics = {
        "l0": 31.4159265, "explained_variance": 0.8123456, "ce_loss_score": 0.9312, "num_dead_features": 12,
        "ce_loss_with_sae": 3.2141, "ce_loss_without_sae": 3.101, "mse": 0.00123456,
        "a_very_long_metric_name_that_goes_on_and_on_and_on_without_a_single_break_anywhere": 1.0,
        "loss_curve": [round(0.5 + 1 / (i + 1), 6) for i in range(400)],
    }  # fmt: skip
    source.saelens_config = {"hook_name": "blocks.6.hook_resid_post", "d_sae": 131072}
    source.save()
    steer = f"/steer?model={source.model_id}&source={source.name}&index={feature.index}&strength=25"
    for path, name in [(f"/{source.model_id}/{source.name}/", "source"), (steer, "steer")]:
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        width, viewport = no_horizontal_overflow(page)
        assert width <= viewport, (path, width, viewport)
        shot(page, name)
    # the feature page's Steer button opens the steer page with that feature chosen at the given strength
    assert "talking birds such as parrots" in page.locator("#feature-list li").inner_text()
    assert page.locator("#feature-list input[type=range]").input_value() == "25"
    page.goto(f"{live_server.url}/{source.model_id}/{source.name}/{feature.index}/")
    page.click("#embed-button")
    snippet = page.locator(".embed-snippet").input_value()
    assert snippet.startswith(
        f'<iframe src="{live_server.url}/{source.model_id}/{source.name}/{feature.index}/?embed=true"'
    )
    page.uncheck("[data-embed-param=embedplots]")
    assert "embed=true&amp;embedplots=false" in page.locator(".embed-snippet").input_value()
    shot(page, "feature-embed-button")
    page.goto(f"{live_server.url}/{source.model_id}/{source.name}/{feature.index}/?embed=true&defaulttesttext=hi")
    shot(page, "feature-embed")
    page.goto(f"{live_server.url}/{source.model_id}/{source.name}/")
    page.click("#umap-link")
    page.wait_for_url(f"**/umap/{source.model_id}/{source.name}/")


def test_a_list_shows_its_comments_and_its_embed_is_compact(live_server, page):
    from features.models import ListComment, ListItem
    from tests.factories import ListFactory, UserFactory

    feature = feature_with_dashboard()
    owner = UserFactory(username="ada")
    feature_list = ListFactory(user=owner, name="Bird features", visibility="PUBLIC", description="Parrots and kin.")
    ListItem.objects.create(list=feature_list, feature=feature, user=owner)
    ListComment.objects.create(list=feature_list, user=UserFactory(username="grace"), text="Feature 7 is a gem.")
    page.goto(f"{live_server.url}/list/{feature_list.id}/")
    assert "Feature 7 is a gem." in page.locator("#comments").inner_text()
    width, viewport = no_horizontal_overflow(page)
    assert width <= viewport
    shot(page, "list")
    page.set_viewport_size({"width": 420, "height": 560})  # the Embed button's iframe size
    page.goto(f"{live_server.url}/list/{feature_list.id}/?embed=true")
    assert page.locator(".site-header").count() == 0
    assert "talking birds such as parrots" in page.locator("table").inner_text()
    width, viewport = no_horizontal_overflow(page)
    assert width <= viewport
    shot(page, "list-embed")
