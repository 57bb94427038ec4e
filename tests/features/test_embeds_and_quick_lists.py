"""Embeds (?embed=true: no chrome, framable only there), quick lists, list comments, release pages and the lean
UMAP data, through Django's test client."""

import json
from urllib.parse import quote

import pytest

from features.models import List, ListComment, ListItem, Visibility
from tests.factories import (
    ActivationFactory,
    ExplanationFactory,
    FeatureFactory,
    ListFactory,
    ModelFactory,
    ReleaseFactory,
    SourceFactory,
    SourceSetFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def feature_url(f):
    return f"/{f.model_id}/{f.source.name}/{f.index}/"


@pytest.fixture
def feature():
    f = FeatureFactory(source__has_umap=True, umap_x=0.5, umap_y=-0.25, umap_cluster=2)
    ActivationFactory(feature=f, tokens=[" the", " parrot", " sang"], values=[0.0, 4.0, 1.0], max_value=4.0,
                      max_value_token_index=1)  # fmt: skip
    ExplanationFactory(feature=f, description="talking birds such as parrots")
    return f


def quick_list_query(features, name="my picks") -> str:
    """The query string SAELens's get_neuronpedia_quick_list builds."""
    return "?name=" + quote(name) + "&features=" + quote(json.dumps(features))


def ref(f) -> dict:
    return {"modelId": f.model_id, "layer": f.source.name, "index": str(f.index)}


# ---- framing


def embed_pages(f, user):
    feature_list = ListFactory(user=user, visibility=Visibility.PUBLIC)
    return [
        feature_url(f),
        "/steer",
        "/search-inference",
        f"/list/{feature_list.id}/",
        f"/umap/{f.model_id}/{f.source.name}/",
        "/quick-list/" + quick_list_query([ref(f)]),
    ]


def test_embed_pages_may_be_framed_by_any_site_and_drop_the_site_chrome(client, feature, user):
    for path in embed_pages(feature, user):
        sep = "&" if "?" in path else "?"
        response = client.get(f"{path}{sep}embed=true")
        assert response.status_code == 200, path
        assert "X-Frame-Options" not in response, path
        csp = response["Content-Security-Policy"]
        assert "frame-ancestors *" in csp and "'none'" not in csp.split("frame-ancestors")[1], path
        html = response.content.decode()
        assert 'class="site-header"' not in html and 'class="site-footer"' not in html, path


def test_the_same_pages_without_embed_stay_unframable(client, feature, user):
    for path in embed_pages(feature, user):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"], path
        assert 'class="site-header"' in response.content.decode(), path


def test_embed_true_on_a_page_that_is_not_an_embed_changes_nothing(client, feature):
    for path in ["/", f"/{feature.model_id}/{feature.source.name}/", "/explanations/search/", "/account/"]:
        response = client.get(path + "?embed=true", follow=True)
        assert response["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"], path


def test_the_frame_ancestors_policy_follows_the_setting_and_off_keeps_embeds_unframable(client, feature, settings):
    settings.EMBED_FRAME_ANCESTORS = "https://blog.example.org"
    response = client.get(feature_url(feature) + "?embed=true")
    assert "frame-ancestors https://blog.example.org" in response["Content-Security-Policy"]
    settings.EMBED_FRAME_ANCESTORS = ""
    response = client.get(feature_url(feature) + "?embed=true")
    assert response["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_an_embed_of_a_private_object_is_a_404_for_others_and_unframable(client, other_user):
    owner = UserFactory()
    secret = FeatureFactory(source__visibility=Visibility.PRIVATE, source__creator=owner, source__has_umap=True,
                            umap_x=0.0, umap_y=0.0)  # fmt: skip
    private_list = ListFactory(user=owner, visibility=Visibility.PRIVATE)
    paths = [feature_url(secret), f"/list/{private_list.id}/", f"/umap/{secret.model_id}/{secret.source.name}/",
             f"/umap/{secret.model_id}/{secret.source.name}/points.json"]  # fmt: skip
    for actor in (None, other_user):
        if actor:
            client.force_login(actor)
        for path in paths:
            response = client.get(path + "?embed=true")
            assert response.status_code == 404, (actor, path)
            assert response["X-Frame-Options"] == "DENY"
    client.force_login(owner)
    assert client.get(feature_url(secret) + "?embed=true").status_code == 200


def test_feature_embed_follows_neuronpedias_switches_and_fills_the_test_box(client, feature):
    feature.model.inference_enabled = True
    feature.model.save()
    html = client.get(feature_url(feature) + "?embed=true&defaulttesttext=hello%20parrot").content.decode()
    assert "talking birds such as parrots" in html and 'id="top-activations"' in html
    assert 'id="density-hist"' in html and ">hello parrot</textarea>" in html
    assert 'id="comments"' not in html and 'id="lists"' not in html  # the compact layout
    html = client.get(
        feature_url(feature) + "?embed=true&embedexplanation=false&embedplots=false&embedtest=false"
    ).content.decode()
    assert "talking birds such as parrots" not in html
    assert 'id="density-hist"' not in html and 'id="test-activation-card"' not in html
    assert 'id="top-activations"' in html


def test_the_activation_test_embed_is_the_feature_embed_with_only_its_test_box(client, feature):
    feature.model.inference_enabled = True
    feature.model.save()
    only_test = "?embed=true&embedexplanation=false&embedactivations=false&embedplots=false&defaulttesttext=a%20parrot"
    html = client.get(feature_url(feature) + only_test).content.decode()
    assert 'id="test-activation-card"' in html and ">a parrot</textarea>" in html
    assert 'id="top-activations"' not in html and 'id="density-hist"' not in html and 'id="headline"' not in html


def test_search_via_inference_embeds_without_its_heading_and_offers_the_snippet(client):
    page = client.get("/search-inference").content.decode()
    assert 'id="embed-button"' in page and "http://testserver/search-inference?embed=true" in page
    embed = client.get("/search-inference?embed=true").content.decode()
    assert 'id="search-form"' in embed and 'id="embed-button"' not in embed and "<h1>" not in embed


def test_the_feature_page_offers_an_embed_snippet_of_itself(client, feature):
    html = client.get(feature_url(feature)).content.decode()
    assert f"&lt;iframe src=&quot;http://testserver{feature_url(feature)}?embed=true&quot;" in html or (
        f'&lt;iframe src="http://testserver{feature_url(feature)}?embed=true"' in html
    )
    assert 'data-embed-param="embedplots"' in html


# ---- quick lists


def test_a_quick_list_from_saelens_url_shows_explanations_and_top_activations(client, feature):
    other = FeatureFactory(source=feature.source)
    missing = {"modelId": feature.model_id, "layer": feature.source.name, "index": "999999"}
    response = client.get("/quick-list/" + quick_list_query([ref(feature), ref(other), missing]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "my picks" in html and "talking birds such as parrots" in html
    assert "parrot" in html and 'class="act-row' in html  # the top activation, token by token
    assert f"{feature.model_id} · {feature.source.name} · 999999" in html and "not found" in html
    assert "3 features (2 found)" in html


@pytest.mark.slow  # importing sae_lens imports torch: ~10 s
def test_saelens_builds_the_quick_list_url_this_site_serves(client, feature, monkeypatch):
    from types import SimpleNamespace

    from sae_lens.analysis import neuronpedia_integration as npi

    monkeypatch.setattr(npi.webbrowser, "open", lambda url: None)
    monkeypatch.setattr(npi, "NEURONPEDIA_DOMAIN", "http://testserver")
    sae = SimpleNamespace(cfg=SimpleNamespace(metadata=SimpleNamespace(
        neuronpedia_id=f"{feature.model_id}/{feature.source.name}", model_name=feature.model_id)))  # fmt: skip
    url = npi.get_neuronpedia_quick_list(sae, features=[feature.index], name="from saelens")
    response = client.get(url.removeprefix("http://testserver"))
    assert response.status_code == 200
    assert "from saelens" in response.content.decode() and "talking birds such as parrots" in response.content.decode()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "needs a name"),
        ("?name=x", "needs features"),
        ("?name=x&features=not-json", "not valid JSON"),
        ("?name=x&features=%5B%5D", "non-empty JSON array"),
        (
            "?name=x&features="
            + quote(json.dumps([{"modelId": "m", "layer": "l", "index": str(i)} for i in range(151)])),
            "at most 150 features",
        ),
        ("?name=x&features=" + quote(json.dumps([{"modelId": "m", "layer": "l", "index": "-1"}])), "whole number"),
        ("?name=x&features=" + quote(json.dumps([{"modelId": "m", "index": "1"}])), "modelId and layer"),
        ("?name=x&features=" + quote(json.dumps(["m/l/1"])), "not an object"),
    ],
)
def test_a_bad_quick_list_is_a_clear_400_page(client, query, message):
    response = client.get("/quick-list/" + query)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_a_quick_list_of_150_features_is_served(client, feature):
    refs = [ref(feature)] + [{"modelId": feature.model_id, "layer": feature.source.name, "index": str(i + 1000)}
                             for i in range(149)]  # fmt: skip
    assert client.get("/quick-list/" + quick_list_query(refs)).status_code == 200


def test_a_quick_list_does_not_show_a_private_feature_to_others(client, other_user):
    secret = FeatureFactory(source__visibility=Visibility.PRIVATE, source__creator=UserFactory())
    ExplanationFactory(feature=secret, description="zz hidden explanation")
    client.force_login(other_user)
    html = client.get("/quick-list/" + quick_list_query([ref(secret)])).content.decode()
    assert "zz hidden explanation" not in html and "not found" in html


def test_a_signed_in_user_saves_a_quick_list_as_a_list_of_the_features_they_may_read(client, user, feature):
    secret = FeatureFactory(source__visibility=Visibility.PRIVATE, source__creator=UserFactory())
    client.force_login(user)
    features = json.dumps([ref(feature), ref(secret)])
    response = client.post("/quick-list/save/", {"name": "saved picks", "features": features})
    saved = List.objects.get(user=user, name="saved picks")
    assert response.status_code == 302 and response["Location"] == f"/list/{saved.id}/"
    assert list(ListItem.objects.filter(list=saved).values_list("feature_id", flat=True)) == [feature.pk]
    assert saved.visibility == Visibility.UNLISTED


def test_saving_a_quick_list_needs_a_sign_in_and_valid_input(client, user, feature):
    response = client.post("/quick-list/save/", {"name": "x", "features": json.dumps([ref(feature)])})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    client.force_login(user)
    assert client.post("/quick-list/save/", {"name": "x", "features": "[]"}).status_code == 400
    assert not List.objects.filter(user=user).exists()


# ---- list comments


def test_readers_comment_on_a_list_and_each_deletes_only_their_own(client, user, other_user):
    feature_list = ListFactory(user=user, visibility=Visibility.UNLISTED)
    client.force_login(other_user)
    client.post(f"/list/{feature_list.id}/comment/", {"text": "nice list"})
    theirs = ListComment.objects.get(list=feature_list)
    assert theirs.user == other_user
    client.force_login(user)
    client.post(f"/list/{feature_list.id}/comment/", {"text": "thanks"})
    mine = ListComment.objects.get(list=feature_list, user=user)
    html = client.get(f"/list/{feature_list.id}/").content.decode()
    assert "nice list" in html and "thanks" in html
    assert client.post(f"/list-comment/{theirs.id}/delete/").status_code == 403  # the owner of the list too
    assert client.post(f"/list-comment/{mine.id}/delete/").status_code == 302
    client.force_login(other_user)
    assert client.post(f"/list-comment/{theirs.id}/delete/").status_code == 302
    assert not ListComment.objects.exists()


def test_nobody_comments_on_or_reads_the_comments_of_a_private_list_of_someone_else(client, user, other_user):
    feature_list = ListFactory(user=user, visibility=Visibility.PRIVATE)
    comment = ListComment.objects.create(list=feature_list, user=user, text="zz private note")
    client.force_login(other_user)
    assert client.post(f"/list/{feature_list.id}/comment/", {"text": "hi"}).status_code == 404
    assert client.post(f"/list-comment/{comment.id}/delete/").status_code == 404
    assert client.get(f"/list/{feature_list.id}/").status_code == 404
    assert ListComment.objects.count() == 1


def test_an_empty_list_comment_is_refused_with_a_message(client, user):
    feature_list = ListFactory(user=user)
    client.force_login(user)
    response = client.post(f"/list/{feature_list.id}/comment/", {"text": "   "}, follow=True)
    assert "needs some text" in response.content.decode() or "cannot be empty" in response.content.decode()
    assert not ListComment.objects.exists()


# ---- release pages


def test_a_release_page_lists_its_source_sets_and_sources_and_is_linked_from_home(client, other_user):
    release = ReleaseFactory(name="res-jb-release", description="Joseph's residual SAEs",
                             urls=["https://example.org/paper", "javascript:alert(1)"])  # fmt: skip
    model = ModelFactory(id="gpt-test")
    shown = SourceSetFactory(model=model, name="res-jb", release=release)
    SourceFactory(source_set=shown, name="6-res-jb")
    hidden = SourceSetFactory(model=model, name="zz-private-set", release=release, visibility=Visibility.PRIVATE,
                              creator=other_user)  # fmt: skip
    SourceFactory(source_set=hidden, name="7-zz-private-set")
    html = client.get("/release/res-jb-release/").content.decode()
    assert "Joseph&#x27;s residual SAEs" in html
    assert 'href="/gpt-test/res-jb/"' in html and 'href="/gpt-test/6-res-jb/"' in html
    assert "zz-private-set" not in html
    assert 'href="https://example.org/paper"' in html and "javascript:" not in html
    assert 'href="/release/res-jb-release/"' in client.get("/").content.decode()
    assert 'href="/release/res-jb-release/"' in client.get("/gpt-test/6-res-jb/").content.decode()


def test_a_private_release_is_a_404_for_others(client, other_user):
    ReleaseFactory(name="secret-release", visibility=Visibility.PRIVATE, creator=UserFactory())
    assert client.get("/release/secret-release/").status_code == 404
    client.force_login(other_user)
    assert client.get("/release/secret-release/").status_code == 404


# ---- source page and UMAP data


def test_the_source_page_links_its_umap_and_a_search_scoped_to_it(client, feature):
    html = client.get(f"/{feature.model_id}/{feature.source.name}/").content.decode()
    assert f'href="/umap/{feature.model_id}/{feature.source.name}/"' in html
    assert f'href="/explanations/search/?model={feature.model_id}&amp;source={quote(feature.source.name)}"' in html


def test_the_source_page_shows_long_training_metrics_cut_short(client):
    source = SourceFactory(metrics={"l0": 31.41592653, "loss_curve": list(range(2000)), "note": "x" * 500})
    html = client.get(f"/{source.model_id}/{source.name}/").content.decode()
    assert ">31.42<" in html  # 4 significant digits, also as a stat at the top
    assert "1999" not in html and "x" * 200 not in html


def test_the_umap_data_is_lean_columns_not_feature_rows(client, feature):
    body = client.get(f"/umap/{feature.model_id}/{feature.source.name}/points.json").json()
    assert body == {"index": [feature.index], "x": [0.5], "y": [-0.25], "cluster": [2],
                    "label": ["talking birds such as parrots"]}  # fmt: skip


def test_the_steer_page_opens_with_the_feature_its_link_names_if_the_user_may_read_it(client, feature, other_user):
    feature.model.inference_enabled = True
    feature.model.save()
    url = f"/steer?model={feature.model_id}&source={feature.source.name}&index={feature.index}&strength=25"
    html = client.get(url).content.decode()
    assert '"strength": 25.0' in html and "talking birds such as parrots" in html
    secret = FeatureFactory(source__visibility=Visibility.PRIVATE, source__creator=UserFactory())
    ExplanationFactory(feature=secret, description="zz hidden explanation")
    client.force_login(other_user)
    html = client.get(f"/steer?model={secret.model_id}&source={secret.source.name}&index={secret.index}").content
    assert b"zz hidden explanation" not in html and b'id="steer-initial" type="application/json">null<' in html
