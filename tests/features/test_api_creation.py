"""POST /api/model/new and /api/source-set/new: signed-in users only, nulls accepted, limits named in 4xx."""

import pytest
from django.core.cache import cache

from features.models import Model, Source, SourceSet, Visibility
from tests.factories import ModelFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def as_user(api_client, user, api_key_for):
    api_client.credentials(HTTP_X_API_KEY=api_key_for(user))
    return api_client


def test_creating_a_model_or_a_source_set_without_credentials_is_401_and_makes_nothing(api_client):
    ModelFactory(id="gpt2-small")
    assert api_client.post("/api/model/new", {"id": "abc", "layers": 2}, format="json").status_code == 401
    response = api_client.post("/api/source-set/new", {"name": "x", "modelId": "gpt2-small"}, format="json")
    assert response.status_code == 401 and "message" in response.json()
    assert not Model.objects.filter(pk="abc").exists() and not SourceSet.objects.filter(name="x").exists()


def test_model_new_takes_json_nulls_for_display_name_and_url(as_user, user):
    body = {"id": "pup-model-3", "layers": 3, "displayName": None, "url": None}
    response = as_user.post("/api/model/new", body, format="json")
    assert response.status_code == 200, response.content
    assert {k: response.json()[k] for k in ("id", "layers", "displayName", "website", "visibility", "creatorId")} == {
        "id": "pup-model-3", "layers": 3, "displayName": "pup-model-3", "website": "", "visibility": "UNLISTED",
        "creatorId": user.pk,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "1abc", "layers": 2}, "id"),
        ({"id": "a", "layers": 2}, "id"),
        ({"id": "a" * 33, "layers": 2}, "id"),
        ({"id": "llama3.1-8b", "layers": 2}, "id"),
        ({"id": "steer", "layers": 2}, "id"),
        ({"id": "api", "layers": 2}, "id"),
        ({"id": "abc", "layers": 0}, "layers"),
        ({"id": "abc", "layers": 128}, "layers"),
        ({"id": "abc", "layers": 2, "displayName": "x" * 65}, "displayName"),
        ({"id": "abc", "layers": 2, "url": "javascript:alert(1)"}, "url"),
    ],
)
def test_model_new_refuses_what_breaks_neuronpedias_rules_with_a_400_naming_the_field(as_user, body, field):
    response = as_user.post("/api/model/new", body, format="json")
    assert response.status_code == 400 and response.json()["message"].startswith(f"{field}:")
    assert not Model.objects.filter(pk=body["id"]).exists()


def test_source_set_new_makes_one_unlisted_source_per_layer_and_takes_nulls(as_user, user):
    ModelFactory(id="gpt2-small", layers=4)
    body = {"name": "mine-16k", "modelId": "gpt2-small", "description": None, "url": None}
    response = as_user.post("/api/source-set/new", body, format="json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert [s["id"] for s in data["sources"]] == ["0-mine-16k", "1-mine-16k", "2-mine-16k", "3-mine-16k"]
    assert data["model"]["id"] == "gpt2-small" and data["urls"] == [] and data["visibility"] == "UNLISTED"
    assert set(Source.objects.filter(source_set__name="mine-16k").values_list("visibility", "creator")) == {
        (Visibility.UNLISTED, user.pk)
    }


def test_source_set_new_names_a_bad_name_and_a_taken_source_id(as_user):
    model = ModelFactory(id="gpt2-small", layers=2)
    bad = as_user.post("/api/source-set/new", {"name": "Res JB", "modelId": "gpt2-small"}, format="json")
    assert bad.status_code == 400 and bad.json()["message"].startswith("name:")
    # a source `1-jb` of another set would be taken by set `jb`'s layer 1
    other = SourceSet.objects.create(model=model, name="x")
    Source.objects.create(model=model, source_set=other, name="1-jb")
    taken = as_user.post("/api/source-set/new", {"name": "jb", "modelId": "gpt2-small"}, format="json")
    assert taken.status_code == 400 and "gpt2-small/1-jb already exists" in taken.json()["message"]
    assert not SourceSet.objects.filter(name="jb").exists()
    # nor may a set take a source's name, or make a source named as a set (both are pages at /<model>/<name>/)
    as_source = as_user.post("/api/source-set/new", {"name": "1-jb", "modelId": "gpt2-small"}, format="json")
    assert as_source.status_code == 400 and "gpt2-small/1-jb already exists" in as_source.json()["message"]
    SourceSet.objects.create(model=model, name="0-kk")
    as_set = as_user.post("/api/source-set/new", {"name": "kk", "modelId": "gpt2-small"}, format="json")
    assert as_set.status_code == 400 and "gpt2-small/0-kk already exists" in as_set.json()["message"]


def test_model_new_is_limited_to_five_an_hour_per_user(as_user, settings):
    cache.clear()
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "model-new": "5/hour"},
    }
    codes = [as_user.post("/api/model/new", {"id": f"m-{i}", "layers": 1}, format="json").status_code for i in range(6)]
    assert codes == [200] * 5 + [429]
    cache.clear()
