"""Toy models and interventions (seed 003): train_toy_model → SAE → dashboards → clamp a cycle-position feature."""

import pytest
from django.core.management import call_command

from features.models import Activation, Feature, Model, Source

PROMPT = "A B C D A B"  # BOS + 6 symbols: position 6 holds B, so C is due next


def _position_corr(lm, sae, j: int):
    """Independently of the service: the feature whose activation best correlates with "cycle position == j"."""
    import torch

    from inference.runtime.dashboards import hook_acts

    n, period = 64, 4
    g = torch.Generator().manual_seed(123)
    phase = torch.randint(0, period, (n, 1), generator=g)
    pos = (phase + torch.arange(12)) % period
    toks = torch.cat([torch.zeros(n, 1, dtype=torch.long), pos + 2], dim=1)  # symbols are ids 2.. (after <bos>, <unk>)
    with torch.no_grad():
        z = sae.encode(hook_acts(lm, toks, "blocks.0.hook_resid_post"))[:, 1:].reshape(-1, sae.cfg.d_sae)
    y = (pos.reshape(-1) == j).float()
    zc, yc = z - z.mean(0), y - y.mean()
    corr = (zc * yc[:, None]).sum(0) / (zc.norm(dim=0) * yc.norm()).clamp_min(1e-12)
    return corr


def _position_feature(lm, sae, j: int) -> int:
    return int(_position_corr(lm, sae, j).argmax())


def test_train_toy_model_and_clamp_cycle_position_feature(db, settings, tmp_path, api_client, client):
    from sae_lens import SAE

    from inference.runtime import worker

    settings.VAR_DIR = tmp_path
    call_command(
        "train_toy_model",
        "cyclic",
        "--symbols",
        "4",
        "--period",
        "4",
        "--steps",
        "200",
        "--sae-tokens",
        "60000",
        "--sae-width",
        "16",
        "--sae-k",
        "2",
    )
    model = Model.objects.get(id="toy-cyclic-4x4")
    assert model.loader["kind"] == "toy-cyclic" and model.inference_enabled
    source = Source.objects.get(model=model, name="0-res-cyclic")
    assert source.metrics["toy"]["accuracy"] > 0.95  # it learned the cycle
    sae = SAE.load_from_disk(source.sae_path)
    assert sae.cfg.d_sae == 16 and Feature.objects.filter(source=source).count() == 16
    assert Activation.objects.filter(feature__source=source).exists()

    lm = worker.model_for(model.id, model.loader)  # what the (eager) inference task uses
    cycle = ["A", "B", "C", "D"]
    moved = 0
    for j in range(4):
        corr = _position_corr(lm, sae, j)
        f = int(corr.argmax())
        assert corr[f] > 0.9
        # the service's pick tracks the same position (two features may share it almost equally)
        assert corr[source.metrics["position_features"][j]["index"]] > 0.9
        feature = Feature.objects.get(source=source, index=f)
        body = {
            "modelId": model.id,
            "source": source.name,
            "index": f,
            "prompt": PROMPT,
            "positions": [6],
            "mode": "clamp",
            "value": 2 * feature.max_act_approx,
            "topK": 3,
        }
        res = api_client.post("/api/intervene", body, format="json")
        assert res.status_code == 200, res.content
        row = res.json()["positions"][6]
        assert row["token"] == "B" and row["intervened"]
        assert row["before"][0]["token"] == "C"  # the model continues the cycle
        expected = cycle[(j + 1) % 4]  # clamping "position j" makes it predict what follows position j
        assert row["after"][0]["token"] == expected, (j, f, row)
        moved += row["changed"]
        # positions that were not edited and come before the edit are untouched (causal model)
        assert all(r["before"] == r["after"] for r in res.json()["positions"][:6])
        hall = res.json()["hallucination"]
        assert hall["baseline"]["tokenErrorRate"] == 0.0
        if expected != "C":
            assert hall["intervened"]["tokenErrorRate"] > 0.2
    assert moved == 3  # every position but j = 1 (whose successor, C, is already due) changes the prediction

    # ablating the feature of the current position (B = position 1) removes the prediction of C
    f_b = _position_feature(lm, sae, 1)
    res = api_client.post(
        "/api/intervene",
        {
            "modelId": model.id,
            "source": source.name,
            "index": f_b,
            "prompt": PROMPT,
            "positions": [6],
            "mode": "ablate",
            "hallucination": False,
        },
        format="json",
    )
    row = res.json()["positions"][6]
    assert "hallucination" not in res.json()
    after = {p["token"]: p["prob"] for p in row["after"]}
    assert after.get("C", 0.0) < row["before"][0]["prob"]

    # errors: the worker's checks come back as 400 {"message"}
    bad = api_client.post("/api/intervene", {**body, "positions": [40]}, format="json")
    assert bad.status_code == 400 and "positions" in bad.json()["message"]
    bad = api_client.post("/api/intervene", {**body, "prompt": "A Z"}, format="json")
    assert bad.status_code == 400 and "symbols" in bad.json()["message"]

    # the page
    f = source.metrics["position_features"][3]["index"]
    html = client.get(
        "/intervene",
        {
            "source": f"{model.id}/{source.name}",
            "index": f,
            "prompt": PROMPT,
            "positions": "6",
            "mode": "clamp",
            "value": 2 * Feature.objects.get(source=source, index=f).max_act_approx,
        },
    ).content.decode()
    assert 'id="intervene-result"' in html and 'id="hallucination"' in html and 'id="position-features"' in html
    assert 'data-position="6"' in html


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"mode": "boost"}, "mode"),
        ({"positions": []}, "positions"),
        ({"value": None}, "value"),
        ({"index": -3}, "index"),
    ],
)
def test_intervene_validation_names_the_field(db, api_client, patch, field):
    body = {
        "modelId": "m",
        "source": "s",
        "index": 1,
        "prompt": "A B",
        "positions": [1],
        "mode": "clamp",
        "value": 3.0,
        **patch,
    }
    if patch.get("value", 0) is None:
        body.pop("value")
    res = api_client.post("/api/intervene", body, format="json")
    assert res.status_code == 400 and field in res.json()["message"]


def test_intervene_unknown_or_private_is_404(db, api_client, user, other_user):
    from tests.factories import FeatureFactory, ModelFactory, SourceFactory, SourceSetFactory

    model = ModelFactory(id="toy-priv", loader={"kind": "toy-cyclic", "name": "/nonexistent"}, inference_enabled=True)
    source = SourceFactory(
        model=model,
        source_set=SourceSetFactory(model=model, name="res-cyclic"),
        name="0-res-cyclic",
        visibility="PRIVATE",
        creator=user,
    )
    FeatureFactory(model=model, source=source, index=0)
    body = {
        "modelId": "toy-priv",
        "source": "0-res-cyclic",
        "index": 0,
        "prompt": "A B",
        "positions": [1],
        "mode": "ablate",
    }
    api_client.force_authenticate(other_user)
    assert api_client.post("/api/intervene", body, format="json").status_code == 404
    assert api_client.post("/api/intervene", {**body, "modelId": "nope"}, format="json").status_code == 404


@pytest.mark.slow
def test_intervene_through_a_real_inference_worker(transactional_db, settings, tmp_path, api_client, start_worker):
    """The toy model is served like any model: `toy-cyclic` loader, its own inference queue, a real worker."""
    import time

    from memicos_site.queues import inference_queue

    settings.VAR_DIR = tmp_path
    call_command(
        "train_toy_model",
        "cyclic",
        "--symbols",
        "4",
        "--period",
        "4",
        "--steps",
        "200",
        "--sae-tokens",
        "40000",
        "--model-id",
        "toy-worker",
    )
    source = Source.objects.get(model_id="toy-worker")
    pf = source.metrics["position_features"][3]  # the feature of position 3 (D): clamped, A should follow
    value = 2 * Feature.objects.get(source=source, index=pf["index"]).max_act_approx
    start_worker([inference_queue("toy-worker")], name="toyworker")
    body = {
        "modelId": "toy-worker",
        "source": source.name,
        "index": pf["index"],
        "prompt": PROMPT,
        "positions": [6],
        "mode": "clamp",
        "value": value,
        "hallucination": False,
    }
    deadline = time.monotonic() + 60
    while True:  # the worker announces itself once its model is loaded
        res = api_client.post("/api/intervene", body, format="json")
        if res.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert res.status_code == 200, res.content
    row = res.json()["positions"][6]
    assert row["before"][0]["token"] == "C" and row["after"][0]["token"] == "A"
