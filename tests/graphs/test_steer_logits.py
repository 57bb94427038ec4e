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


def test_steer_logits_refuses_contradictory_or_out_of_range_features_with_a_400(client, tiny_graph_model):
    bad = [
        {"layer": 0, "index": 1, "token_active_position": 1, "steer_position": 1, "delta": 1.0, "ablate": True},
        {"layer": 0, "index": 1, "token_active_position": 1, "delta": 1.0},
        {"layer": 0, "index": 10_000, "token_active_position": 1, "steer_position": 1, "ablate": True},
        {"layer": 7, "index": 1, "token_active_position": 1, "steer_position": 1, "ablate": True},
    ]
    for feature in bad:
        r = post(client, {**BASE, "features": [feature]})
        assert r.status_code == 400 and r.json()["message"], (feature, r.content)
    assert post(client, {**BASE, "features": []}).status_code == 400
