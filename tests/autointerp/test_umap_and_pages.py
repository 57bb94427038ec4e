"""UMAP (explanation embeddings and decoder directions), /api/umap visibility, and the pages."""

import numpy as np
import pytest

from autointerp.services import explanation_create_human
from autointerp.services_umap import umap_source
from features.models import Feature, Source, Visibility
from tests.factories import FeatureFactory, SourceFactory, SourceSetFactory

WORDS = ["parrots", "sparrows", "eagles", "owls", "canaries", "pigeons",
         "rain showers", "thunderstorms", "snowfall", "fog banks", "hail", "drizzle"]  # fmt: skip


def _explained_source(user, capture, **kwargs):
    source = SourceFactory(**kwargs)
    with capture(execute=True):
        for i, word in enumerate(WORDS):
            feature = FeatureFactory(source=source, model=source.model, index=i)
            explanation_create_human(user=user, feature=feature, text=f"mentions of {word}")
    return source


@pytest.mark.django_db
def test_umap_of_explanation_embeddings_stores_coordinates_and_clusters(
    user, api_client, django_capture_on_commit_callbacks
):
    source = _explained_source(user, django_capture_on_commit_callbacks)
    result = umap_source(source=source)
    assert result == {"points": 12, "input": "explanations", "clusters": 2}
    rows = list(Feature.objects.filter(source=source).order_by("index"))
    assert all(f.umap_x is not None and f.umap_y is not None for f in rows)
    # birds and weather words land in different clusters
    birds, weather = {f.umap_cluster for f in rows[:6]}, {f.umap_cluster for f in rows[6:]}
    assert len(birds) == 1 and len(weather) == 1 and birds != weather
    source.refresh_from_db()
    assert source.has_umap and source.has_umap_clusters and source.has_umap_log_sparsity
    body = api_client.post("/api/umap", {"modelId": source.model_id, "layers": [source.name]}, format="json").json()
    points = body[source.name]
    assert len(points) == 12 and points[0]["description"] == "mentions of parrots"
    assert points[0]["umap_log_feature_sparsity"] == pytest.approx(np.log10(0.0123))


@pytest.mark.django_db
def test_umap_reads_decoder_directions_when_the_source_has_an_sae(tmp_path, user):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 16))
    w_dec = np.concatenate([centres[0] + 0.05 * rng.normal(size=(6, 16)), centres[1] + 0.05 * rng.normal(size=(6, 16))])
    save_file({"W_dec": w_dec.astype(np.float32), "W_enc": w_dec.T.astype(np.float32).copy()},
              str(tmp_path / "sae_weights.safetensors"))  # fmt: skip
    source = SourceFactory(sae_path=str(tmp_path))
    for i in range(12):
        FeatureFactory(source=source, model=source.model, index=i)
    assert umap_source(source=source)["input"] == "decoder"
    rows = list(Feature.objects.filter(source=source).order_by("index"))
    assert {f.umap_cluster for f in rows[:6]}.isdisjoint({f.umap_cluster for f in rows[6:]})


@pytest.mark.django_db
def test_private_sources_never_appear_in_umap_for_others(
    user, other_user, api_client, django_capture_on_commit_callbacks
):
    source = _explained_source(user, django_capture_on_commit_callbacks, visibility=Visibility.PRIVATE, creator=user)
    umap_source(source=source)
    body = {"modelId": source.model_id, "layers": [source.name]}
    assert api_client.post("/api/umap", body, format="json").json() == {}
    api_client.force_authenticate(other_user)
    assert api_client.post("/api/umap", body, format="json").json() == {}
    assert api_client.get(f"/umap/{source.model_id}/{source.name}/").status_code == 404
    api_client.force_authenticate(user)
    assert len(api_client.post("/api/umap", body, format="json").json()[source.name]) == 12


VECTOR_COLUMNS = ["embedding", "embedding_256"]  # an explanation's embeddings


def _umap_queries(n: int, api_client):
    """The statements /api/umap runs for one source of `n` placed, explained features."""
    import re

    from django.contrib.postgres.fields import ArrayField
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import ExplanationFactory

    source = SourceFactory(has_umap=True)
    for i in range(n):
        feature = FeatureFactory(source=source, model=source.model, index=i, umap_x=i, umap_y=-i, umap_cluster=i % 2,
                                 vector=[0.5] * 64, freq_hist_data_bar_heights=[1.0] * 50)  # fmt: skip
        ExplanationFactory(feature=feature, description=f"latent {i} " + "x" * 200)
    with CaptureQueriesContext(connection) as ctx:
        body = api_client.post("/api/umap", {"modelId": source.model_id, "layers": [source.name]}, format="json")
    heavy = [f.column for f in Feature._meta.concrete_fields if isinstance(f, ArrayField)] + VECTOR_COLUMNS
    for query in ctx.captured_queries:
        read = set(re.findall(r"\b(" + "|".join(heavy) + r")\b", query["sql"]))
        assert not read, f"/api/umap read {read}: {query['sql'][:300]}"
    return body.json()[source.name], len(ctx.captured_queries)


@pytest.mark.django_db
def test_api_umap_reads_no_vector_histogram_or_logit_column_and_a_constant_number_of_statements(api_client):
    few, few_queries = _umap_queries(3, api_client)
    many, many_queries = _umap_queries(40, api_client)
    assert few_queries == many_queries
    assert len(many) == 40
    assert many[1] == {
        "id": f"{many[1]['modelId']}@{many[1]['layer']}@1", "modelId": many[1]["modelId"],
        "layer": many[1]["layer"], "index": "1", "description": "latent 1 " + "x" * 200, "umap_cluster": 1,
        "umap_x": 1.0, "umap_y": -1.0, "umap_log_feature_sparsity": None,
    }  # fmt: skip


@pytest.mark.django_db
def test_search_page_shows_explanation_feature_link_and_snippet(client, user, django_capture_on_commit_callbacks):
    from tests.autointerp.planted import TOPICS, planted_source

    source, features = planted_source()
    with django_capture_on_commit_callbacks(execute=True):
        explanation_create_human(user=user, feature=features["birds"], text=TOPICS["birds"][0])
    html = client.get("/explanations/search/", {"q": "birds that sing"}).content.decode()
    assert "parrots and other birds" in html
    assert f'href="/{source.model_id}/{source.name}/0/"' in html
    assert "<mark> parrot</mark>" in html


@pytest.mark.django_db
def test_the_source_pages_search_link_finds_only_that_sources_explanations(
    client, user, django_capture_on_commit_callbacks
):
    import html as html_lib
    import re

    from tests.autointerp.planted import planted_source

    source, features = planted_source()
    other = SourceFactory(source_set=SourceSetFactory(model=source.model))  # another source of the same model
    elsewhere = FeatureFactory(source=other, model=source.model, index=0)
    with django_capture_on_commit_callbacks(execute=True):
        explanation_create_human(user=user, feature=features["birds"], text="parrots and other birds")
        explanation_create_human(user=user, feature=elsewhere, text="parrots and other talking birds")
    ours, theirs = f'href="/{source.model_id}/{source.name}/0/"', f'href="/{source.model_id}/{other.name}/0/"'
    everywhere = client.get("/explanations/search/", {"q": "parrots and birds"}).content.decode()
    assert ours in everywhere and theirs in everywhere
    page = client.get(f"/{source.model_id}/{source.name}/").content.decode()
    link = html_lib.unescape(re.search(r'id="search-link" href="([^"]+)"', page).group(1))
    scoped = client.get(f"{link}&q=parrots+and+birds").content.decode()
    assert ours in scoped and theirs not in scoped
    assert f"in {source.model_id}/{source.name}" in scoped  # and the page says where it searched


@pytest.mark.django_db
def test_search_page_reads_a_malformed_or_huge_offset_as_a_page_it_can_serve(client, user, monkeypatch):
    from autointerp import views
    from tests.autointerp.planted import TOPICS, planted_source

    source, features = planted_source()
    explanation_create_human(user=user, feature=features["birds"], text=TOPICS["birds"][0])
    asked, search = [], views.sel.explanation_search
    monkeypatch.setattr(views.sel, "explanation_search", lambda **kw: asked.append(kw["offset"]) or search(**kw))
    offsets = {"²": 0, "٣": 0, "-5": 0, "1e3": 0, "40": 40, "99999999999999999999999": views.sel.MAX_OFFSET}
    for raw in offsets:
        response = client.get("/explanations/search/", {"q": "birds that sing", "offset": raw})
        assert response.status_code == 200, (raw, response.status_code)  # "²" was a 500, the huge one too
    assert asked == list(offsets.values())


@pytest.mark.slow
def test_umap_scatter_hover_shows_the_explanation_and_click_opens_the_feature(
    live_server, page, transactional_db, django_capture_on_commit_callbacks
):
    from tests.factories import UserFactory

    source = _explained_source(UserFactory(), django_capture_on_commit_callbacks)
    umap_source(source=source)
    page.goto(f"{live_server.url}/umap/{source.model_id}/{source.name}/")
    page.wait_for_selector("#umap[data-drawn]")
    point = page.evaluate("window.umapDrawn.at(3)")
    box = page.locator("#umap").bounding_box()
    x, y = box["x"] + point["x"], box["y"] + point["y"]
    page.mouse.move(x, y)
    tip = page.locator("#umap-tip")
    assert "mentions of" in tip.inner_text()
    page.mouse.click(x, y)
    page.wait_for_url(f"**/{source.model_id}/{source.name}/*/")
    assert Source.objects.filter(pk=source.pk).exists()
