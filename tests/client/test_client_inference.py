"""Neuronpedia's client runs the model through a live server: activations, search-all, top-k by token, steering.

The tiny random model and SAEs of tests/inference run in the web process (eager Celery), as in tests/inference's
page tests. Sources are named `<layer>-<set>` as the client assumes (it derives the set from the source id).
"""

import pytest

from tests.inference.conftest import D_SAE, TINY_ID, TINY_LOADER, sae_dirs  # noqa: F401  (sae_dirs: a fixture)

pytestmark = [pytest.mark.slow]

TEXT = "The quick brown fox jumps over the lazy dog"


@pytest.fixture
def tiny(db, sae_dirs):  # noqa: F811
    from features.models import Feature
    from tests.factories import ModelFactory, SourceFactory, SourceSetFactory

    model = ModelFactory(id=TINY_ID, loader=TINY_LOADER, inference_enabled=True, layers=2, dimension=64)
    source_set = SourceSetFactory(model=model, name="res-t", allow_inference_search=True)
    sources = []
    for name, sae in (("0-res-t", "0-res-std"), ("1-res-t", "1-res-jump")):
        source = SourceFactory(
            source_set=source_set, model=model, name=name, sae_path=str(sae_dirs[sae]), inference_enabled=True
        )
        Feature.objects.bulk_create(
            Feature(model=model, source=source, index=i, frac_nonzero=0.001) for i in range(D_SAE)
        )
        sources.append(source)
    return sources


def test_activation_request_computes_one_feature_on_one_text_and_on_many(key, tiny):
    from neuronpedia.requests.activation_request import ActivationRequest

    acts = ActivationRequest(api_key=key)
    one = acts.compute_activation_for_text(TINY_ID, "0-res-t", 3, TEXT)
    assert len(one.tokens) == len(one.values) > 5 and (one.modelId, one.source, one.index) == (TINY_ID, "0-res-t", "3")

    many = acts.compute_activation_for_texts(TINY_ID, "0-res-t", "3", [TEXT, "A second text"])
    assert [a.tokens for a in many][0] == one.tokens and many[0].values == pytest.approx(one.values, abs=1e-5)
    assert len(many) == 2 and len(many[1].tokens) == len(many[1].values)


def test_activation_request_computes_every_feature_of_a_source(key, tiny):
    from neuronpedia.requests.activation_request import ActivationRequest

    results = ActivationRequest(api_key=key).compute_all_source_activations_for_text(TINY_ID, "1-res-t", [TEXT])
    assert len(results) == 1 and results[0]["tokens"] and results[0]["activeFeatures"]


def test_source_activation_request_finds_top_features_across_the_set(key, tiny):
    from neuronpedia.requests.source_activation_request import SourceActivationRequest

    search = SourceActivationRequest(api_key=key)
    top = search.compute_top_features_for_text(TINY_ID, ["0-res-t", "1-res-t"], TEXT, num_results=5)
    assert 0 < len(top) <= 5 and {a.source for a in top} <= {"0-res-t", "1-res-t"}
    assert all(len(a.values) == len(a.tokens) for a in top)
    maxima = [max(a.values) for a in top]
    assert maxima == sorted(maxima, reverse=True)

    batch = search.compute_top_features_for_texts(TINY_ID, "0-res-t", [TEXT, "Another one"], num_results=3)
    assert len(batch) == 2 and all(0 < len(acts) <= 3 for acts in batch)
    assert {a.source for acts in batch for a in acts} == {"0-res-t"}


def test_topk_by_token_request_with_the_clients_default_density_threshold(key, tiny):
    from neuronpedia.requests.topk_by_token_request import TopKByTokenRequest

    topk = TopKByTokenRequest(api_key=key)
    rows = topk.compute_top_features_by_token_for_text(TINY_ID, "0-res-t", TEXT, num_results=3)
    assert rows and [r.position for r in rows] == sorted(r.position for r in rows)
    assert all(len(r.topFeatures) <= 3 for r in rows) and any(r.topFeatures for r in rows)
    assert all(f.feature.source == "0-res-t" and 0 <= f.feature.index < D_SAE for r in rows for f in r.topFeatures)

    batch = topk.compute_top_features_by_token_for_texts(TINY_ID, "0-res-t", [TEXT, "Two"], num_results=2)
    assert len(batch) == 2 and [r.token for r in batch[0]] == [r.token for r in rows]


def test_steer_completion_request_steers_with_features_and_with_a_vector(key, user, tiny):
    from neuronpedia.np_feature import SteerFeature
    from neuronpedia.requests.steer_request import SteerCompletionRequest
    from neuronpedia.requests.vector_request import VectorRequest

    steer = SteerCompletionRequest(api_key=key)
    feature = SteerFeature(modelId=TINY_ID, source="0-res-t", index=5, strength=40)
    answer = steer.steer_features(TINY_ID, [feature], "Once upon a time", n_tokens=4)
    # the client hands back the raw JSON: Neuronpedia's {STEERED, DEFAULT, id, ...}
    assert answer["STEERED"].startswith("Once upon a time") and answer["DEFAULT"].startswith("Once upon a time")
    assert answer["STEERED"] != answer["DEFAULT"] and answer["id"]

    vector = VectorRequest(api_key=key).new(
        label="v", model_id=TINY_ID, layer_num=0, hook_type="hook_resid_post", vector=[0.5] * 64
    )
    by_vector = steer.steer(TINY_ID, [vector], "Once upon a time", n_tokens=4)
    assert by_vector["STEERED"] and by_vector["DEFAULT"] == answer["DEFAULT"]
    import neuronpedia

    with neuronpedia.api_key(key):  # the NPVector helpers make their requests with the context's key
        on_text = vector.compute_activation_for_text("Hello there")
    assert len(on_text.values) == len(on_text.tokens) > 1


def test_steer_chat_request_steers_a_chat_with_features(key, tiny):
    from neuronpedia.np_feature import SteerFeature
    from neuronpedia.requests.steer_request import SteerChatRequest

    feature = SteerFeature(modelId=TINY_ID, source="0-res-t", index=5, strength=40)
    messages = [{"role": "user", "content": "Hi"}]
    answer = SteerChatRequest(api_key=key).steer_features(TINY_ID, [feature], messages, messages, n_tokens=4)
    assert answer["STEERED"]["chatTemplate"][0] == {"role": "user", "content": "Hi"}
    assert answer["STEERED"]["raw"] != answer["DEFAULT"]["raw"]
    assert [(f["layer"], f["index"]) for f in answer["features"]] == [("0-res-t", 5)]


def test_a_vectors_own_helpers_steer_a_chat_and_upload_activations_to_it(key, tiny):
    import neuronpedia
    from neuronpedia.np_activation import Activation as NPActivation
    from neuronpedia.np_vector import NPVector

    from features.models import Feature

    with neuronpedia.api_key(key):
        vector = NPVector.new(label="v", model_id=TINY_ID, layer_num=0, hook_type="hook_resid_post", vector=[0.5] * 64)
        answer = vector.steer_chat([{"role": "user", "content": "Hi"}])
        act = NPActivation(modelId=TINY_ID, source=vector.source, index=vector.index, tokens=["a", "b"], values=[0, 2])
        uploaded = vector.upload_activations([act])
    assert answer["STEERED"]["raw"] and answer["DEFAULT"]["raw"]
    assert uploaded == {"message": "Uploaded 1 activation(s)."}
    assert Feature.objects.get(source__name=vector.source, index=vector.index).activations.count() == 1


def test_the_client_is_served_by_a_real_inference_worker_process(key, tiny, start_worker):
    """The same calls through a `celery worker` on the model's queue (the deployment's path), not eager mode."""
    import time

    from neuronpedia.requests.activation_request import ActivationRequest
    from neuronpedia.requests.topk_by_token_request import TopKByTokenRequest

    from inference.selectors import heartbeat_key, redis_client
    from memicos_site.queues import inference_queue

    start_worker([inference_queue(TINY_ID)], name="client-inf")
    deadline = time.monotonic() + 60
    while not redis_client().zcard(heartbeat_key(TINY_ID)) and time.monotonic() < deadline:
        time.sleep(0.1)

    one = ActivationRequest(api_key=key).compute_activation_for_text(TINY_ID, "1-res-t", "7", TEXT)
    assert len(one.tokens) == len(one.values) > 5
    rows = TopKByTokenRequest(api_key=key).compute_top_features_by_token_for_text(TINY_ID, "1-res-t", TEXT)
    assert [r.token for r in rows] == one.tokens
