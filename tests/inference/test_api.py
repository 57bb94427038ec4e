"""The live-inference API in Celery eager mode (tasks run in-process on the tiny model)."""

import json
import time

import pytest
import torch
from sae_lens import SAE

from features.models import SavedSearch, SteerOutput, SteerOutputFeature
from tests.inference.conftest import D_SAE, TINY_ID

pytestmark = pytest.mark.django_db


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def encode(lm, sae_dir, text):
    sae = SAE.load_from_disk(str(sae_dir))
    _, cache = lm.model.run_with_cache(lm.model.to_tokens(text))
    return sae.encode(cache[sae.cfg.metadata.hook_name][0])


def test_activation_new_returns_sae_encode_values_for_one_text_and_a_list(client, tiny_db, tiny_lm, sae_dirs):
    text = "The cat sat on the mat"
    enc = encode(tiny_lm, sae_dirs["0-res-std"], text)
    index = int(enc[1:].max(dim=0).values.argmax())
    body = {"feature": {"modelId": TINY_ID, "source": "0-res-std", "index": index}, "customText": text}
    r = post(client, "/api/activation/new", body)
    assert r.status_code == 200, r.content
    data = r.json()
    assert torch.allclose(torch.tensor(data["values"]), enc[1:, index], atol=1e-5)
    assert data["tokens"][0] == "The" and data["maxValueTokenIndex"] == int(enc[1:, index].argmax())
    assert (
        data["layer"] == "0-res-std"
        and data["index"] == str(index)
        and len(data["tokensIsSpecial"]) == len(data["tokens"])
    )
    legacy = post(client, "/api/activation/new/", {"neuron": {"modelId": TINY_ID, "layer": "0-res-std", "index": index},
                                                    "customText": [text, "another one"]})  # fmt: skip
    assert legacy.status_code == 200 and len(legacy.json()) == 2
    assert legacy.json()[0]["values"] == pytest.approx(data["values"], abs=1e-6)


def test_activation_new_on_a_vector_feature_and_ignore_bos(client, tiny_db, tiny_lm):
    feature = tiny_db["vector"]
    text = "a vector test"
    _, cache = tiny_lm.model.run_with_cache(tiny_lm.model.to_tokens(text))
    expected = cache["blocks.0.hook_resid_post"][0] @ torch.tensor(feature.vector)
    body = {"feature": {"modelId": TINY_ID, "source": feature.source.name, "index": feature.index}, "customText": text}
    data = post(client, "/api/activation/new", body).json()
    assert torch.allclose(torch.tensor(data["values"]), expected, atol=1e-4)  # BOS kept for vectors
    data = post(client, "/api/activation/new", {**body, "ignoreBos": True}).json()
    assert torch.allclose(torch.tensor(data["values"]), expected[1:], atol=1e-4) and data["tokens"][0] == "a"


def test_unknown_model_source_feature_are_404_and_bad_input_400(client, tiny_db):
    for ref, part in [({"modelId": "nope", "source": "0-res-std", "index": 1}, "nope"),
                      ({"modelId": TINY_ID, "source": "9-none", "index": 1}, "9-none"),
                      ({"modelId": TINY_ID, "source": "0-res-std", "index": D_SAE + 5}, str(D_SAE + 5))]:  # fmt: skip
        r = post(client, "/api/activation/new", {"feature": ref, "customText": "hi"})
        assert r.status_code == 404 and part in r.json()["message"]
    r = post(
        client,
        "/api/activation/new",
        {"feature": {"modelId": TINY_ID, "source": "0-res-std", "index": 1}, "customText": "x" * 5000},
    )
    assert r.status_code == 400 and "customText" in r.json()["message"]
    r = post(client, "/api/steer", {"modelId": TINY_ID, "prompt": "hi", "n_tokens": 257,
                                    "features": [{"modelId": TINY_ID, "layer": "0-res-std", "index": 1, "strength": 1}]})  # fmt: skip
    assert r.status_code == 400 and "n_tokens" in r.json()["message"]
    r = post(client, "/api/steer", {"modelId": TINY_ID, "prompt": "hi",
                                    "features": [{"modelId": TINY_ID, "layer": "0-res-std", "index": 1, "strength": 301}]})  # fmt: skip
    assert r.status_code == 400 and "strength" in r.json()["message"]


def test_a_prompt_longer_than_the_context_is_a_400_from_the_worker(client, tiny_db):
    r = post(client, "/api/tokenize", {"modelId": TINY_ID, "prompt": "word " * 10})
    assert r.status_code == 200
    long = " ".join(f"w{i}" for i in range(300))
    r = post(client, "/api/activation/source", {"modelId": TINY_ID, "source": "0-res-std", "customText": long})
    assert r.status_code == 400 and "context" in r.json()["message"]


def test_activation_source_lists_every_nonzero_feature(client, tiny_db, tiny_lm, sae_dirs):
    text = "all the features"
    enc = encode(tiny_lm, sae_dirs["1-res-jump"], text)[1:]
    r = post(client, "/api/activation/source", {"modelId": TINY_ID, "source": "1-res-jump", "customText": [text]})
    active = r.json()["results"][0]["activeFeatures"]
    assert sum(len(v) for v in active.values()) == int((enc != 0).sum())
    idx, pairs = next(iter(active.items()))
    assert pairs[0][1] == pytest.approx(float(enc[pairs[0][0], int(idx)]), abs=1e-5)


def test_search_all_ranks_features_filters_dense_ones_and_is_cached(client, tiny_db, tiny_lm, sae_dirs, monkeypatch):
    text = "search everything here"
    body = {"modelId": TINY_ID, "sourceSet": "res-t", "text": text, "selectedLayers": [], "sortIndexes": [],
            "ignoreBos": True, "densityThreshold": -1, "numResults": 20}  # fmt: skip
    r = post(client, "/api/search-all", body)
    assert r.status_code == 200, r.content
    data = r.json()
    best = []
    for name, path in sae_dirs.items():
        enc = encode(tiny_lm, path, text)
        enc[0] = 0
        best += [(float(v), name, i) for i, v in enumerate(enc.max(dim=0).values) if v > 0]
    best.sort(reverse=True)
    assert [(x["layer"], int(x["index"])) for x in data["result"]] == [(n, i) for _, n, i in best[:20]]
    assert data["result"][0]["neuron"]["index"] == data["result"][0]["index"]
    assert SavedSearch.objects.filter(model_id=TINY_ID).count() == 1
    # Cached: a second identical query must not reach the worker.
    from inference import tasks

    monkeypatch.setattr(tasks.search_all, "apply", lambda *a, **k: pytest.fail("not served from the cache"))
    assert post(client, "/api/search-all", body).json()["result"] == data["result"]
    monkeypatch.undo()
    dense = post(client, "/api/search-all", {**body, "densityThreshold": 0.1}).json()
    assert dense["result"] and all(int(x["index"]) % 10 != 0 for x in dense["result"])
    one = post(client, "/api/search-all", {**body, "selectedLayers": ["0-res-std"], "sortIndexes": [1, 2]}).json()
    assert {x["layer"] for x in one["result"]} == {"0-res-std"} and one["sortIndexes"] == [1, 2]
    r = post(client, "/api/search-all", {**body, "selectedLayers": ["7-missing"]})
    assert r.status_code == 404


def test_search_topk_by_token_and_tokenize_and_cossim(client, tiny_db, tiny_lm, sae_dirs):
    r = post(client, "/api/search-topk-by-token", {"modelId": TINY_ID, "source": "0-res-std", "text": "top k here",
                                                   "numResults": 3, "densityThreshold": -1})  # fmt: skip
    assert r.status_code == 200, r.content
    data = r.json()
    enc = encode(tiny_lm, sae_dirs["0-res-std"], "top k here")
    assert data["source"] == "0-res-std" and [x["position"] for x in data["results"]] == list(range(1, enc.shape[0]))
    first = data["results"][0]
    assert [f["featureIndex"] for f in first["topFeatures"]] == torch.topk(enc[1], 3).indices.tolist()
    assert first["topFeatures"][0]["feature"]["index"] == str(first["topFeatures"][0]["featureIndex"])
    tok = post(client, "/api/tokenize", {"modelId": TINY_ID, "prompt": "Hello world"}).json()
    assert tok["tokens"] == [1, *tiny_lm.tokenizer("Hello world")["input_ids"]] and tok["prependBos"] is True
    cs = post(
        client, "/api/cossim", {"modelId": TINY_ID, "source": "0-res-std", "index": 4, "targetSourceId": "1-res-jump"}
    )
    assert cs.status_code == 200, cs.content
    rows = cs.json()["topkDecoderCossimFeatures"]
    a, b = SAE.load_from_disk(str(sae_dirs["0-res-std"])), SAE.load_from_disk(str(sae_dirs["1-res-jump"]))
    cos = torch.nn.functional.cosine_similarity(b.W_dec, a.W_dec[4][None], dim=1)
    assert [x["feature"]["index"] for x in rows] == torch.topk(cos, 10).indices.tolist()
    assert rows[0]["feature"]["source"] == "1-res-jump"


def test_cossim_with_an_index_beyond_the_sae_is_a_400_naming_its_width(client, tiny_db):
    r = post(client, "/api/cossim", {"modelId": TINY_ID, "source": "0-res-std", "index": D_SAE + 5})
    assert r.status_code == 400 and f"d_sae={D_SAE}" in r.json()["message"]


def test_search_all_refuses_sort_indexes_the_database_cannot_store(client, tiny_db):
    body = {"modelId": TINY_ID, "sourceSet": "res-t", "text": "sort me"}
    r = post(client, "/api/search-all", {**body, "sortIndexes": [2**31]})
    assert r.status_code == 400 and "sortIndexes" in r.json()["message"]
    r = post(client, "/api/search-all", {**body, "sortIndexes": list(range(5000))})
    assert r.status_code == 400 and "sortIndexes" in r.json()["message"]
    assert not SavedSearch.objects.exists()


STEER = {"modelId": TINY_ID, "prompt": "Once upon a time", "temperature": 0.7, "n_tokens": 10, "seed": 5,
         "features": [{"modelId": TINY_ID, "layer": "0-res-std", "index": 3, "strength": 40}]}  # fmt: skip


def test_steer_returns_default_and_steered_caches_them_and_share_url_reloads(client, tiny_db):
    r = post(client, "/api/steer", STEER)
    assert r.status_code == 200, r.content
    data = r.json()
    assert data["DEFAULT"].startswith("Once upon a time") and data["STEERED"] != data["DEFAULT"]
    assert len(data["steeredLogProbs"]) == 10 and len(data["steeredLogProbs"][0]["topLogprobs"]) == 5
    assert data["shareUrl"].endswith(f"/steer/{data['id']}")
    assert SteerOutput.objects.count() == 2
    steered = SteerOutput.objects.get(id=data["id"])
    assert steered.type == "STEERED" and steered.connected_default_output.output_text == data["DEFAULT"]
    assert SteerOutputFeature.objects.get(steer_output=steered).strength == 40
    again = post(client, "/api/steer", STEER).json()
    assert again["id"] == data["id"] and SteerOutput.objects.count() == 2  # served from SteerOutput
    zero = post(client, "/api/steer", {**STEER, "features": [{**STEER["features"][0], "strength": 0}]}).json()
    assert zero["STEERED"] == zero["DEFAULT"] == data["DEFAULT"]
    load = post(client, "/api/steer-load", {"steerOutputId": data["id"]}).json()
    assert load["STEERED"] == data["STEERED"] and load["DEFAULT"] == data["DEFAULT"]
    assert load["settings"]["seed"] == 5 and load["features"][0]["index"] == 3 and load["inputText"] == STEER["prompt"]
    assert post(client, "/api/steer-load", {"steerOutputId": "nope"}).status_code == 404


def test_steer_methods_multiplier_and_vector_features(client, tiny_db):
    base = post(client, "/api/steer", STEER).json()
    ortho = post(client, "/api/steer", {**STEER, "steer_method": "ORTHOGONAL_DECOMP"}).json()
    assert ortho["DEFAULT"] == base["DEFAULT"] and ortho["id"] != base["id"]
    none = post(client, "/api/steer", {**STEER, "strengthMultiplier": 0}).json()
    assert none["STEERED"] == none["DEFAULT"]
    vec = tiny_db["vector"]
    body = {**STEER, "features": [{"modelId": TINY_ID, "layer": vec.source.name, "index": vec.index, "strength": 60}]}
    r = post(client, "/api/steer", body)
    assert r.status_code == 200 and r.json()["STEERED"] != r.json()["DEFAULT"]
    mixed = {**STEER, "features": [*STEER["features"], body["features"][0]]}
    assert post(client, "/api/steer", mixed).status_code == 400


def test_steer_chat_uses_the_template_and_refuses_models_without_one(client, tiny_db):
    messages = [{"role": "user", "content": "Tell me a story"}]
    body = {**STEER, "defaultChatMessages": messages, "steeredChatMessages": messages, "steer_special_tokens": False}
    body.pop("prompt")
    r = post(client, "/api/steer-chat", body)
    assert r.status_code == 200, r.content
    data = r.json()
    assert (
        data["DEFAULT"]["raw"].startswith("<|im_start|>") and data["DEFAULT"]["chatTemplate"][-1]["role"] == "assistant"
    )
    assert data["settings"]["steer_special_tokens"] is False and data["features"][0]["strength"] == 40
    load = post(client, "/api/steer-load", {"steerOutputId": data["id"]}).json()
    assert load["chat"] is True and load["STEERED"]["raw"] == data["STEERED"]["raw"]
    tiny_db["model"].__class__.objects.filter(id=TINY_ID)  # (same model row)
    from tests.factories import ModelFactory

    ModelFactory(
        id="tiny-notemplate", inference_enabled=True, loader={"kind": "tiny", "params": {"chat_template": False}}
    )
    from features.models import Feature

    f = tiny_db["vector"]
    Feature.objects.create(
        model_id="tiny-notemplate", source=f.source, index=1, has_vector=True, vector=f.vector, hook_name=f.hook_name
    )
    nt = {
        **body,
        "modelId": "tiny-notemplate",
        "features": [{"modelId": "tiny-notemplate", "layer": f.source.name, "index": 1, "strength": 1}],
    }
    r = post(client, "/api/steer-chat", nt)
    assert r.status_code == 400 and "chat template" in r.json()["message"]


def test_steer_stream_sends_cumulative_sse_frames_then_the_saved_result(client, tiny_db):
    r = post(client, "/api/steer", {**STEER, "stream": True, "seed": 9})
    assert r.status_code == 200 and r["Content-Type"].startswith("text/event-stream")
    frames = [
        json.loads(chunk[len("data: ") :]) for chunk in b"".join(r.streaming_content).decode().split("\n\n") if chunk
    ]
    assert len(frames) >= 3
    texts = [f["STEERED"] for f in frames[:-1] if f.get("STEERED")]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))  # cumulative
    final = frames[-1]
    assert final["id"] and final["STEERED"].startswith(texts[-1][: len(texts[-1]) // 2])
    plain = post(client, "/api/steer", {**STEER, "seed": 9}).json()
    assert plain["id"] == final["id"] and plain["STEERED"] == final["STEERED"]


def test_a_hung_up_stream_cancels_its_generation_and_the_worker_stops_at_the_next_token(
    wsgi_handler, tiny_db, monkeypatch
):
    import io
    import threading
    import uuid
    from wsgiref.util import setup_testing_defaults

    from inference import tasks
    from inference.selectors import redis_client, task_cancel_key

    sent, apply = [], tasks.steer.apply
    monkeypatch.setattr(
        tasks.steer, "apply", lambda args, **kw: sent.append((args, apply(args=args, **kw))) or sent[-1][1]
    )
    data = json.dumps({**STEER, "stream": True, "seed": 3, "n_tokens": 200}).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/steer", "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data)}  # fmt: skip
    setup_testing_defaults(environ)
    status = []
    body = wsgi_handler(environ, lambda s, headers, exc_info=None: status.append(s))  # as gunicorn calls it
    assert status == ["200 OK"] and next(iter(body)).startswith(b"data: ")
    body.close()  # what gunicorn does once a write to the gone client fails
    (((payload, stream_key), result),) = sent
    rc = redis_client()
    assert rc.exists(task_cancel_key(result.id)) and not rc.exists(stream_key)
    assert SteerOutput.objects.count() == 0  # nothing saved for a caller who left

    # The worker's side, streamed or not: it stops at the token after the cancel, and at once when cancelled while
    # it waited in the queue.
    for key in (f"{stream_key}-again", ""):
        task_id = uuid.uuid4().hex

        def cancel_soon(key=key, task_id=task_id):
            if key:
                rc.blpop([key], timeout=60)  # the first frame
            else:
                time.sleep(0.3)
            rc.set(task_cancel_key(task_id), 1, ex=60)

        thread = threading.Thread(target=cancel_soon)
        thread.start()
        value = apply(args=[payload, key], task_id=task_id).get()
        thread.join(5)
        assert value["cancelled"] and value["status"] == 499 and value["tokens"] < 200, value
        assert not key or not rc.exists(key)  # its partial frames are dropped with it
        assert apply(args=[payload, key], task_id=task_id).get()["tokens"] == 0  # cancelled before it started


def test_no_worker_is_503_fast_and_a_full_queue_is_503_with_retry_after(client, tiny_db, real_celery, monkeypatch):
    import time

    from inference.selectors import heartbeat_key, redis_client
    from memicos_site.queues import inference_queue

    r = redis_client()
    r.delete(heartbeat_key(TINY_ID), inference_queue(TINY_ID))
    t0 = time.monotonic()
    resp = post(client, "/api/steer", STEER)
    assert resp.status_code == 503 and "inference_worker" in resp.json()["message"] and resp["Retry-After"]
    assert time.monotonic() - t0 < 2
    stream = post(client, "/api/steer", {**STEER, "stream": True})
    assert stream.status_code == 503
    monkeypatch.setenv("MEMICOS_MAX_QUEUED", "3")
    r.zadd(heartbeat_key(TINY_ID), {"fake-worker": time.time()})
    r.rpush(inference_queue(TINY_ID), *["{}"] * 3)
    try:
        resp = post(client, "/api/activation/source", {"modelId": TINY_ID, "source": "0-res-std", "customText": "x"})
        assert resp.status_code == 503 and "busy" in resp.json()["message"] and resp["Retry-After"] == "5"
    finally:
        r.delete(heartbeat_key(TINY_ID), inference_queue(TINY_ID))
    assert SteerOutput.objects.count() == 0


def _in_flight(kind: str, units: int, n: int) -> dict:
    """`n` requests admitted a second ago, as inference_slot writes them (`kind:units:admitted:uuid` → deadline)."""
    import time

    return {f"{kind}:{units}:{time.time() - 1:.6f}:{k}": time.time() + 100 for k in range(n)}


def test_a_request_that_would_wait_past_its_deadline_is_refused_at_once_with_when_to_retry(
    client, tiny_db, real_celery, monkeypatch
):
    import time

    from features.models import Model
    from inference import services
    from inference.selectors import heartbeat_key, redis_client, service_key, service_record

    r, key = redis_client(), f"memicos:inference:inflight:{TINY_ID}"
    monkeypatch.setenv("MEMICOS_STEER_TIMEOUT", "60")
    r.zadd(heartbeat_key(TINY_ID), {"fake-worker": time.time() + 60})
    service_record(model_id=TINY_ID, kind="steer", units=100, seconds=30)  # 0.3 s a token, as a worker records it
    ahead = _in_flight("steer", 100, 3)  # 90 s of work admitted before
    r.zadd(key, ahead)
    try:
        for body in (STEER, {**STEER, "stream": True}):
            t0 = time.monotonic()
            resp = post(client, "/api/steer", body)
            assert resp.status_code == 503, resp.content
            assert time.monotonic() - t0 < 2
            # 90 s ahead + its own 10 tokens: it would fit 33 s from now
            assert "answered in about 93s, past its 60s deadline" in resp.json()["message"]
            assert resp["Retry-After"] == "33"
        assert sorted(m.decode() for m in r.zrange(key, 0, -1)) == sorted(ahead)  # the refused left no member
        model = Model.objects.get(id=TINY_ID)
        r.delete(key)
        r.zadd(key, _in_flight("steer", 100, 1))
        with services.inference_slot(model=model, timeout=60, kind="steer", units=10):
            assert r.zcard(key) == 2  # 30 s ahead + 3 s: admitted
        r.zadd(key, ahead)
        with services.inference_slot(model=model, timeout=60, kind="cossim", units=1):
            pass  # a kind no worker has timed yet: only the count of requests in flight limits it
        r.delete(key)
        with services.inference_slot(model=model, timeout=60, kind="steer", units=1000):
            pass  # 300 s with nothing ahead: refusing would not make it sooner
    finally:
        r.delete(heartbeat_key(TINY_ID), key, service_key(TINY_ID))
    assert SteerOutput.objects.count() == 0


def test_a_queued_request_gives_up_with_503_once_the_recorded_pace_says_it_cannot_be_answered_in_time(
    client, tiny_db, real_celery, monkeypatch
):
    """Admitted while no steer had been timed (a worker's first requests), it waits in the queue; when a worker
    records a pace at which the requests ahead of it outlast its deadline, it is refused then, not at the deadline."""
    import threading
    import time

    from inference.selectors import heartbeat_key, redis_client, service_key, service_record
    from memicos_site.queues import inference_queue

    r, key = redis_client(), f"memicos:inference:inflight:{TINY_ID}"
    monkeypatch.setenv("MEMICOS_STEER_TIMEOUT", "60")
    r.zadd(heartbeat_key(TINY_ID), {"silent-worker": time.time() + 60})  # "alive", never takes the request
    r.zadd(key, _in_flight("steer", 100, 3))
    timer = threading.Timer(2, lambda: service_record(model_id=TINY_ID, kind="steer", units=100, seconds=30))
    timer.start()
    try:
        t0 = time.monotonic()
        resp = post(client, "/api/steer", STEER)
        elapsed = time.monotonic() - t0
        assert resp.status_code == 503, resp.content
        assert "past its 60s deadline" in resp.json()["message"] and int(resp["Retry-After"]) > 0
        assert 2 <= elapsed < 6  # refused once the pace was known, 54 s before the deadline's 504
        assert r.zcard(key) == 3  # its own member is gone
    finally:
        timer.cancel()
        r.delete(heartbeat_key(TINY_ID), key, service_key(TINY_ID), inference_queue(TINY_ID))
    assert SteerOutput.objects.count() == 0


def test_the_schema_documents_the_inference_routes(client):
    r = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert r.status_code == 200
    text = r.content.decode()
    for path in ("/api/activation/new", "/api/search-all", "/api/steer-chat", "/api/steer-load", "/api/cossim"):
        assert path in text


def test_a_request_nobody_answers_times_out_with_a_504_json_error(client, tiny_db, real_celery, monkeypatch):
    import time

    from inference.selectors import heartbeat_key, redis_client
    from memicos_site.queues import inference_queue

    r = redis_client()
    monkeypatch.setenv("MEMICOS_INFERENCE_TIMEOUT", "2")
    r.zadd(heartbeat_key(TINY_ID), {"silent-worker": time.time() + 30})  # "alive" but never consumes
    try:
        t0 = time.monotonic()
        resp = post(client, "/api/tokenize", {"modelId": TINY_ID, "prompt": "anyone there?"})
        assert resp.status_code == 504 and "did not answer within 2s" in resp.json()["message"]
        assert time.monotonic() - t0 < 6
    finally:
        r.delete(heartbeat_key(TINY_ID), inference_queue(TINY_ID))


def test_rate_limits_count_per_hour_echo_the_remaining_and_answer_429(client, tiny_db, settings):
    from django.core.cache import cache

    cache.clear()
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {**rates, "util": "2/hour"}}
    body = {"modelId": TINY_ID, "prompt": "count me"}
    first = post(client, "/api/tokenize", body)
    assert first.status_code == 200 and first["x-limit-remaining"] == "1"
    assert post(client, "/api/tokenize", body)["x-limit-remaining"] == "0"
    third = post(client, "/api/tokenize", body)
    assert third.status_code == 429 and "Rate limit" in third.json()["message"] and int(third["Retry-After"]) > 0
