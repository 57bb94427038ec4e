import pytest

from features.models import Activation, Explanation, Feature, Visibility
from imports.models import ImportRun
from tests.factories import ModelFactory, SourceFactory, SourceSetFactory

pytestmark = pytest.mark.django_db


def _batch(source, **over):
    feature = {
        "index": 7, "density": 0.01,
        "topLogits": [{"token": " bird", "value": 0.9}], "bottomLogits": [{"token": " tax", "value": -0.5}],
        "explanations": [{"text": "birds and feathers"}],
        "activations": [{"tokens": [" a", " parrot", " flew"], "values": [0.0, 4.5, 1.0]}],
    }  # fmt: skip
    feature.update(over)
    return {"modelId": source.model_id, "source": source.name, "features": [feature]}


@pytest.fixture
def owned_source(user):
    ss = SourceSetFactory(creator=user, visibility=Visibility.PUBLIC)
    return SourceFactory(source_set=ss, model=ss.model)


def test_feature_upload_batch_creates_dashboards_for_the_owner(api_client, user, api_key_for, owned_source):
    r = api_client.post(
        "/api/feature/upload-batch", _batch(owned_source), format="json", HTTP_X_API_KEY=api_key_for(user)
    )
    assert r.status_code == 200, r.json()
    f = Feature.objects.get(source=owned_source, index=7)
    assert f.pos_str == [" bird"] and f.frac_nonzero == 0.01 and f.max_act_approx == 4.5 and f.creator == user
    act = Activation.objects.get(feature=f)
    assert act.max_value == 4.5 and act.max_value_token_index == 1 and act.creator == user
    assert Explanation.objects.get(feature=f).description == "birds and feathers"


def test_upload_refuses_strangers_anonymous_and_bad_fields(api_client, user, other_user, api_key_for, owned_source):
    body = _batch(owned_source)
    assert api_client.post("/api/feature/upload-batch", body, format="json").status_code == 401
    r = api_client.post("/api/feature/upload-batch/", body, format="json", HTTP_X_API_KEY=api_key_for(other_user))
    assert r.status_code == 403 and "owner" in r.json()["message"]
    bad = _batch(owned_source, index=10_000_001)
    r = api_client.post("/api/feature/upload-batch", bad, format="json", HTTP_X_API_KEY=api_key_for(user))
    assert r.status_code == 400 and "index" in r.json()["message"]
    long_logits = _batch(owned_source, topLogits=[{"token": "x", "value": 1}] * 21)
    r = api_client.post("/api/feature/upload-batch", long_logits, format="json", HTTP_X_API_KEY=api_key_for(user))
    assert r.status_code == 400 and "topLogits" in r.json()["message"]
    missing = dict(body, source="99-nope")
    r = api_client.post("/api/feature/upload-batch", missing, format="json", HTTP_X_API_KEY=api_key_for(user))
    assert r.status_code == 404
    assert not Feature.objects.filter(source=owned_source).exists()


def test_vectors_new_get_list_and_delete_by_owner_only(api_client, user, other_user, api_key_for):
    model = ModelFactory(dimension=4, layers=6)
    key, other = api_key_for(user), api_key_for(other_user)
    body = {"modelId": model.id, "layerNumber": 3, "hookType": "hook_resid_pre", "vector": [0.1, 0.2, 0.3, 0.4],
            "vectorDefaultSteerStrength": 20, "vectorLabel": "calm"}  # fmt: skip
    wrong = dict(body, vector=[1.0, 2.0])
    r = api_client.post("/api/vector/new", wrong, format="json", HTTP_X_API_KEY=key)
    assert r.status_code == 400 and "vector" in r.json()["message"]
    r = api_client.post("/api/vector/new", body, format="json", HTTP_X_API_KEY=key)
    assert r.status_code == 200, r.json()
    v = r.json()["vector"]
    assert v["source"] == "3-neuronpedia-resid-pre" and v["hookName"] == "blocks.3.hook_resid_pre"
    assert v["values"] == [0.1, 0.2, 0.3, 0.4] and 10_000_000 <= v["index"] < 100_000_000
    k = {"modelId": model.id, "source": v["source"], "index": v["index"]}
    got = api_client.post("/api/vector/get", k, format="json", HTTP_X_API_KEY=other).json()["vector"]
    assert got["vectorLabel"] == "calm" and got["vectorDefaultSteerStrength"] == 20
    assert len(api_client.post("/api/vector/list-owned", {}, format="json", HTTP_X_API_KEY=key).json()["vectors"]) == 1
    assert api_client.post("/api/vector/list-owned", {}, format="json", HTTP_X_API_KEY=other).json()["vectors"] == []
    acts = {**k, "activations": [{"tokens": [" a", " b"], "values": [0.5, 2.0]}]}
    assert api_client.post("/api/activation/upload-batch", acts, format="json", HTTP_X_API_KEY=other).status_code == 403
    assert api_client.post("/api/activation/upload-batch", acts, format="json", HTTP_X_API_KEY=key).status_code == 200
    assert Activation.objects.filter(feature__index=v["index"]).count() == 1
    assert api_client.post("/api/vector/delete", k, format="json", HTTP_X_API_KEY=other).status_code == 403
    assert api_client.post("/api/vector/delete", k, format="json", HTTP_X_API_KEY=key).status_code == 200
    assert api_client.post("/api/vector/get", k, format="json", HTTP_X_API_KEY=key).status_code == 404


def test_import_panel_is_staff_only_and_lists_sources_with_status(
    client, user, staff_user, s3_endpoint, small_dataset, run_on_commit
):
    q = f"/imports/?bucket={small_dataset['bucket']}&prefix=v1/&endpoint_url={s3_endpoint}&model=tiny-gpt"
    assert client.get(q).status_code == 302  # anonymous → login
    client.force_login(user)
    assert client.get(q).status_code == 302  # not staff
    assert client.post("/imports/start", {"model_id": "tiny-gpt", "source_id": "0-att-tt"}).status_code == 403
    client.force_login(staff_user)
    page = client.get(q)
    assert page.status_code == 200
    html = page.content.decode()
    assert "0-res-tt" in html and "0-att-tt" in html and "0 of 2 downloaded" in html and "absent" in html
    with run_on_commit():  # the run's job is sent on commit, then runs eagerly here
        r = client.post(
        "/imports/start",
        {
            "model_id": "tiny-gpt",
            "source_id": "0-att-tt",
            "bucket": small_dataset["bucket"],
            "prefix": "v1/",
            "endpoint_url": s3_endpoint,
        },
    )  # fmt: skip
    assert r.status_code == 200
    run = ImportRun.objects.get(pk=r.json()["runs"][0])
    assert r.json()["jobs"] == [run.job_id]
    progress = client.get(f"/imports/progress/{run.pk}.json").json()
    assert progress["status"] == "SUCCEEDED" and progress["files_done"] == progress["files_total"] == 6
    assert progress["rows"] == 10 + 20 and progress["bytes"] == progress["bytes_total"] > 0
    html = client.get(q).content.decode()
    assert "1 of 1 downloaded" in html  # the att set is now complete
