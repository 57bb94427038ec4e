"""Autointerp under endpoint errors, redelivery, races and odd LLM output, with a fake llm_chat (no model)."""

import math
import threading

import pytest
from django.db import connection

from autointerp import explainers, scorers
from autointerp import services as svc
from autointerp.llm import ChatResult, LLMError
from autointerp.services import autointerp_job_create, autointerp_job_plan, explanation_create_human
from autointerp.tasks import autointerp_chunk_task
from features.models import Explanation, Job
from features.services.jobs import job_claim, job_resume
from tests.autointerp.planted import planted_source


def fake_chat(*fail_on: int, exc=RuntimeError("worker killed")):
    """An llm_chat that answers 'birds' except on the listed (1-based) calls, where it raises `exc`."""
    calls = []

    def chat(*, config, messages, **kwargs):
        calls.append(messages)
        if len(calls) in fail_on:
            raise exc
        return ChatResult(text="birds", prompt_tokens=10, completion_tokens=2)

    chat.calls = calls
    return chat


@pytest.mark.django_db
def test_an_endpoint_error_fails_the_batch_job_with_the_endpoint_message(monkeypatch, user, run_on_commit):
    error = LLMError("LLM endpoint http://llm/v1 answered HTTP 404: The model `nope` does not exist")
    chat = fake_chat(1, 2, 3, exc=error)
    monkeypatch.setattr(explainers, "llm_chat", chat)
    source, _ = planted_source()
    with run_on_commit():
        job = autointerp_job_create(source=source, type_name="np_max-act", model_name="nope", user=user)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and job.finished_at is not None
    assert "HTTP 404" in job.error and "nope" in job.error
    assert len(chat.calls) == 1, "the first error stops the job: every other feature would fail the same way"
    assert not Explanation.objects.filter(source=source).exists()


@pytest.mark.django_db
def test_a_redelivered_chunk_counts_each_feature_once_as_explained(monkeypatch, user):
    monkeypatch.setattr(explainers, "llm_chat", fake_chat(2))  # the 2nd call dies, like a SIGKILLed worker
    source, _ = planted_source()
    job = autointerp_job_create(source=source, type_name="np_max-act", model_name="m", user=user, send=False)
    with job_claim(job_id=job.pk, lease=False):  # as the job's task claims it before planning
        pass
    [chunk] = autointerp_job_plan(job_id=job.pk, chunk_size=10)
    with pytest.raises(RuntimeError):
        autointerp_chunk_task(job_id=job.pk, feature_ids=chunk)
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and job.done == 1
    autointerp_chunk_task(job_id=job.pk, feature_ids=chunk)  # the broker redelivers it
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert (job.done, job.total) == (3, 3)
    assert (job.result["explained"], job.result["skipped"], job.result["failed"]) == (3, 0, 0)
    assert Explanation.objects.filter(source=source).count() == 3


@pytest.mark.django_db
def test_a_resumed_job_counts_earlier_work_as_skipped_and_failures_once(monkeypatch, user, run_on_commit):
    from autointerp.explainers import ExplanationParseError

    monkeypatch.setattr(explainers, "llm_chat", fake_chat(2, exc=ExplanationParseError("could not be parsed")))
    source, _ = planted_source()
    with run_on_commit():
        job = autointerp_job_create(source=source, type_name="np_max-act", model_name="m", user=user)
    job.refresh_from_db()
    assert (job.done, job.result["explained"], job.result["failed"]) == (3, 2, 1)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED)  # resume takes failed jobs
    with run_on_commit():
        job_resume(job_id=job.pk)  # the failed feature is retried and now explained
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert (job.done, job.total) == (3, 3)
    assert (job.result["explained"], job.result["skipped"], job.result["failed"]) == (1, 2, 0)


@pytest.mark.django_db(transaction=True)
def test_concurrent_generates_of_one_type_and_model_store_one_explanation(monkeypatch):
    barrier = threading.Barrier(2, timeout=20)

    def chat(*, config, messages, **kwargs):
        barrier.wait()  # both callers have passed the existence check before either stores
        return ChatResult(text="birds", prompt_tokens=10, completion_tokens=2)

    monkeypatch.setattr(explainers, "llm_chat", chat)
    monkeypatch.setattr(svc, "explanation_embed_later", lambda **kwargs: None)
    _, features = planted_source()
    outcomes = []

    def generate():
        try:
            explanation, _ = svc.explanation_generate(feature=features["birds"], type_name="np_max-act", model_name="m")
            outcomes.append(explanation.id)
        except Exception as exc:
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=generate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stored = list(Explanation.objects.filter(feature=features["birds"]).values_list("id", flat=True))
    assert len(stored) == 1
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], svc.ExplanationExists), outcomes
    assert "already has an explanation" in str(refused[0]) and stored[0] in outcomes


@pytest.mark.django_db
def test_simulation_ignores_non_ascii_digit_tokens_and_a_scorer_bug_is_a_400(
    monkeypatch, user, api_client, api_key_for
):
    monkeypatch.setenv("AUTOINTERP_SCORER_N_ACTIVATING", "2")
    monkeypatch.setenv("AUTOINTERP_SCORER_N_NON_ACTIVATING", "2")
    calls = []

    def chat(*, config, messages, **kwargs):  # "²".isdigit() is True, but it is no 0–10 answer
        calls.append(1)
        top = [("²", math.log(0.5)), (str(len(calls) % 3), math.log(0.3)), ("0", math.log(0.2))]
        return ChatResult(text="²", prompt_tokens=5, completion_tokens=1, logprobs=[("²", math.log(0.5), top)])

    monkeypatch.setattr(scorers, "llm_chat", chat)
    _, features = planted_source()
    explanation = explanation_create_human(user=user, feature=features["birds"], text="names of birds")
    body = {"explanationId": explanation.id, "scorerType": "simulation"}
    response = api_client.post("/api/explanation/score", body, format="json", HTTP_X_API_KEY=api_key_for(user))
    assert response.status_code == 200, response.content
    assert -1 <= response.json()["score"]["value"] <= 1

    def broken(**kwargs):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(scorers, "simulation_score", broken)
    response = api_client.post("/api/explanation/score", body, format="json", HTTP_X_API_KEY=api_key_for(user))
    assert response.status_code == 400
    assert (
        "oai_simulation scorer failed" in response.json()["message"]
        and "ZeroDivisionError" in response.content.decode()
    )
