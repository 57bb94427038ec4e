"""/api/global, /api/model/get|list, /api/source-set/{modelId}/{name}, /api/source/{modelId}/{sourceId}."""

import pytest

from features.fields import MODEL_FIELDS, SOURCE_FIELDS, SOURCE_SET_FIELDS
from features.models import ExplanationModelType, ExplanationScoreModel, ExplanationScoreType, ExplanationType
from features.models import Visibility as V
from tests.factories import ModelFactory, ReleaseFactory, SourceFactory, SourceSetFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(user):
    """A public model with a release of two source sets, plus private and unlisted things of `user`."""
    model = ModelFactory(id="gpt2-small", display_name="GPT2-Small")
    release = ReleaseFactory(name="res-jb-release")
    res = SourceSetFactory(model=model, name="res-jb", release=release)
    for name in ("10-res-jb", "2-res-jb"):
        SourceFactory(model=model, source_set=res, name=name)
    SourceFactory(model=model, source_set=res, name="5-res-jb", visibility=V.PRIVATE, creator=user)
    SourceFactory(model=model, source_set=res, name="6-res-jb", visibility=V.UNLISTED)
    att = SourceSetFactory(model=model, name="att-kk", release=release, visibility=V.UNLISTED)
    SourceFactory(model=model, source_set=att, name="3-att-kk")
    ModelFactory(id="secret-model", visibility=V.PRIVATE, creator=user)
    ModelFactory(id="unlisted-model", visibility=V.UNLISTED)
    ReleaseFactory(name="secret-release", visibility=V.PRIVATE, creator=user)
    ExplanationType.objects.create(name="oai_token-act-pair", display_name="OpenAI")
    ExplanationModelType.objects.create(name="gpt-4o-mini")
    ExplanationScoreType.objects.create(name="recall_alt")
    ExplanationScoreModel.objects.create(name="gpt-4o-mini")
    return model


def test_global_lists_public_things_with_nested_source_sets_and_sources(api_client, world):
    response = api_client.post("/api/global")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {
        "models", "explanationTypes", "explanationModels", "releases", "explanationScoreTypes",
        "explanationScoreModelTypes",
    }  # fmt: skip
    assert [m["id"] for m in body["models"]] == ["gpt2-small"]
    assert all(wire in body["models"][0] for wire in MODEL_FIELDS)
    assert [r["name"] for r in body["releases"]] == ["res-jb-release"]
    sets = body["releases"][0]["sourceSets"]
    assert [s["name"] for s in sets] == ["res-jb"]  # the UNLISTED set is not listed
    assert [s["id"] for s in sets[0]["sources"]] == ["2-res-jb", "10-res-jb"]  # layer order, listed only
    assert body["explanationTypes"][0]["name"] == "oai_token-act-pair"
    assert body["explanationTypes"][0]["displayName"] == "OpenAI"
    assert body["explanationModels"][0]["name"] == "gpt-4o-mini"
    assert body["explanationScoreTypes"][0]["name"] == "recall_alt"
    assert body["explanationScoreModelTypes"][0]["name"] == "gpt-4o-mini"


def test_global_includes_your_own_private_things(api_client, world, user, api_key_for):
    body = api_client.post("/api/global/", HTTP_X_API_KEY=api_key_for(user)).json()
    assert [m["id"] for m in body["models"]] == ["gpt2-small", "secret-model"]
    assert "secret-release" in [r["name"] for r in body["releases"]]
    sources = body["releases"][0]["sourceSets"][0]["sources"]
    assert [s["id"] for s in sources] == ["2-res-jb", "5-res-jb", "10-res-jb"]


def test_model_get_and_list(api_client, world):
    response = api_client.post("/api/model/get", {"id": "gpt2-small"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "gpt2-small" and body["displayName"] == "GPT2-Small"
    assert [s["name"] for s in body["sourceSets"]] == ["res-jb"]
    assert [m["id"] for m in api_client.post("/api/model/list/").json()] == ["gpt2-small"]
    assert [m["id"] for m in api_client.get("/api/model/list").json()] == ["gpt2-small"]


def test_model_get_unlisted_by_link_private_404_unknown_404_missing_id_400(api_client, world):
    assert api_client.post("/api/model/get", {"id": "unlisted-model"}, format="json").status_code == 200
    private = api_client.post("/api/model/get", {"id": "secret-model"}, format="json")
    assert private.status_code == 404 and "secret-model" in private.json()["message"]
    assert api_client.post("/api/model/get", {"id": "nope"}, format="json").status_code == 404
    missing = api_client.post("/api/model/get", {}, format="json")
    assert missing.status_code == 400 and missing.json()["message"].startswith("id:")


def test_source_set_get_returns_its_listed_sources(api_client, world):
    response = api_client.get("/api/source-set/gpt2-small/res-jb")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "res-jb" and body["releaseName"] == "res-jb-release"
    assert all(wire in body for wire in SOURCE_SET_FIELDS)
    assert [s["id"] for s in body["sources"]] == ["2-res-jb", "10-res-jb"]
    assert api_client.get("/api/source-set/gpt2-small/att-kk/").status_code == 200  # UNLISTED: by link


def test_source_set_unknown_model_or_set_is_404(api_client, world):
    model = api_client.get("/api/source-set/nope/res-jb")
    assert model.status_code == 404 and "nope" in model.json()["message"]
    assert api_client.get("/api/source-set/gpt2-small/nope").status_code == 404


def test_source_get_is_a_memicos_extra_with_visibility(api_client, world, user, api_key_for):
    response = api_client.get("/api/source/gpt2-small/10-res-jb")
    assert response.status_code == 200
    body = response.json()
    assert all(wire in body for wire in SOURCE_FIELDS)
    assert (body["id"], body["setName"], body["sourceSet"]["name"], body["model"]["id"]) == (
        "10-res-jb", "res-jb", "res-jb", "gpt2-small",
    )  # fmt: skip
    assert api_client.get("/api/source/gpt2-small/5-res-jb").status_code == 404
    owner = api_client.get("/api/source/gpt2-small/5-res-jb/", HTTP_X_API_KEY=api_key_for(user))
    assert owner.status_code == 200


def test_unknown_api_route_is_a_json_404(api_client):
    response = api_client.get("/api/no/such/route")
    assert response.status_code == 404 and "message" in response.json()
