"""Neuronpedia's client reads features and keeps lists against a live memicos server, call by call."""

import pytest
import requests

from features.models import List, ListItem

FEATURE = ("gpt2-small", "6-res-jb", 7)


def test_feature_request_get_reads_the_feature_its_activations_and_explanations(key, served_feature):
    from neuronpedia.requests.feature_request import FeatureRequest

    feature = FeatureRequest(api_key=key).get(*FEATURE)

    assert (feature.modelId, feature.source, int(feature.index)) == FEATURE
    assert feature.density == pytest.approx(0.0123)
    assert sorted(max(a.values) for a in feature.activations) == [1.5, 5.5]
    assert {(a.modelId, a.source, a.index) for a in feature.activations} == {FEATURE}
    assert [(e.text, e.source, e.index, e.method, e.explainer_model) for e in feature.explanations] == [
        ("talking birds", "6-res-jb", 7, "oai_token-act-pair", "gpt-4o-mini")
    ]


def test_sae_feature_request_get_returns_the_raw_json(key, served_feature):
    import json

    from neuronpedia.requests.sae_feature_request import SAEFeatureRequest

    sae_feature = SAEFeatureRequest(api_key=key).get(*FEATURE)

    assert (sae_feature.modelId, sae_feature.source) == FEATURE[:2]
    assert json.loads(sae_feature.jsonData)["frac_nonzero"] == pytest.approx(0.0123)


def test_feature_request_get_of_an_unknown_feature_raises_the_clients_not_found(key, served_feature):
    from neuronpedia.requests.feature_request import FeatureRequest

    with pytest.raises(requests.exceptions.HTTPError, match="not found: 404"):
        FeatureRequest(api_key=key).get("gpt2-small", "6-res-jb", 99999)


def test_a_bad_api_key_raises_the_clients_unauthorized_error(np_base, served_feature):
    from neuronpedia.requests.base_request import NPUnauthorizedError
    from neuronpedia.requests.list_request import ListRequest

    with pytest.raises(NPUnauthorizedError):
        ListRequest(api_key="not-a-key").get_owned()


def test_list_request_new_add_items_get_and_get_owned_round_trip(key, user, served_feature):
    from neuronpedia.np_list import NPListItem
    from neuronpedia.requests.list_request import ListRequest

    lists = ListRequest(api_key=key)
    created = lists.new("birds", "bird features")
    assert (created.name, created.description, created.items) == ("birds", "bird features", [])
    assert List.objects.get(pk=created.id).user == user

    added = lists.add_items(created, [NPListItem(model_id="gpt2-small", source="6-res-jb", index="7", description="x")])
    assert [(i.model_id, i.source, str(i.index)) for i in added.items] == [("gpt2-small", "6-res-jb", "7")]
    assert ListItem.objects.get(list_id=created.id).description == "x"

    fetched = lists.get(created.id)
    assert (fetched.id, fetched.name, fetched.description) == (created.id, "birds", "bird features")
    assert [(i.model_id, i.source, str(i.index)) for i in fetched.items] == [("gpt2-small", "6-res-jb", "7")]

    owned = lists.get_owned()
    assert [(x.id, x.name) for x in owned] == [(created.id, "birds")]


def test_list_request_add_items_to_someone_elses_list_is_refused(key, other_key, served_feature):
    from neuronpedia.np_list import NPListItem
    from neuronpedia.requests.list_request import ListRequest

    theirs = ListRequest(api_key=other_key).new("theirs")
    with pytest.raises(requests.exceptions.HTTPError, match="403"):
        ListRequest(api_key=key).add_items(theirs, [NPListItem(model_id="gpt2-small", source="6-res-jb", index="7")])
    assert not ListItem.objects.filter(list_id=theirs.id).exists()


def test_vector_request_new_get_get_owned_and_delete(key, user, served_feature):
    from neuronpedia.requests.vector_request import VectorRequest

    vectors = VectorRequest(api_key=key)
    values = [0.5, -0.25] * 32  # the test model's dimension is 64
    made = vectors.new(label="birdness", model_id="gpt2-small", layer_num=6, hook_type="hook_resid_post", vector=values)
    assert (made.model_id, made.source, made.label, made.hook_name) == (
        "gpt2-small",
        "6-neuronpedia-resid-post",
        "birdness",
        "blocks.6.hook_resid_post",
    )
    assert made.values == values and made.default_steer_strength == 10

    got = vectors.get("gpt2-small", made.source, made.index)
    assert got == made
    assert [v.index for v in vectors.get_owned()] == [made.index]

    vectors.delete(made)
    assert vectors.get_owned() == []
    with pytest.raises(requests.exceptions.HTTPError, match="404"):
        vectors.get("gpt2-small", made.source, made.index)
