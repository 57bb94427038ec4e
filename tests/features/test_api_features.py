"""GET /api/feature, POST /api/features, POST /api/features-offset: Neuronpedia's shapes and error cases."""

import math

import pytest

from features.fields import ACTIVATION_FIELDS, FEATURE_FIELDS
from features.models import Visibility
from tests.factories import (
    ActivationFactory,
    ExplanationFactory,
    FeatureFactory,
    ListFactory,
    ModelFactory,
    SourceFactory,
    SourceSetFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def source():
    model = ModelFactory(id="gpt2-small")
    source_set = SourceSetFactory(model=model, name="res-jb")
    return SourceFactory(source_set=source_set, model=model, name="6-res-jb")


def _feature_url(model_id, layer, index, slash=False):
    return f"/api/feature/{model_id}/{layer}/{index}" + ("/" if slash else "")


def test_feature_get_returns_neuronpedia_fields_and_sorted_children(api_client, source, user):
    from features.models import Comment, ExplanationScore, ExplanationScoreModel, ExplanationScoreType, ListItem

    feature = FeatureFactory(source=source, model=source.model, index=42, creator=user)
    feature.correlated_features_indices = [1, 2]
    feature.correlated_features_pearson = [0.5, 0.4]
    feature.save()
    weak = ActivationFactory(feature=feature, max_value=1.25, tokens=["a", "b"], values=[1.25, 0.0])
    strong = ActivationFactory(feature=feature, max_value=7.5, tokens=["c", "d"], values=[0.0, 7.5])
    middle = ActivationFactory(feature=feature, max_value=3.0)
    unscored = ExplanationFactory(feature=feature, description="unscored", score_v1=0.95, score_v2=None)
    low = ExplanationFactory(feature=feature, description="low", score_v1=0.2, score_v2=0.1)
    high = ExplanationFactory(feature=feature, description="high", score_v1=0.0, score_v2=0.8, triggered_by=user)
    tie_better_v1 = ExplanationFactory(feature=feature, description="tie", score_v1=0.5, score_v2=0.1)
    ExplanationScore.objects.create(
        explanation=high,
        score_type=ExplanationScoreType.objects.create(name="recall_alt"),
        score_model=ExplanationScoreModel.objects.create(name="gpt-4o-mini"),
        value=0.77,
    )
    public_list = ListFactory(user=user, name="birds", visibility=Visibility.PUBLIC)
    ListItem.objects.create(list=public_list, feature=feature)
    Comment.objects.create(feature=feature, user=user, text="nice feature")

    response = api_client.get(_feature_url("gpt2-small", "6-res-jb", 42))

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["modelId"], body["layer"], body["index"]) == ("gpt2-small", "6-res-jb", "42")
    assert body["sourceSetName"] == "res-jb"
    assert body["creatorId"] == user.pk
    for wire in FEATURE_FIELDS:
        assert wire in body, wire
    assert body["maxActApprox"] == feature.max_act_approx
    assert body["pos_str"] == feature.pos_str and body["neg_values"] == feature.neg_values
    assert body["frac_nonzero"] == pytest.approx(0.0123)
    assert body["correlated_features_indices"] == [] and body["correlated_features_pearson"] == []
    assert body["model"]["id"] == "gpt2-small" and "displayName" in body["model"]
    assert body["source"]["id"] == "6-res-jb" and body["source"]["setName"] == "res-jb"
    assert body["sourceSet"]["name"] == "res-jb" and body["sourceSet"]["modelId"] == "gpt2-small"
    assert body["creator"] == {"name": user.username}
    assert [a["id"] for a in body["activations"]] == [strong.id, middle.id, weak.id]
    first = body["activations"][0]
    for wire in ACTIVATION_FIELDS:
        assert wire in first, wire
    assert first["tokens"] == ["c", "d"] and first["values"] == [0.0, 7.5] and first["maxValue"] == 7.5
    assert (first["modelId"], first["layer"], first["index"]) == ("gpt2-small", "6-res-jb", "42")
    assert [e["id"] for e in body["explanations"]] == [high.id, tie_better_v1.id, low.id, unscored.id]
    top = body["explanations"][0]
    assert top["description"] == "high" and top["triggeredByUser"] == {"id": user.pk, "name": user.username}
    assert top["scores"][0]["value"] == 0.77 and top["scores"][0]["explanationScoreTypeName"] == "recall_alt"
    assert {"typeName", "explanationModelName", "scoreV1", "scoreV2"} <= set(top)
    assert body["explanations"][2]["triggeredByUser"] is None
    assert [entry["list"]["name"] for entry in body["lists"]] == ["birds"]
    assert body["lists"][0]["list"]["url"].endswith(f"/list/{public_list.id}/")
    assert body["comments"][0]["text"] == "nice feature"
    assert body["comments"][0]["user"] == {"name": user.username}


def test_feature_get_works_with_trailing_slash_and_x_api_key(api_client, source, user, api_key_for):
    FeatureFactory(source=source, model=source.model, index=1)
    response = api_client.get(_feature_url("gpt2-small", "6-res-jb", 1, slash=True), HTTP_X_API_KEY=api_key_for(user))
    assert response.status_code == 200
    assert response.json()["index"] == "1"


def test_feature_get_with_bad_api_key_is_401(api_client, source):
    FeatureFactory(source=source, model=source.model, index=1)
    response = api_client.get(_feature_url("gpt2-small", "6-res-jb", 1), HTTP_X_API_KEY="mk-not-a-key")
    assert response.status_code == 401
    assert "API key" in response.json()["message"]


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/api/feature/no-such-model/6-res-jb/1", "Model 'no-such-model' not found"),
        ("/api/feature/gpt2-small/7-res-jb/1", "Source gpt2-small/7-res-jb not found"),
        ("/api/feature/gpt2-small/6-res-jb/999", "Feature gpt2-small/6-res-jb/999 not found"),
    ],
)
def test_feature_get_unknown_parts_are_404_naming_the_part(api_client, source, path, expected):
    FeatureFactory(source=source, model=source.model, index=1)
    response = api_client.get(path)
    assert response.status_code == 404
    assert expected in response.json()["message"]


@pytest.mark.parametrize("index", ["abc", "1.5", "99999999999"])
def test_feature_get_with_non_integer_index_is_400_naming_index(api_client, source, index):
    response = api_client.get(_feature_url("gpt2-small", "6-res-jb", index))
    assert response.status_code == 400
    assert response.json()["message"].startswith("index:")


@pytest.mark.parametrize("private_part", ["model", "source_set", "source"])
def test_feature_in_private_part_is_404_for_others_and_readable_by_its_creator(
    api_client, source, user, other_user, api_key_for, private_part
):
    FeatureFactory(source=source, model=source.model, index=3)
    part = {"model": source.model, "source_set": source.source_set, "source": source}[private_part]
    part.visibility = Visibility.PRIVATE
    part.creator = user
    part.save()
    url = _feature_url("gpt2-small", "6-res-jb", 3)

    assert api_client.get(url).status_code == 404
    assert api_client.get(url, HTTP_X_API_KEY=api_key_for(other_user)).status_code == 404
    assert api_client.get(url, HTTP_X_API_KEY=api_key_for(user)).status_code == 200
    staff = UserFactory(is_staff=True)
    assert api_client.get(url, HTTP_X_API_KEY=api_key_for(staff)).status_code == 200


def test_feature_get_hides_private_lists_of_others(api_client, source, user, other_user, api_key_for):
    from features.models import ListItem

    feature = FeatureFactory(source=source, model=source.model, index=5)
    hidden = ListFactory(user=user, name="secret", visibility=Visibility.PRIVATE)
    ListItem.objects.create(list=hidden, feature=feature)
    url = _feature_url("gpt2-small", "6-res-jb", 5)
    assert api_client.get(url, HTTP_X_API_KEY=api_key_for(other_user)).json()["lists"] == []
    owner_view = api_client.get(url, HTTP_X_API_KEY=api_key_for(user)).json()["lists"]
    assert [entry["list"]["name"] for entry in owner_view] == ["secret"]


def test_feature_get_post_is_405_json(api_client, source):
    response = api_client.post(_feature_url("gpt2-small", "6-res-jb", 1), {}, format="json")
    assert response.status_code == 405
    assert "message" in response.json()


@pytest.mark.parametrize("n_activations", [1, 30])
def test_feature_get_uses_a_bounded_number_of_queries(
    api_client, source, user, api_key_for, django_assert_max_num_queries, n_activations
):
    from features.models import Comment, ListItem

    feature = FeatureFactory(source=source, model=source.model, index=9)
    ActivationFactory.create_batch(n_activations, feature=feature)
    for _ in range(3):
        explanation = ExplanationFactory(feature=feature, triggered_by=UserFactory())
        del explanation
        Comment.objects.create(feature=feature, user=UserFactory(), text="c")
        ListItem.objects.create(list=ListFactory(visibility=Visibility.PUBLIC), feature=feature)
    key = api_key_for(user)
    api_client.get(_feature_url("gpt2-small", "6-res-jb", 9), HTTP_X_API_KEY=key)  # settles last_used_at
    with django_assert_max_num_queries(8):
        response = api_client.get(_feature_url("gpt2-small", "6-res-jb", 9), HTTP_X_API_KEY=key)
    assert len(response.json()["activations"]) == n_activations


def test_feature_get_turns_nan_into_null_instead_of_failing(api_client, source):
    feature = FeatureFactory(source=source, model=source.model, index=11, frac_nonzero=math.nan)
    feature.freq_hist_data_bar_values = [1.0, math.inf]
    feature.save()
    response = api_client.get(_feature_url("gpt2-small", "6-res-jb", 11))
    assert response.status_code == 200
    body = response.json()
    assert body["frac_nonzero"] is None and body["freq_hist_data_bar_values"] == [1.0, None]


# --- POST /api/features ---


def test_features_batch_keeps_request_order_with_null_for_unknown(api_client, source):
    a = FeatureFactory(source=source, model=source.model, index=1)
    b = FeatureFactory(source=source, model=source.model, index=2)
    ActivationFactory.create_batch(4, feature=a)
    strongest = ActivationFactory(feature=b, max_value=9.0)
    ActivationFactory.create_batch(2, feature=b, max_value=1.0)
    ExplanationFactory(feature=b, description="second feature")
    body = [
        {"modelId": "gpt2-small", "layer": "6-res-jb", "index": 2, "maxActsToReturn": 1},
        {"modelId": "gpt2-small", "layer": "6-res-jb", "index": 404},
        {"modelId": "gpt2-small", "layer": "6-res-jb", "index": "1"},
    ]
    response = api_client.post("/api/features", body, format="json")
    assert response.status_code == 200, response.content
    out = response.json()
    assert out[1] is None
    assert [out[0]["index"], out[2]["index"]] == ["2", "1"]
    assert [x["id"] for x in out[0]["activations"]] == [strongest.id]
    assert len(out[2]["activations"]) == 4
    assert out[0]["explanations"][0]["description"] == "second feature"
    assert out[0]["sourceSetName"] == "res-jb"


def test_features_batch_treats_private_features_as_missing(api_client, source, user):
    FeatureFactory(source=source, model=source.model, index=1)
    source.visibility, source.creator = Visibility.PRIVATE, user
    source.save()
    response = api_client.post(
        "/api/features/", [{"modelId": "gpt2-small", "layer": "6-res-jb", "index": 1}], format="json"
    )
    assert response.status_code == 200 and response.json() == [None]


def test_features_batch_query_count_does_not_grow_with_batch_size(api_client, source, django_assert_max_num_queries):
    for i in range(20):
        feature = FeatureFactory(source=source, model=source.model, index=i)
        ActivationFactory.create_batch(2, feature=feature)
        ExplanationFactory(feature=feature)
    body = [{"modelId": "gpt2-small", "layer": "6-res-jb", "index": i} for i in range(20)]
    with django_assert_max_num_queries(6):
        response = api_client.post("/api/features", body, format="json")
    assert all(len(x["activations"]) == 2 for x in response.json())


@pytest.mark.parametrize(
    "body, field",
    [
        ([{"modelId": "gpt2-small", "layer": "6-res-jb", "index": "x"}], "[0].index"),
        ([{"layer": "6-res-jb", "index": 1}], "[0].modelId"),
        ([{"modelId": "m", "layer": "l", "index": 1, "maxActsToReturn": -1}], "[0].maxActsToReturn"),
        ({"modelId": "m", "layer": "l", "index": 1}, "body: must be a JSON array, not an object"),
        ([{"modelId": "m", "layer": "l", "index": i} for i in range(101)], "100"),
    ],
)
def test_features_batch_bad_bodies_are_400_naming_the_problem(api_client, body, field):
    response = api_client.post("/api/features", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["message"]


def test_features_batch_malformed_json_is_400(api_client):
    response = api_client.post("/api/features", data="[{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["message"]


# --- POST /api/features-offset ---


def test_features_offset_pages_25_dashboard_features_in_index_order(api_client, source):
    for i in (100, 3, 20, 7):  # created out of order; index 10 next has no dashboard
        FeatureFactory(source=source, model=source.model, index=i)
    FeatureFactory(source=source, model=source.model, index=10, max_act_approx=0)
    for i in range(200, 230):
        FeatureFactory(source=source, model=source.model, index=i)
    first = api_client.post(
        "/api/features-offset", {"modelId": "gpt2-small", "layer": "6-res-jb", "offset": 0}, format="json"
    )
    assert first.status_code == 200, first.content
    indexes = [x["index"] for x in first.json()]
    assert len(indexes) == 25
    assert indexes[:5] == ["3", "7", "20", "100", "200"]
    second = api_client.post(
        "/api/features-offset/", {"modelId": "gpt2-small", "layer": "6-res-jb", "offset": 25}, format="json"
    )
    assert [x["index"] for x in second.json()] == [str(i) for i in range(221, 230)]
    assert "10" not in indexes


def test_a_json_body_sent_with_a_form_content_type_is_read_as_json_like_neuronpedia(api_client, source):
    FeatureFactory(source=source, model=source.model, index=4)
    body = '{"modelId": "gpt2-small", "layer": "6-res-jb", "offset": 0}'
    response = api_client.post("/api/features-offset", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200 and [x["index"] for x in response.json()] == ["4"]
    form = api_client.post("/api/features-offset", {"modelId": "gpt2-small"})  # multipart, not JSON
    assert form.status_code == 400 and "JSON parse error" in form.json()["message"]


def test_features_offset_unknown_source_is_404(api_client, source):
    response = api_client.post(
        "/api/features-offset", {"modelId": "gpt2-small", "layer": "0-nope", "offset": 0}, format="json"
    )
    assert response.status_code == 404 and "0-nope" in response.json()["message"]


def test_features_offset_wrong_type_names_the_field(api_client, source):
    response = api_client.post(
        "/api/features-offset", {"modelId": "gpt2-small", "layer": "6-res-jb", "offset": "first"}, format="json"
    )
    assert response.status_code == 400 and response.json()["message"].startswith("offset:")


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("get", "/api/feature/gpt2-small%00/6-res-jb/1", None),
        ("get", "/api/source-set/gpt2-small/res%00jb", None),
        ("post", "/api/features-offset", {"modelId": "gpt2-small\x00", "layer": "6-res-jb"}),
        ("post", "/api/features", [{"modelId": "gpt2-small", "layer": "6\x00", "index": 1}]),
    ],
)
def test_nul_characters_are_rejected_not_a_500(api_client, source, method, path, body):
    response = getattr(api_client, method)(path, body, format="json") if body else api_client.get(path)
    assert response.status_code in (400, 404)
    assert "message" in response.json()


# --- regressions ---


@pytest.mark.parametrize("offset", [9223372036854775808, 2**31, 10**30])
def test_features_offset_beyond_any_index_is_a_400_naming_offset(source, offset):
    from rest_framework.test import APIClient

    quiet = APIClient(raise_request_exception=False)
    body = {"modelId": "gpt2-small", "layer": "6-res-jb", "offset": offset}
    response = quiet.post("/api/features-offset", body, format="json")
    assert response.status_code == 400 and response.json()["message"].startswith("offset:")
    ok = quiet.post("/api/features-offset", {**body, "offset": 2**31 - 1}, format="json")
    assert ok.status_code == 200 and ok.json() == []


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/features", [{"modelId": "gpt2-small", "layer": "6-res-jb", "index": -1}]),
        ("/api/comment/new", {"modelId": "gpt2-small", "layer": "6-res-jb", "index": -1, "text": "x"}),
        ("/api/bookmark/add", {"modelId": "gpt2-small", "layer": "6-res-jb", "index": -1}),
        ("/api/list/new-with-features", {"name": "x", "features": [{"modelId": "m", "layer": "l", "index": -1}]}),
        ("/api/activation/get", {"modelId": "gpt2-small", "source": "6-res-jb", "index": -1}),
    ],
)
def test_a_negative_feature_index_in_a_body_is_a_400_naming_index(api_client, user, api_key_for, source, path, body):
    FeatureFactory(source=source, model=source.model, index=-1)  # a row from before negatives were refused
    response = api_client.post(path, body, format="json", HTTP_X_API_KEY=api_key_for(user))
    assert response.status_code == 400 and "index" in response.json()["message"], response.content


# --- POST /api/activation/get ---


def test_activation_get_returns_the_feature_activations_as_get_feature_does(api_client, source):
    feature = FeatureFactory(source=source, model=source.model, index=5)
    ActivationFactory(feature=feature, max_value=1.0)
    ActivationFactory(feature=feature, max_value=9.0)
    body = {"modelId": "gpt2-small", "source": "6-res-jb", "index": "5"}  # Neuronpedia sends the index as a string
    response = api_client.post("/api/activation/get", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == api_client.get(_feature_url("gpt2-small", "6-res-jb", 5)).json()["activations"]
    assert [a["maxValue"] for a in response.json()] == [9.0, 1.0]
    assert api_client.post("/api/activation/get/", {**body, "index": 5}, format="json").json() == response.json()


def test_activation_get_is_404_when_unknown_unreadable_or_without_activations(api_client, source, user, api_key_for):
    hidden = SourceFactory(source_set=source.source_set, visibility=Visibility.PRIVATE, creator=user)
    ActivationFactory(feature=FeatureFactory(source=hidden, model=source.model, index=1))
    FeatureFactory(source=source, model=source.model, index=2)  # no activations stored
    for body in (
        {"modelId": "gpt2-small", "source": hidden.name, "index": 1},
        {"modelId": "gpt2-small", "source": "6-res-jb", "index": 2},
        {"modelId": "gpt2-small", "source": "6-res-jb", "index": 99},
        {"modelId": "nope", "source": "6-res-jb", "index": 2},
    ):
        response = api_client.post("/api/activation/get", body, format="json")
        assert response.status_code == 404 and response.json()["message"], body
    owner = api_client.post(
        "/api/activation/get", {"modelId": "gpt2-small", "source": hidden.name, "index": 1}, format="json",
        HTTP_X_API_KEY=api_key_for(user),
    )  # fmt: skip
    assert owner.status_code == 200 and len(owner.json()) == 1


def test_activation_get_bad_bodies_are_400_naming_the_field(api_client, source):
    for body, field in (({"modelId": "gpt2-small", "source": "6-res-jb"}, "index"),
                        ({"modelId": "gpt2-small", "index": 1}, "source"),
                        ({"modelId": "gpt2-small", "source": "6-res-jb", "index": 2**31}, "index")):  # fmt: skip
        response = api_client.post("/api/activation/get", body, format="json")
        assert response.status_code == 400 and response.json()["message"].startswith(f"{field}:")
