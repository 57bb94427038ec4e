"""Explain, score and vote from the feature dashboard, and users' provider keys: permissions, visibility, jobs,
breakdowns, encryption at rest and isolation between users (fast: Django client, eager Celery)."""

import json
import re

import pytest
from django.db import connection
from django.test import Client

from autointerp.llm import LLMUnavailable
from autointerp.models import ProviderKey
from autointerp.services import (
    explain_feature_job_create,
    explanation_create_human,
    lookup_rows_ensure,
    provider_key_set,
)
from features.models import Explanation, ExplanationScore, ExplanationScoreModel, Job, Visibility, Vote
from features.services.jobs import job_run
from tests.autointerp.conftest import free_port
from tests.autointerp.planted import TOPICS, planted_source

pytestmark = pytest.mark.django_db


def _url(feature) -> str:
    return f"/{feature.model_id}/{feature.source.name}/{feature.index}/"


def _human(user, feature, text, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):  # no embedding task: these tests need none
        return explanation_create_human(user=user, feature=feature, text=text)


def test_anonymous_readers_see_no_controls_and_the_page_costs_no_statement_more(
    client, user, django_assert_num_queries, django_capture_on_commit_callbacks
):
    _, features = planted_source()
    _human(user, features["birds"], "names of birds", django_capture_on_commit_callbacks)
    # the dashboard's three statements (feature, activations, explanations) and nothing for the controls
    with django_assert_num_queries(3):
        html = client.get(_url(features["birds"])).content.decode()
    assert "names of birds" in html and "<b data-votes>0</b> vote<span data-votes-s>s</span>" in html
    assert 'id="explain-form"' not in html and "data-vote aria-pressed" not in html and "data-score-form" not in html
    assert "feature_work.js" not in html
    assert "to explain, score or vote" in html


def test_signed_in_users_get_the_controls_with_their_vote_and_key(client, user, django_capture_on_commit_callbacks):
    _, features = planted_source()
    explanation = _human(user, features["birds"], "names of birds", django_capture_on_commit_callbacks)
    Vote.objects.create(voter=user, explanation=explanation, points=1)
    provider_key_set(user=user, provider="openai", api_key="sk-test-abcdefgh1234")
    client.force_login(user)
    html = client.get(_url(features["birds"])).content.decode()
    assert 'id="explain-form"' in html and "feature_work.js" in html
    assert re.search(r'data-vote aria-pressed="true"', html)
    assert all(f'<option value="{name}">' in html for name in ("eleuther_recall", "eleuther_fuzz", "oai_simulation"))
    assert "your OpenAI key (••••1234)" in html and "sk-test-abcdefgh1234" not in html


def test_the_work_routes_refuse_anonymous_callers_and_cross_site_posts(
    client, user, django_capture_on_commit_callbacks
):
    source, features = planted_source()
    explanation = _human(user, features["birds"], "names of birds", django_capture_on_commit_callbacks)
    key = {"modelId": source.model_id, "layer": source.name, "index": 0}
    routes = [
        ("/api/explanation/generate-job", key),
        ("/api/explanation/score-job", {"explanationId": explanation.id, "scorerType": "detection"}),
        (f"/api/explanation/{explanation.id}/vote", {}),
    ]
    for path, body in routes:
        response = client.post(path, body, content_type="application/json")
        assert response.status_code == 401 and "message" in response.json(), path
    # a signed-in session without its CSRF token (another site's form) is refused
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    for path, body in routes:
        response = browser.post(path, body, content_type="application/json")
        assert response.status_code == 403 and "CSRF" in response.json()["message"], path
    assert not Job.objects.exists() and not Vote.objects.exists()


def test_a_private_source_is_not_found_for_others_and_works_for_its_owner(
    client, user, other_user, django_capture_on_commit_callbacks
):
    source, features = planted_source(visibility=Visibility.PRIVATE)
    source.creator = user
    source.save(update_fields=["creator"])
    explanation = _human(user, features["birds"], "names of birds", django_capture_on_commit_callbacks)
    client.force_login(other_user)
    body = {"modelId": source.model_id, "layer": source.name, "index": 0}
    assert client.post("/api/explanation/generate-job", body, content_type="application/json").status_code == 404
    score_body = {"explanationId": explanation.id, "scorerType": "embedding"}
    assert client.post("/api/explanation/score-job", score_body, content_type="application/json").status_code == 404
    assert client.post(f"/api/explanation/{explanation.id}/vote", content_type="application/json").status_code == 404
    assert client.get(_url(features["birds"])).status_code == 404
    client.force_login(user)
    response = client.post("/api/explanation/generate-job", body, content_type="application/json")
    assert response.status_code == 200 and Job.objects.get(pk=response.json()["jobId"]).kind == "explain_feature"


def test_an_unknown_explainer_or_a_duplicate_is_a_400_naming_the_field(
    client, user, django_capture_on_commit_callbacks
):
    source, features = planted_source()
    client.force_login(user)
    body = {"modelId": source.model_id, "layer": source.name, "index": 0}
    bad = client.post("/api/explanation/generate-job", {**body, "explanationType": "human"},
                      content_type="application/json")  # fmt: skip
    assert bad.status_code == 400 and "explanationType" in bad.json()["message"]
    unknown_scorer = client.post("/api/explanation/score-job", {"explanationId": "nope", "scorerType": "detection"},
                                 content_type="application/json")  # fmt: skip
    assert unknown_scorer.status_code == 404


def test_explaining_from_the_page_is_a_job_whose_result_is_the_new_explanation(llm_env, user, client, run_on_commit):
    source, features = planted_source()
    client.force_login(user)
    with run_on_commit():
        response = client.post(
            "/api/explanation/generate-job",
            {"modelId": source.model_id, "layer": source.name, "index": 0, "explanationType": "np_max-act"},
            content_type="application/json",
        )
    assert response.status_code == 200, response.content
    job = client.get(f"/api/job/{response.json()['jobId']}").json()
    assert job["status"] == "SUCCEEDED", job["error"]
    assert (job["done"], job["total"]) == (1, 1) and job["result"]["prompt_tokens"] > 50
    explanation = Explanation.objects.get(pk=job["result"]["explanation_id"])
    assert explanation.feature_id == features["birds"].pk and explanation.triggered_by_id == user.pk
    assert job["message"] == f"Explained: {explanation.description}"
    assert explanation.description in client.get(_url(features["birds"])).content.decode()
    # the same type by the same model again is refused before any job exists
    again = client.post(
        "/api/explanation/generate-job",
        {"modelId": source.model_id, "layer": source.name, "index": 0, "explanationType": "np_max-act"},
        content_type="application/json",
    )
    assert again.status_code == 400 and Job.objects.filter(kind="explain_feature").count() == 1


def _score_job(scorer, n_each, *, user, client, monkeypatch, run_on_commit, capture):
    """A `scorer` job on the planted birds feature's human explanation, with `n_each` activating and non-activating
    examples, posted as the page posts it and run inline: (the finished job, the planted features)."""
    monkeypatch.setenv("AUTOINTERP_SCORER_N_ACTIVATING", str(n_each))
    monkeypatch.setenv("AUTOINTERP_SCORER_N_NON_ACTIVATING", str(n_each))
    _, features = planted_source()
    explanation = _human(user, features["birds"], TOPICS["birds"][0], capture)
    client.force_login(user)
    with run_on_commit():
        response = client.post("/api/explanation/score-job", {"explanationId": explanation.id,
                               "scorerType": scorer}, content_type="application/json")  # fmt: skip
    assert response.status_code == 200, response.content
    job = Job.objects.get(pk=response.json()["jobId"])
    assert job.status == Job.Status.SUCCEEDED, job.error
    return job, features


def test_a_score_job_reports_each_judged_example_and_its_breakdown_shows_right_and_wrong(
    llm_env, monkeypatch, user, client, run_on_commit, django_capture_on_commit_callbacks
):
    job, features = _score_job(
        "detection", 3, user=user, client=client, monkeypatch=monkeypatch, run_on_commit=run_on_commit,
        capture=django_capture_on_commit_callbacks,
    )  # fmt: skip
    assert job.kind == "score_explanation" and (job.done, job.total) == (6, 6)
    score = ExplanationScore.objects.get(pk=job.result["score_id"])
    samples = json.loads(score.json_details)["samples"]
    page = client.get(_url(features["birds"])).content.decode()
    assert f'href="/explanations/scores/{score.id}/"' in page
    fragment = client.get(f"/explanations/scores/{score.id}/?fragment=1").content.decode()
    assert fragment.count('class="bd-row') == 6
    assert fragment.count("✓") == sum(s["correct"] is True for s in samples)
    assert fragment.count("✗") == sum(s["correct"] is False for s in samples)
    assert fragment.count(">fires</span>") == 3  # the truth column: three activating examples
    # the planted bird word is highlighted (its activation is the example's max) in an activating row
    assert re.search(r'<span class="tok" style="--a:1.000">\s*(parrot|sparrows|eagle|canary|pigeons|owl)<', fragment)
    # the full page for a reader who follows the link, anonymous included
    assert Client().get(f"/explanations/scores/{score.id}/").status_code == 200


def test_a_breakdown_of_a_private_feature_is_not_found_for_others(user, other_user, client):
    source, features = planted_source(visibility=Visibility.PRIVATE)
    source.creator = user
    source.save(update_fields=["creator"])
    explanation = Explanation.objects.create(feature=features["birds"], model_id=source.model_id, source=source,
                                             description="birds", type_id=None)  # fmt: skip
    lookup_rows_ensure()
    model_row = ExplanationScoreModel.objects.create(name="all-minilm-l6-v2")
    score = ExplanationScore.objects.create(
        explanation=explanation, score_type_id="eleuther_embedding", score_model=model_row, value=0.5, json_details="{}"
    )
    client.force_login(other_user)
    assert client.get(f"/explanations/scores/{score.id}/").status_code == 404
    client.force_login(user)
    assert client.get(f"/explanations/scores/{score.id}/").status_code == 200


def test_voting_changes_the_count_and_a_second_vote_counts_once(
    client, user, other_user, django_capture_on_commit_callbacks
):
    _, features = planted_source()
    explanation = _human(user, features["birds"], "names of birds", django_capture_on_commit_callbacks)
    for voter in (user, other_user, other_user):
        client.force_login(voter)
        assert client.post(f"/api/explanation/{explanation.id}/vote", content_type="application/json").json()["scoreV1"]
    explanation.refresh_from_db()
    assert explanation.score_v1 == 2
    assert "<b data-votes>2</b> vote" in client.get(_url(features["birds"])).content.decode()
    assert (
        client.post(f"/api/explanation/{explanation.id}/unvote", content_type="application/json").json()["scoreV1"] == 1
    )


# --- provider keys ---


def test_a_provider_key_is_encrypted_at_rest_and_read_back_whole(user):
    secret = "sk-proj-Plaintext-Must-Not-Be-Stored-9876"
    provider_key_set(user=user, provider="openai", api_key=secret)
    with connection.cursor() as cur:
        cur.execute("SELECT row_to_json(k)::text FROM autointerp_providerkey k")
        (row,) = cur.fetchone()
    assert secret not in row and "Plaintext" not in row
    stored = ProviderKey.objects.get(user=user)
    assert stored.api_key_encrypted.startswith("gAAAAA") and stored.api_key == secret
    assert stored.masked == "••••9876"


def test_a_key_encrypted_under_another_secret_fails_the_job_with_a_message(user, settings, monkeypatch):
    from autointerp.llm import LLMError
    from autointerp.services import llm_config_for

    provider_key_set(user=user, provider="openai", api_key="sk-test-abcdefgh1234")
    monkeypatch.setenv("MEMICOS_SECRETS_KEY", "x" * 43 + "=")  # a well-formed but different Fernet key
    with pytest.raises(LLMError, match="enter it again on your account page"):
        llm_config_for(user=user, model="gpt-4o-mini")


def test_the_account_page_adds_shows_masked_and_deletes_keys(client, user, other_user):
    client.force_login(user)
    response = client.post("/account/provider-keys/", {"provider": "openrouter", "api_key": "sk-or-v1-secretvalue42"})
    assert response.status_code == 302
    page = client.get("/account/").content.decode()
    assert "••••ue42" in page and "sk-or-v1-secretvalue42" not in page and "https://openrouter.ai/api/v1" in page
    refused = client.post("/account/provider-keys/", {"provider": "custom", "api_key": "sk-whatever-1234"}, follow=True)
    assert "a custom provider needs its base URL" in refused.content.decode()
    key = ProviderKey.objects.get(user=user)
    # another user cannot delete it
    intruder = Client()
    intruder.force_login(other_user)
    intruder.post(f"/account/provider-keys/{key.pk}/delete/")
    assert ProviderKey.objects.filter(pk=key.pk).exists()
    assert (
        Client().post("/account/provider-keys/", {"provider": "openai", "api_key": "sk-anon-12345678"}).status_code
        == 302
    )
    assert ProviderKey.objects.count() == 1  # the anonymous post went to the login page
    client.post(f"/account/provider-keys/{key.pk}/delete/")
    assert not ProviderKey.objects.exists()
    assert "No provider keys" in client.get("/account/").content.decode()


def test_a_job_uses_the_key_of_the_user_who_started_it_never_anothers(user, other_user, monkeypatch, run_on_commit):
    """Both users store a custom endpoint where nothing listens; each one's job fails naming its own endpoint."""
    monkeypatch.setenv("AUTOINTERP_LLM_RETRIES", "0")
    monkeypatch.setenv("AUTOINTERP_LLM_TIMEOUT", "3")
    source, features = planted_source()
    urls = {}
    for who in (user, other_user):
        urls[who.pk] = f"http://127.0.0.1:{free_port()}/v1"
        provider_key_set(user=who, provider="custom", api_key=f"sk-key-of-{who.pk}-xxxx", base_url=urls[who.pk])
    jobs = {}
    for who, topic in ((user, "birds"), (other_user, "money")):
        with pytest.raises(LLMUnavailable), run_on_commit():  # the eager task re-raises once the job is failed
            jobs[who.pk] = explain_feature_job_create(user=who, feature=features[topic], type_name="np_max-act")
    for who, other in ((user, other_user), (other_user, user)):
        job = Job.objects.get(pk=jobs[who.pk].pk)
        assert job.status == Job.Status.FAILED
        assert urls[who.pk] in job.error and urls[other.pk] not in job.error
    # and the key is read at run time: once deleted, the job runs on the deployment's endpoint
    ProviderKey.objects.filter(user=user).delete()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", dead)
    job = jobs[user.pk]
    Job.objects.filter(pk=job.pk).update(status=Job.Status.PENDING)
    with pytest.raises(LLMUnavailable):  # job_run re-raises the run's error after failing the job
        job_run(job_id=job.pk)
    job.refresh_from_db()
    assert dead in job.error and urls[other_user.pk] not in job.error


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_keys_stored_in_clear_before_it(user):
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("autointerp", "0001_initial")], [("autointerp", "0002_providerkey_encrypt_at_rest")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps.get_model("autointerp", "ProviderKey")
        old.objects.create(user_id=user.pk, provider="openai", api_key="sk-legacy-cleartext-5678")
        executor = MigrationExecutor(connection)
        executor.migrate(after)
    finally:
        MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes("autointerp"))
    with connection.cursor() as cur:
        cur.execute("SELECT row_to_json(k)::text FROM autointerp_providerkey k")
        (row,) = cur.fetchone()
    assert "cleartext" not in row
    key = ProviderKey.objects.get(user=user)
    assert key.api_key == "sk-legacy-cleartext-5678" and key.masked == "••••5678"


def test_an_embedding_score_runs_as_a_job_on_the_embeddings_queue_and_breaks_down_per_example(
    user, client, run_on_commit, monkeypatch, django_capture_on_commit_callbacks
):
    job, _ = _score_job(
        "embedding", 2, user=user, client=client, monkeypatch=monkeypatch, run_on_commit=run_on_commit,
        capture=django_capture_on_commit_callbacks,
    )  # fmt: skip
    assert job.kind == "score_explanation_embedding" and job.message.startswith("Embedding ")
    score = ExplanationScore.objects.get(pk=job.result["score_id"])
    samples = json.loads(score.json_details)["samples"]
    fragment = client.get(f"/explanations/scores/{score.id}/?fragment=1").content.decode()
    assert fragment.count('class="bd-row') == len(samples) == 4
    for s in samples:
        assert f'<td class="num">{s["similarity"]:.3f}</td>' in fragment


def test_a_simulation_score_runs_as_a_job_and_its_breakdown_shows_true_and_simulated_activations(
    llm_env, monkeypatch, user, client, run_on_commit, django_capture_on_commit_callbacks
):
    """SmolLM2 simulates a constant (one digit in its top logprobs on every token): that is a 0, not a failed job."""
    # one example of each kind: one LLM call per token (~1 s each for SmolLM2 on 2 busy cores)
    job, features = _score_job(
        "oai_simulation", 1, user=user, client=client, monkeypatch=monkeypatch, run_on_commit=run_on_commit,
        capture=django_capture_on_commit_callbacks,
    )  # fmt: skip
    page = client.get(_url(features["birds"])).content.decode()
    assert '<option value="oai_simulation">' in page  # the scorer the page offers, posted as the page posts it
    assert job.kind == "score_explanation" and (job.done, job.total) == (2, 2)
    assert job.message.startswith("Simulation ")
    score = ExplanationScore.objects.get(pk=job.result["score_id"])
    assert score.score_type_id == "oai_simulation" and score.initiated_by_id == user.pk
    details = json.loads(score.json_details)
    samples = details["samples"]
    assert len(samples) == 2 and all(len(s["simulated"]) == len(s["str_tokens"]) for s in samples)
    simulated = {v for s in samples for v in s["simulated"]}
    if len(simulated) == 1:
        assert score.value == 0.0 and details["summary"]["constant_simulation"] is True
    else:
        assert -1 <= score.value <= 1 and details["summary"]["pearson"] == pytest.approx(score.value)
    assert f'href="/explanations/scores/{score.id}/"' in client.get(_url(features["birds"])).content.decode()
    fragment = client.get(f"/explanations/scores/{score.id}/?fragment=1").content.decode()
    # every judged example: its truth, its true activations (top) and what the simulator predicted (below)
    assert fragment.count('class="bd-row') == 2 and fragment.count(">fires</span>") == 1
    assert fragment.count('<div class="simulated">') == 2
    assert f"over {details['summary']['n_tokens']} tokens" in fragment
    assert ("data-constant-simulation" in fragment) == details["summary"]["constant_simulation"]
    assert re.search(r'<span class="tok" style="--a:1.000">\s*(parrot|sparrows|eagle|canary|pigeons|owl)<', fragment)


def test_the_explainer_model_a_user_chooses_runs_the_job_and_labels_the_explanation(
    llm_env, monkeypatch, user, client, run_on_commit
):
    # a second name the test endpoint serves (serve_llm answers any model name with SmolLM2)
    monkeypatch.setenv("AUTOINTERP_EXPLAINER_MODELS", "smollm2-alias")
    source, features = planted_source()
    client.force_login(user)
    assert '<option value="smollm2-alias">' in client.get(_url(features["birds"])).content.decode()
    body = {"modelId": source.model_id, "layer": source.name, "index": 0, "explanationType": "np_max-act"}
    with run_on_commit():
        response = client.post("/api/explanation/generate-job", {**body, "explanationModelName": "smollm2-alias"},
                               content_type="application/json")  # fmt: skip
    assert response.status_code == 200, response.content
    job = Job.objects.get(pk=response.json()["jobId"])
    assert job.params["model_name"] == "smollm2-alias" and job.status == Job.Status.SUCCEEDED, job.error
    explanation = Explanation.objects.get(pk=job.result["explanation_id"])
    assert explanation.explanation_model_id == "smollm2-alias" and explanation.type_id == "np_max-act"
    # the default model has not explained it yet: the same type by another model is a new explanation
    assert not Explanation.objects.filter(feature=features["birds"], explanation_model_id="smollm2-135m-instruct")


def test_an_explainer_model_the_endpoint_does_not_serve_is_a_400_naming_the_ones_it_does(
    client, user, django_capture_on_commit_callbacks
):
    source, _ = planted_source()
    client.force_login(user)
    body = {"modelId": source.model_id, "layer": source.name, "index": 0, "explanationModelName": "gpt-9-imaginary"}
    for path in ("/api/explanation/generate-job", "/api/explanation/generate"):
        response = client.post(path, body, content_type="application/json")
        assert response.status_code == 400, (path, response.content)
        message = response.json()["message"]
        assert "explanationModelName" in message and "gpt-9-imaginary" in message
        assert "smollm2-135m-instruct" in message and "provider key" in message
    assert not Job.objects.exists()
    # with their own provider key a user may name any model of their provider (it answers for its models)
    provider_key_set(user=user, provider="openai", api_key="sk-test-abcdefgh1234")
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/api/explanation/generate-job", body, content_type="application/json")
    assert response.status_code == 200 and Job.objects.get().params["model_name"] == "gpt-9-imaginary"
