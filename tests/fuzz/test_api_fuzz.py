"""Property-based fuzzing of every operation in the committed openapi.yaml (schemathesis), in-process over WSGI.

Each operation gets valid (positive) and invalid (negative) requests generated from its schema, sent with a real
user's `x-api-key` to the Django app on a migrated database that holds a public model, source, features,
explanation, list, comment and steer output of that user. A hook swaps generated identifiers for the stored ones
in about half the cases, so requests get past the 404s into the code behind them. Every response must:

- not be a 5xx, except a 503 (a route whose worker or LLM endpoint is not there says so);
- have a status code and content type that the schema documents for the operation, and a body matching its schema.

Not checked: that every schema-violating request is refused. DRF coerces as Neuronpedia's validation does (a
number where a string is documented becomes the string, "5" where an integer is documented becomes 5), and
clients rely on it; what must not happen is a 5xx or an undocumented answer, whatever the input.

No worker runs. Routes that queue work (inference, steering, batch jobs) do so for real: with no model worker
they must answer the documented 503, job routes answer with the queued job (the queues are emptied afterwards).
The routes that wait for an embedding or an LLM call run it in-process (Celery eager): the local embedder, and an
LLM endpoint where nothing listens. Every example runs in a savepoint rolled back afterwards, so examples do not
see each other's writes, and generation is derandomized, so a run is reproducible.
"""

import os

import pytest
import schemathesis
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ROOT, purge_queues

pytestmark = pytest.mark.slow

# Per operation and generation mode (57 operations). FUZZ_MAX_EXAMPLES raises it for a deeper local run.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))

schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml")
schema.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])


def no_server_error_but_503(ctx, response, case):
    """A 5xx is a failure, except 503: the documented "no worker / no LLM endpoint" answer."""
    if response.status_code >= 500 and response.status_code != 503:
        raise AssertionError(f"Server error {response.status_code}: {response.text[:500]}")


CHECKS = [no_server_error_but_503, status_code_conformance, content_type_conformance, response_schema_conformance]
# Operations that wait for an embedding or LLM call: their tasks run in-process (there is no worker).
EAGER_OPERATIONS = {
    "explanation_search_all",
    "explanation_search",
    "explanation_search_model",
    "explanation_search_release",
    "explanation_generate",
    "explanation_score",
}

# The stored objects the hook may name instead of generated identifiers.
KNOWN = {
    "modelId": "fuzz-model",
    "id": "fuzz-model",
    "model_id": "fuzz-model",
    "targetModelId": "fuzz-model",
    "layer": "0-res-fuzz",
    "source": "0-res-fuzz",
    "source_id": "0-res-fuzz",
    "targetSourceId": "0-res-fuzz",
    "sourceSet": "res-fuzz",
    "name": "res-fuzz",
    "releaseName": "fuzz-release",
    "index": 1,
    "listId": "fuzzlist0001",
    "commentId": "fuzzcomment0001",
    "explanationId": "fuzzexpl0001",
    "explanation_id": "fuzzexpl0001",
    "steerOutputId": "fuzzsteer0001",
}


def _known(value, key=None):
    """Replace identifier fields (at any depth) by stored ones, keeping their generated type when it is not ours."""
    if isinstance(value, dict):
        return {k: _known(v, k) for k, v in value.items()}
    if isinstance(value, list):
        if key in ("layers", "selectedLayers") and all(isinstance(v, str) for v in value):
            return ["0-res-fuzz"] if value else value
        return [_known(v) for v in value]
    if key in KNOWN and isinstance(value, type(KNOWN[key])) and not isinstance(value, bool):
        return KNOWN[key]
    return value


@schema.hook
def flatmap_body(context, body):
    return st.sampled_from([body, _known(body)])


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    if not path_parameters:
        return st.just(path_parameters)
    known = {k: (str(v) if k == "index" else v) for k, v in _known(path_parameters).items()}
    if "index" in path_parameters and not isinstance(path_parameters["index"], str):
        known["index"] = KNOWN["index"]
    return st.sampled_from([path_parameters, known])


@pytest.fixture
def fuzz_data(db, monkeypatch):
    """A public model/source with features, activations, an explanation, a list, a comment and a steer output,
    all owned by the user whose API key the fuzzer sends."""
    from features.models import Comment, Explanation, List, SteerOutput
    from features.services.api_keys import api_key_create
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

    user = UserFactory(username="fuzzer")
    model = ModelFactory(id="fuzz-model", creator=user, inference_enabled=True)
    release = ReleaseFactory(name="fuzz-release")
    source_set = SourceSetFactory(model=model, name="res-fuzz", release=release, creator=user)
    # an SAE path (never loaded: no worker runs) lets inference requests get as far as admission, and its 503
    source = SourceFactory(source_set=source_set, name="0-res-fuzz", creator=user, sae_path="/nonexistent/sae")
    features = [FeatureFactory(source=source, index=i) for i in range(3)]
    for feature in features:
        ActivationFactory(feature=feature)
    ExplanationFactory(feature=features[1], id="fuzzexpl0001")
    ListFactory(user=user, id="fuzzlist0001")
    Comment.objects.create(id="fuzzcomment0001", feature=features[1], user=user, text="a comment")
    SteerOutput.objects.create(id="fuzzsteer0001", model=model, type="DEFAULT", input_text="hello", output_text="hi")
    assert Explanation.objects.filter(pk="fuzzexpl0001").exists() and List.objects.filter(pk="fuzzlist0001").exists()
    # Autointerp routes run in-process; their LLM endpoint is a port where nothing listens.
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("AUTOINTERP_LLM_RETRIES", "0")
    monkeypatch.setenv("AUTOINTERP_LLM_TIMEOUT", "2")
    return {"headers": {"x-api-key": api_key_create(user=user, name="fuzz")[1]}}


@pytest.fixture
def empty_queues():
    """Jobs queued by the fuzzed routes (no worker runs) are dropped afterwards, not left to later tests' workers."""
    yield
    purge_queues()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_fuzzed_input_with_a_documented_non_5xx_response(
    case, fuzz_data, wsgi_handler, empty_queues
):
    from memicos_site.celery import app as celery_app

    celery_app.conf.task_always_eager = case.operation.definition.raw.get("operationId") in EAGER_OPERATIONS
    savepoint = transaction.savepoint()
    try:
        response = case.call(app=wsgi_handler, headers=fuzz_data["headers"])
    finally:
        transaction.savepoint_rollback(savepoint)
        celery_app.conf.task_always_eager = True
    case.validate_response(response, checks=CHECKS, headers=fuzz_data["headers"])
