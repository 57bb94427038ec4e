"""Batch autointerp jobs (progress, tokens, resume, failures) and scoring through the API."""

import json
import time

import pytest
from sklearn.metrics import roc_auc_score

from autointerp.services import autointerp_job_create, explanation_create_human
from features.models import Explanation, ExplanationScore, Job
from features.services.jobs import job_resume
from tests.autointerp.planted import TOPICS, planted_source
from tests.factories import ActivationFactory, FeatureFactory


@pytest.mark.django_db
def test_batch_job_explains_each_feature_once_with_progress_and_token_counts(llm_env, user, run_on_commit):
    source, features = planted_source()
    FeatureFactory(source=source, model=source.model, index=9)  # no activations: not a target
    with run_on_commit():
        job = autointerp_job_create(source=source, type_name="np_max-act", user=user, chunk_size=2)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert (job.done, job.total) == (3, 3)
    assert job.result["explained"] == 3 and job.result["chunks_total"] == 2
    assert job.result["prompt_tokens"] > 100 and job.result["completion_tokens"] > 3
    rows = Explanation.objects.filter(source=source, type_id="np_max-act")
    assert sorted(rows.values_list("feature__index", flat=True)) == [0, 1, 2]
    assert set(rows.values_list("prompt_version", flat=True)) == {"np_max-act@1"}
    # a second job over the same source skips everything
    with run_on_commit():
        again = autointerp_job_create(source=source, type_name="np_max-act", user=user)
    again.refresh_from_db()
    assert again.status == Job.Status.SUCCEEDED and again.result["skipped"] == 3 and again.result["explained"] == 0
    assert rows.count() == 3


@pytest.mark.django_db
def test_endpoint_down_fails_the_job_with_the_reason_and_the_api_answers_503(
    dead_endpoint, user, api_client, api_key_for, run_on_commit
):
    source, _ = planted_source()
    with run_on_commit():
        job = autointerp_job_create(source=source, type_name="np_max-act", user=user)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert dead_endpoint in job.error and "serve_llm" in job.error
    assert not Explanation.objects.filter(source=source).exists()
    response = api_client.post(
        "/api/explanation/generate", {"modelId": source.model_id, "layer": source.name, "index": 1},
        format="json", HTTP_X_API_KEY=api_key_for(user),
    )  # fmt: skip
    assert response.status_code == 503 and dead_endpoint in response.json()["message"]


@pytest.mark.django_db
def test_generate_needs_authentication_and_a_known_feature(api_client, user, api_key_for):
    source, _ = planted_source()
    body = {"modelId": source.model_id, "layer": source.name, "index": 0}
    assert api_client.post("/api/explanation/generate", body, format="json").status_code == 401
    missing = api_client.post("/api/explanation/generate", {**body, "index": 77}, format="json",
                              HTTP_X_API_KEY=api_key_for(user))  # fmt: skip
    assert missing.status_code == 404 and "message" in missing.json()


@pytest.mark.slow
def test_a_killed_batch_job_resumes_without_explaining_a_feature_twice(start_worker, llm_server, user):
    source, features = planted_source()
    for i in range(3, 8):  # more features, so the kill lands mid-job
        f = FeatureFactory(source=source, model=source.model, index=i)
        ActivationFactory(feature=f)
    env = {"OPENAI_BASE_URL": llm_server, "AUTOINTERP_LLM_RETRIES": "0"}
    worker = start_worker(["autointerp"], name="ai-kill", **env)
    job = autointerp_job_create(source=source, type_name="np_max-act", user=user, chunk_size=1)
    rows = Explanation.objects.filter(source=source, type_id="np_max-act")
    deadline = time.monotonic() + 90
    while rows.count() < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    worker.kill()  # SIGKILL mid-job: its chunk tasks are lost until resumed
    explained_before = rows.count()
    assert 2 <= explained_before < 8
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING

    from memicos_site.celery import app

    app.control.purge()  # the dead worker's queue is gone with it; resume re-plans from the database
    # resumed (PENDING) before a worker is back: chunk messages the dead worker left in the queue find the job not
    # RUNNING and do nothing, and the re-sent plan counts what was explained before as skipped
    job_resume(job_id=job.pk)
    start_worker(["autointerp"], name="ai-resume", **env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.finished:
            break
        time.sleep(0.3)
    assert job.status == Job.Status.SUCCEEDED, (job.status, job.error, job.result)
    per_feature = list(rows.values_list("feature__index", flat=True))
    assert sorted(per_feature) == list(range(8)), "every feature exactly once"
    assert job.result["skipped"] == explained_before and job.done == job.total == 8


@pytest.mark.django_db
def test_embedding_score_ranks_the_true_explanation_above_a_wrong_one(
    user, api_client, api_key_for, django_capture_on_commit_callbacks
):
    source, features = planted_source()
    with django_capture_on_commit_callbacks(execute=True):
        right = explanation_create_human(user=user, feature=features["birds"], text=TOPICS["birds"][0])
        wrong = explanation_create_human(user=user, feature=features["birds"], text=TOPICS["money"][0])
    key = api_key_for(user)
    values = {}
    for explanation in (right, wrong):
        response = api_client.post("/api/explanation/score", {"explanationId": explanation.id,
                                   "scorerType": "embedding"}, format="json", HTTP_X_API_KEY=key)  # fmt: skip
        assert response.status_code == 200, response.content
        score = response.json()["score"]
        assert score["explanationScoreTypeName"] == "eleuther_embedding"
        assert score["explanationScoreModelName"] == "all-minilm-l6-v2"
        details = json.loads(score["jsonDetails"])
        samples = details["samples"]
        assert sum(s["ground_truth"] for s in samples) == 6 and sum(not s["ground_truth"] for s in samples) == 10
        values[explanation.id] = score["value"]
    assert values[right.id] > 0.9 and values[wrong.id] < 0.5 and values[right.id] > values[wrong.id]
    assert ExplanationScore.objects.filter(explanation__in=[right, wrong]).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("scorer", ["detection", "fuzz"])
def test_llm_scores_store_a_breakdown_whose_aggregate_matches_the_value(
    scorer, llm_env, monkeypatch, user, api_client, api_key_for, django_capture_on_commit_callbacks
):
    """The 135M model is no judge (it tends to answer 1 for everything), so this checks the mechanics on the
    real endpoint: one-token answers read from logprobs, the stored value is the balanced accuracy of the
    stored per-example predictions, and the AUC is that of the stored probabilities."""
    monkeypatch.setenv("AUTOINTERP_SCORER_N_ACTIVATING", "3")
    monkeypatch.setenv("AUTOINTERP_SCORER_N_NON_ACTIVATING", "3")
    source, features = planted_source()
    with django_capture_on_commit_callbacks(execute=True):
        explanation = explanation_create_human(user=user, feature=features["birds"], text="names of birds")
    response = api_client.post("/api/explanation/score", {"explanationId": explanation.id, "scorerType": scorer},
                               format="json", HTTP_X_API_KEY=api_key_for(user))  # fmt: skip
    assert response.status_code == 200, response.content
    score = response.json()["score"]
    details = json.loads(score["jsonDetails"])
    rows = details["samples"]
    assert len(rows) == 6 and all(r["prediction"] in (0, 1) for r in rows)
    assert all(r["prediction"] == int(r["probability"] >= 0.5) for r in rows)
    tpr = sum(s["prediction"] == 1 for s in rows if s["ground_truth"]) / sum(s["ground_truth"] for s in rows)
    tnr = sum(s["prediction"] == 0 for s in rows if not s["ground_truth"]) / sum(not s["ground_truth"] for s in rows)
    assert score["value"] == pytest.approx((tpr + tnr) / 2)
    assert details["summary"]["auc"] == pytest.approx(
        roc_auc_score([r["ground_truth"] for r in rows], [r["probability"] for r in rows])
    )
    kind = {"detection": "eleuther_recall", "fuzz": "eleuther_fuzz"}[scorer]
    assert details["summary"]["prompt_version"] == {"detection": "delphi-detection@1", "fuzz": "delphi-fuzz@1"}[scorer]
    stored = ExplanationScore.objects.get(pk=score["id"])
    assert stored.score_type_id == kind and stored.score_model_id == "smollm2-135m-instruct"
    if scorer == "fuzz":  # fuzzing shows highlighted windows
        assert all("<<" in r["text"] for r in rows)
