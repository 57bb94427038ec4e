"""Explain → embed → search, scoping, paging, exact phrases first, and visibility."""

import pytest

from autointerp.services import explanation_create_human
from features.models import Explanation, Visibility
from tests.autointerp.planted import TOPICS, planted_source
from tests.factories import FeatureFactory, SourceFactory

pytestmark = pytest.mark.django_db


def _human(user, feature, text, capture):
    with capture(execute=True):  # the embedding task runs on commit (eagerly in tests)
        return explanation_create_human(user=user, feature=feature, text=text)


def _search(api_client, route="search-all", **body):
    response = api_client.post(f"/api/explanation/{route}", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_a_human_explanation_is_embedded_and_found_by_a_paraphrase(
    user, api_client, django_capture_on_commit_callbacks
):
    source, features = planted_source()
    for topic, feature in features.items():
        _human(user, feature, TOPICS[topic][0], django_capture_on_commit_callbacks)
    stored = Explanation.objects.get(feature=features["birds"])
    assert stored.embedding is not None and len(stored.embedding) == 384 and stored.type_id == "human"
    body = _search(api_client, query="feathered animals that fly and sing")
    top = body["results"][0]
    assert (top["modelId"], top["layer"], top["index"]) == (source.model_id, source.name, "0")
    assert top["description"] == "parrots and other birds" and top["typeName"] == "human"
    assert 0 < top["cosine_similarity"] <= 1 and len(top["neuron"]["activations"]) == 3
    assert top["neuron"]["activations"][0]["maxValue"] == 6.0
    assert body["resultsCount"] == 3 and body["hasMore"] is False and body["nextOffset"] is None
    rain = _search(api_client, query="bad weather with showers")["results"][0]
    assert rain["index"] == "2"


def test_generated_explanation_is_stored_with_type_model_and_prompt_version_then_searchable(
    user, api_client, api_key_for, llm_env, django_capture_on_commit_callbacks
):
    source, features = planted_source()
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(
            "/api/explanation/generate",
            {"modelId": source.model_id, "layer": source.name, "index": 0, "explanationType": "np_max-act"},
            format="json", HTTP_X_API_KEY=api_key_for(user),
        )  # fmt: skip
    assert response.status_code == 200, response.content
    body = response.json()["explanation"]
    assert body["typeName"] == "np_max-act" and body["explanationModelName"] == "smollm2-135m-instruct"
    row = Explanation.objects.get(id=body["id"])
    assert row.prompt_version == "np_max-act@1" and row.triggered_by == user and row.embedding is not None
    again = api_client.post(
        "/api/explanation/generate",
        {"modelId": source.model_id, "layer": source.name, "index": 0, "explanationType": "np_max-act"},
        format="json", HTTP_X_API_KEY=api_key_for(user),
    )  # fmt: skip
    assert again.status_code == 400 and "already" in again.json()["message"]
    hits = _search(api_client, query=row.description[:200] if len(row.description) >= 3 else "parrot")["results"]
    assert hits[0]["description"] == row.description


def test_exact_phrase_matches_rank_before_semantic_neighbours(user, api_client, django_capture_on_commit_callbacks):
    source = SourceFactory()
    texts = ["savings and checking deposits at banks", "money kept in a bank account", "rivers and their banks"]
    for i, text in enumerate(texts):
        _human(
            user, FeatureFactory(source=source, model=source.model, index=i), text, django_capture_on_commit_callbacks
        )
    results = _search(api_client, query="a bank account")["results"]
    assert results[0]["description"] == "money kept in a bank account" and results[0]["exactMatch"] is True
    assert [r["exactMatch"] for r in results[1:]] == [False, False]


def test_search_pages_by_twenty_and_scopes_by_model_release_and_sources(
    user, api_client, django_capture_on_commit_callbacks
):
    source = SourceFactory()
    other = SourceFactory()
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(23):
            f = FeatureFactory(source=source, model=source.model, index=i)
            explanation_create_human(user=user, feature=f, text=f"bird species number {i}")
        explanation_create_human(user=user, feature=FeatureFactory(source=other, model=other.model, index=0),
                                 text="bird species elsewhere")  # fmt: skip
    first = _search(api_client, "search-model", query="bird species", modelId=source.model_id)
    assert first["resultsCount"] == 20 and first["hasMore"] is True and first["nextOffset"] == 20
    second = _search(api_client, "search-model", query="bird species", modelId=source.model_id, offset=20)
    assert second["resultsCount"] == 3 and second["hasMore"] is False
    seen = {r["index"] for r in first["results"] + second["results"]}
    assert len(seen) == 23
    assert all(r["modelId"] == source.model_id for r in first["results"] + second["results"])
    by_source = _search(api_client, "search", query="bird species", modelId=other.model_id, layers=[other.name])
    assert [r["description"] for r in by_source["results"]] == ["bird species elsewhere"]
    release = _search(api_client, "search-release", query="bird species",
                      releaseName=other.source_set.release_id)  # fmt: skip
    assert [r["layer"] for r in release["results"]] == [other.name]


@pytest.mark.parametrize("where", ["source", "model", "source_set"])
def test_private_and_unlisted_sources_never_appear_in_search_for_others(
    where, user, other_user, api_client, django_capture_on_commit_callbacks
):
    hidden = SourceFactory()
    owner_rows = {"source": hidden, "model": hidden.model, "source_set": hidden.source_set}
    row = owner_rows[where]
    row.visibility, row.creator = Visibility.PRIVATE, user
    row.save()
    public = SourceFactory()
    with django_capture_on_commit_callbacks(execute=True):
        explanation_create_human(user=user, feature=FeatureFactory(source=hidden, model=hidden.model, index=0),
                                 text="secret parrot detector")  # fmt: skip
        explanation_create_human(user=user, feature=FeatureFactory(source=public, model=public.model, index=0),
                                 text="public parrot detector")  # fmt: skip
    anonymous = [r["description"] for r in _search(api_client, query="parrot detector")["results"]]
    assert anonymous == ["public parrot detector"]
    api_client.force_authenticate(other_user)
    assert [r["description"] for r in _search(api_client, query="parrot detector")["results"]] == anonymous
    api_client.force_authenticate(user)
    mine = {r["description"] for r in _search(api_client, query="parrot detector")["results"]}
    assert mine == {"secret parrot detector", "public parrot detector"}
    api_client.force_authenticate(None)
    row.visibility = Visibility.UNLISTED
    row.save()
    assert [r["description"] for r in _search(api_client, query="parrot detector")["results"]] == anonymous


def test_search_validates_the_query(api_client):
    response = api_client.post("/api/explanation/search-all", {"query": "ab"}, format="json")
    assert response.status_code == 400 and "query" in response.json()["message"]
