import json
import subprocess
import sys

import pytest
from django.db import connection

from features.models import Feature, Job
from features.services.jobs import job_enqueue
from tests.conftest import ROOT, subprocess_env, wait_until
from tests.factories import ActivationFactory, FeatureFactory


@pytest.mark.django_db
def test_the_web_process_never_imports_torch():
    # The subprocess talks to the migrated test database, as the web process would to its own.
    code = (
        "import os, sys, django;"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE','memicos_site.settings');"
        "django.setup();"
        "from django.urls import get_resolver; get_resolver().url_patterns;"
        "import memicos_site.wsgi;"
        "from django.test import Client; assert Client().get('/').status_code == 200;"
        "print(sorted(m for m in ('torch','transformer_lens','sae_lens','transformers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.django_db
def test_pgvector_and_the_hnsw_index_exist_after_migrations():
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname='vector'")
        assert cursor.fetchone() is not None
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname='explanation_embedding_hnsw'")
        (indexdef,) = cursor.fetchone()
    assert "USING hnsw" in indexdef and "vector_cosine_ops" in indexdef


def test_no_model_change_is_missing_a_migration():
    out = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=subprocess_env_no_db(),
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def subprocess_env_no_db():
    import os

    env = dict(os.environ)
    env["MEMICOS_ENV"] = "test"
    return env


@pytest.mark.django_db
def test_healthz_reports_database_redis_and_workers(client):
    response = client.get("/healthz?timeout=0.3")
    body = response.json()
    assert response.status_code == 200
    assert body["database"]["ok"] and body["database"]["pgvector"]
    assert body["redis"]["ok"]
    assert set(body["workers"]) >= {"ok", "count", "workers"}


def test_favicon_ico_leads_to_the_sites_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith(".svg")
    assert client.get(response["Location"]).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("raw", ["abc", "nan", "inf", "-1", "0", "600", "1e309", ""])
def test_healthz_refuses_a_malformed_or_unbounded_timeout_with_400_naming_it(client, raw):
    response = client.get("/healthz", {"timeout": raw})
    assert response.status_code == 400, response.content
    assert "timeout must be a number of seconds" in response.json()["message"]


@pytest.mark.django_db
def test_healthz_says_503_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz?timeout=0.3")
    assert response.status_code == 503
    assert response.json()["redis"]["ok"] is False


@pytest.mark.slow
def test_a_task_runs_in_a_real_celery_worker_and_records_its_job(start_worker):
    feature = FeatureFactory(max_act_approx=None)
    ActivationFactory(feature=feature, max_value=2.0)
    ActivationFactory(feature=feature, max_value=7.25)
    start_worker(["default"], name="platform")
    job = job_enqueue(kind="refresh_max_act", model_id=feature.model_id, params={"source_id": feature.source_id})
    wait_until(lambda: Job.objects.get(pk=job.pk).finished, 60, "the worker to run the job")
    feature.refresh_from_db()
    job.refresh_from_db()
    assert feature.max_act_approx == 7.25
    assert job.status == Job.Status.SUCCEEDED and job.finished_at is not None


def test_create_api_key_prints_a_key_that_authenticates(transactional_db):
    out = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "scripter", "--staff"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip().splitlines()[-1]
    from features.services.api_keys import api_key_authenticate

    user = api_key_authenticate(raw_key=key)
    assert user is not None and user.username == "scripter" and user.is_staff
    assert Feature.objects.count() == 0 and json.dumps(key)
