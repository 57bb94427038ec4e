"""Neuronpedia's client creates a model and a source set, and uploads features into them, against a live server."""

import pytest
import requests

from features.models import Activation, Explanation, Feature, Model, Source, SourceSet, Visibility


def _feature(index, *, density=None, explanations=True, logits=False):
    from neuronpedia.np_activation import Activation as NPActivation
    from neuronpedia.np_explanation import Explanation as NPExplanation
    from neuronpedia.np_feature import Feature as NPFeature
    from neuronpedia.np_feature import Logit

    key = {"modelId": "pup-model-3", "source": "1-puppyscope-res", "index": index}
    return NPFeature(
        **key,
        density=density,
        top_logits=[Logit(token=" dog", value=1.5)] if logits else None,
        bottom_logits=None,
        explanations=[NPExplanation(**key, text=f"puppies {index}")] if explanations else None,
        activations=[
            NPActivation(**key, tokens=["A", " puppy", " barks"], values=[0.0, 2.5 + index, 0.5]),
            NPActivation(**key, tokens=["no", " dog"], values=[0.0, 0.25], quantileMin=0.0, quantileMax=1.0),
        ],
    )


@pytest.fixture
def pup_set(key):
    """What the client's docstring walks through: a 3-layer model and a source set on it."""
    from neuronpedia.requests.model_request import ModelRequest
    from neuronpedia.requests.source_set_request import SourceSetRequest

    ModelRequest(api_key=key).new("pup-model-3", 3)
    return SourceSetRequest(api_key=key).new("puppyscope-res", "pup-model-3", "Residual - 16k", "https://example.org/p")


def test_model_request_new_without_a_display_name_makes_an_unlisted_model_of_the_user(key, user):
    from neuronpedia.requests.model_request import ModelRequest

    model = ModelRequest(api_key=key).new("pup-model-3", 3)

    assert (model.id, model.layers, model.display_name, model.url) == ("pup-model-3", 3, "pup-model-3", "")
    row = Model.objects.get(pk="pup-model-3")
    assert (row.visibility, row.creator, row.layers) == (Visibility.UNLISTED, user, 3)


def test_model_request_new_with_a_display_name_and_url_keeps_them(key):
    from neuronpedia.requests.model_request import ModelRequest

    model = ModelRequest(api_key=key).new("kitten-2", 2, display_name="Kitten 2", url="https://example.org/k")
    assert (model.display_name, model.url) == ("Kitten 2", "https://example.org/k")


def test_model_request_new_refuses_a_taken_id_and_a_bad_id_with_a_400_naming_it(key, other_key):
    from neuronpedia.requests.model_request import ModelRequest

    ModelRequest(api_key=key).new("pup-model-3", 3)
    with pytest.raises(requests.exceptions.HTTPError, match=r"400.*already exists"):
        ModelRequest(api_key=other_key).new("pup-model-3", 5)
    with pytest.raises(requests.exceptions.HTTPError, match=r"400.*id"):
        ModelRequest(api_key=key).new("Pup Model", 3)
    with pytest.raises(requests.exceptions.HTTPError, match=r"400.*layers"):
        ModelRequest(api_key=key).new("pup-model-4", 500)
    assert Model.objects.get(pk="pup-model-3").layers == 3


def test_source_set_request_new_makes_one_source_per_layer_named_layer_dash_set(user, pup_set):
    assert (pup_set.name, pup_set.model_id, pup_set.description, pup_set.url) == (
        "puppyscope-res",
        "pup-model-3",
        "Residual - 16k",
        "https://example.org/p",
    )
    assert [(s.id, s.model_id, s.set_name) for s in pup_set.sources] == [
        (f"{layer}-puppyscope-res", "pup-model-3", "puppyscope-res") for layer in range(3)
    ]
    assert pup_set.get_source_for_layer_number(2).id == "2-puppyscope-res"
    row = SourceSet.objects.get(model_id="pup-model-3", name="puppyscope-res")
    assert (row.visibility, row.creator) == (Visibility.UNLISTED, user)
    assert set(Source.objects.filter(source_set=row).values_list("visibility", "creator")) == {
        (Visibility.UNLISTED, user.pk)
    }


def test_source_set_request_get_reads_it_back_and_an_unknown_set_is_not_found(key, pup_set):
    from neuronpedia.requests.source_set_request import SourceSetRequest

    fetched = SourceSetRequest(api_key=key).get("pup-model-3", "puppyscope-res")
    assert fetched == pup_set
    with pytest.raises(requests.exceptions.HTTPError, match="404"):
        SourceSetRequest(api_key=key).get("pup-model-3", "nope")


def test_source_set_request_new_on_someone_elses_private_model_is_not_found(key, other_user):
    from neuronpedia.requests.source_set_request import SourceSetRequest

    Model.objects.create(id="secret-1", layers=2, visibility=Visibility.PRIVATE, creator=other_user)
    with pytest.raises(requests.exceptions.HTTPError, match="404"):
        SourceSetRequest(api_key=key).new("mine", "secret-1")
    assert not SourceSet.objects.filter(model_id="secret-1").exists()


def test_source_set_request_new_refuses_a_taken_or_reserved_name(key, other_key, pup_set):
    from neuronpedia.requests.source_set_request import SourceSetRequest

    with pytest.raises(requests.exceptions.HTTPError, match=r"400.*already exists"):
        SourceSetRequest(api_key=other_key).new("puppyscope-res", "pup-model-3")
    with pytest.raises(requests.exceptions.HTTPError, match=r"400.*reserved"):
        SourceSetRequest(api_key=key).new("neurons", "pup-model-3")
    assert SourceSet.objects.filter(model_id="pup-model-3").count() == 1


def test_upload_batch_without_density_or_logits_writes_features_activations_and_explanations(key, user, pup_set):
    source = pup_set.get_source_for_layer_number(1)
    from neuronpedia.requests.feature_request import FeatureRequest

    answer = FeatureRequest(api_key=key).upload_batch(
        "pup-model-3", source.id, [_feature(0), _feature(1, density=0.25, logits=True)]
    )

    assert answer["message"] == "Uploaded 2 feature(s)."
    rows = Feature.objects.filter(model_id="pup-model-3", source__name=source.id).order_by("index")
    assert [(f.index, f.frac_nonzero, f.pos_str, f.creator_id) for f in rows] == [
        (0, None, [], user.pk),
        (1, 0.25, [" dog"], user.pk),
    ]
    assert Activation.objects.filter(feature__in=rows).count() == 4
    assert sorted(Explanation.objects.filter(feature__in=rows).values_list("description", flat=True)) == [
        "puppies 0",
        "puppies 1",
    ]

    # and the client reads what it uploaded
    got = FeatureRequest(api_key=key).get("pup-model-3", source.id, 1)
    assert (got.density, [e.text for e in got.explanations]) == (0.25, ["puppies 1"])
    assert [max(a.values) for a in got.activations] == [3.5, 0.25]


def test_upload_batch_into_someone_elses_source_is_refused_and_writes_nothing(other_key, pup_set):
    from neuronpedia.requests.feature_request import FeatureRequest

    with pytest.raises(requests.exceptions.HTTPError, match=r"403.*owner"):
        FeatureRequest(api_key=other_key).upload_batch("pup-model-3", "1-puppyscope-res", [_feature(0)])
    assert not Feature.objects.filter(model_id="pup-model-3").exists()


def test_upload_batch_into_a_source_the_model_lacks_is_not_found(key, pup_set):
    from neuronpedia.requests.feature_request import FeatureRequest

    with pytest.raises(requests.exceptions.HTTPError, match="404"):
        FeatureRequest(api_key=key).upload_batch("pup-model-3", "3-puppyscope-res", [_feature(0)])


def test_activation_upload_batch_adds_activations_to_an_uploaded_feature(key, pup_set):
    from neuronpedia.np_activation import Activation as NPActivation
    from neuronpedia.requests.activation_request import ActivationRequest
    from neuronpedia.requests.feature_request import FeatureRequest

    FeatureRequest(api_key=key).upload_batch("pup-model-3", "1-puppyscope-res", [_feature(4, explanations=False)])
    extra = NPActivation(
        modelId="pup-model-3", source="1-puppyscope-res", index=4, tokens=["big", " puppy"], values=[0.0, 9.0]
    )
    answer = ActivationRequest(api_key=key).upload_batch("pup-model-3", "1-puppyscope-res", "4", [extra])

    assert answer == {"message": "Uploaded 1 activation(s)."}
    feature = Feature.objects.get(model_id="pup-model-3", source__name="1-puppyscope-res", index=4)
    assert feature.activations.count() == 3 and feature.max_act_approx == 9.0


def test_others_see_the_unlisted_set_but_not_its_sources_and_anonymous_uploads_are_refused(np_base, pup_set):
    import neuronpedia
    from neuronpedia.requests.base_request import NPUnauthorizedError
    from neuronpedia.requests.feature_request import FeatureRequest

    body = requests.get(f"{np_base}/api/source-set/pup-model-3/puppyscope-res").json()
    assert (body["name"], body["sources"]) == ("puppyscope-res", [])  # sources are listed only to their owner
    assert requests.get(f"{np_base}/api/model/list").json() == []
    with neuronpedia.api_key("np_not_a_key"), pytest.raises(NPUnauthorizedError):
        FeatureRequest().upload_batch("pup-model-3", "1-puppyscope-res", [_feature(0)])
