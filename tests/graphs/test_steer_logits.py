"""POST /api/steer-logits: circuit-tracer's interventions on the tiny model's transcoders (eager worker)."""

import json

from tests.graphs.conftest import TINY_ID


def post(client, body):
    return client.post("/api/steer-logits", json.dumps(body), content_type="application/json")


BASE = {"modelId": TINY_ID, "prompt": "The capital of France is", "nTokens": 4, "topK": 3}


def test_ablating_and_boosting_features_changes_the_steered_logits_only(client, tiny_graph_model):
    features = [{"layer": 1, "index": i, "token_active_position": 5, "steer_position": 5, "delta": 50.0}
                for i in range(8)]  # fmt: skip
    r = post(client, {**BASE, "features": features})
    assert r.status_code == 200, r.content
    body = r.json()
    assert len(body["DEFAULT_LOGITS_BY_TOKEN"]) == len(body["STEERED_LOGITS_BY_TOKEN"]) >= 1
    first_default = body["DEFAULT_LOGITS_BY_TOKEN"][0]["top_logits"]
    first_steered = body["STEERED_LOGITS_BY_TOKEN"][0]["top_logits"]
    assert len(first_default) == 3 and all(0 <= t["prob"] <= 1 for t in first_default)
    assert first_default != first_steered  # the intervention moved the next-token distribution
    again = post(client, {**BASE, "features": features}).json()
    assert again["DEFAULT_GENERATION"] == body["DEFAULT_GENERATION"]  # seeded: reproducible


def test_a_feature_clamped_to_an_absolute_value_steers_and_one_at_bos_is_dropped(client, tiny_graph_model):
    at = {"layer": 1, "index": 3, "token_active_position": 5, "steer_position": 5}
    zero = post(client, {**BASE, "features": [{**at, "value": 0.0}]})
    assert zero.status_code == 200, zero.content
    ablated = post(client, {**BASE, "features": [{**at, "ablate": True}]}).json()
    assert zero.json()["STEERED_LOGITS_BY_TOKEN"] == ablated["STEERED_LOGITS_BY_TOKEN"]
    high = post(client, {**BASE, "features": [{**at, "value": 80.0}]}).json()
    assert high["STEERED_LOGITS_BY_TOKEN"] != ablated["STEERED_LOGITS_BY_TOKEN"]
    with_bos = post(client, {**BASE, "features": [{**at, "value": 80.0}, {**at, "steer_position": 0, "ablate": True}]})
    assert with_bos.json()["STEERED_LOGITS_BY_TOKEN"] == high["STEERED_LOGITS_BY_TOKEN"]


def test_steer_logits_refuses_contradictory_or_out_of_range_features_with_a_400(client, tiny_graph_model):
    bad = [
        {"layer": 0, "index": 1, "token_active_position": 1, "steer_position": 1, "delta": 1.0, "ablate": True},
        {"layer": 0, "index": 1, "token_active_position": 1, "delta": 1.0},
        {"layer": 0, "index": 10_000, "token_active_position": 1, "steer_position": 1, "ablate": True},
        {"layer": 7, "index": 1, "token_active_position": 1, "steer_position": 1, "ablate": True},
        {"layer": 0, "index": 1, "token_active_position": 1, "steer_position": 1, "value": 2.0, "ablate": True},
        {"layer": 0, "index": 1, "token_active_position": 1, "steer_position": 0, "ablate": True},  # BOS only
    ]
    for feature in bad:
        r = post(client, {**BASE, "features": [feature]})
        assert r.status_code == 400 and r.json()["message"], (feature, r.content)
    assert post(client, {**BASE, "features": []}).status_code == 400


def test_graph_tokenize_returns_the_salient_logits_a_graph_traces_back_from(client, tiny_graph_model, tiny_graph_json):
    """Neuronpedia's tokenize answers the next-token candidates: they are the graph's logit nodes, in order."""
    body = {"modelId": TINY_ID, "prompt": "The capital of France is"}
    r = client.post("/api/graph/tokenize", json.dumps(body), content_type="application/json")
    assert r.status_code == 200, r.content
    out = r.json()
    assert out["input_tokens"] == tiny_graph_json["metadata"]["prompt_tokens"] and not out["too_long"]
    logits = [n for n in tiny_graph_json["nodes"] if n["feature_type"] == "logit"]  # same prompt, 10 and 0.95
    assert [s["token_id"] for s in out["salient_logits"]] == [n["feature"] for n in logits]
    probs = [s["probability"] for s in out["salient_logits"]]
    assert probs == sorted(probs, reverse=True) and abs(probs[0] - logits[0]["token_prob"]) < 1e-4
    assert out["total_salient_tokens"] == len(probs) and abs(out["cumulative_probability"] - sum(probs)) < 1e-6
    # fewer logits when asked: the cap, or the probability reached, ends the list
    few = client.post("/api/graph/tokenize", json.dumps({**body, "maxNLogits": 5, "desiredLogitProb": 0.6}),
                      content_type="application/json").json()  # fmt: skip
    assert (
        1 <= few["total_salient_tokens"] <= 5
        and few["salient_logits"] == out["salient_logits"][: len(few["salient_logits"])]
    )
    assert few["cumulative_probability"] >= 0.6 or few["total_salient_tokens"] == 5
    assert few["cumulative_probability"] - few["salient_logits"][-1]["probability"] < 0.6  # the smallest such set
    bad = client.post("/api/graph/tokenize", json.dumps({**body, "maxNLogits": 50}), content_type="application/json")
    assert bad.status_code == 400 and "maxNLogits" in bad.json()["message"]
    long = client.post("/api/graph/tokenize", json.dumps({**body, "prompt": " ".join(["word"] * 80)}),
                       content_type="application/json").json()  # fmt: skip
    assert long["too_long"] and long["salient_logits"] == [] and long["total_salient_tokens"] == 0
