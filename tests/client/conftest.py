"""Neuronpedia's own python client (PyPI `neuronpedia` 1.2.1) pointed at a live memicos server.

Only its base URL changes: `NPRequest.BASE_URL` is a class attribute every request class inherits (the client
reads it once at import, from USE_LOCALHOST). The API key goes the client's documented way (`api_key=`).
"""

import pytest

from tests.factories import ActivationFactory, ExplanationFactory, FeatureFactory, SourceFactory, SourceSetFactory


@pytest.fixture
def np_base(live_server, monkeypatch):
    from neuronpedia.requests.base_request import NPRequest

    monkeypatch.setattr(NPRequest, "BASE_URL", f"{live_server.url}/api")
    return live_server.url


@pytest.fixture
def key(np_base, user, api_key_for):
    """A raw API key of `user`, with the client aimed at the live server."""
    return api_key_for(user)


@pytest.fixture
def other_key(np_base, other_user, api_key_for):
    return api_key_for(other_user)


@pytest.fixture
def served_feature(db):
    """One imported-looking feature with two activations and an explanation, on a PUBLIC source."""
    from features.models import ExplanationModelType, ExplanationType
    from tests.factories import ModelFactory

    model = ModelFactory(id="gpt2-small", layers=12)
    source = SourceFactory(source_set=SourceSetFactory(model=model, name="res-jb"), model=model, name="6-res-jb")
    feature = FeatureFactory(source=source, model=model, index=7, frac_nonzero=0.0123)
    ActivationFactory(feature=feature)
    ActivationFactory(feature=feature, tokens=["a", " b"], values=[0.0, 1.5], max_value=1.5, max_value_token_index=1)
    ExplanationFactory(
        feature=feature,
        description="talking birds",
        type=ExplanationType.objects.create(name="oai_token-act-pair"),
        explanation_model=ExplanationModelType.objects.create(name="gpt-4o-mini"),
    )
    return feature
