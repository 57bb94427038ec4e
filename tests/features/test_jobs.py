"""The one job machinery (features/services/jobs.py): claim, lease, send on commit, recovery sweep, and the job API.
Every kind recovering from a SIGKILLed worker is in tests/faults/test_job_kinds.py."""

import base64
import json
import threading
import time

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction

from features.models import Job, Visibility
from features.services import jobs
from features.services.jobs import JobKind, JobLease, job_create, job_enqueue, job_lease_key, job_run, jobs_sweep
from memicos_site.redis_client import redis_client
from tests.factories import ModelFactory, SourceFactory

RUNS: list[int] = []  # job ids the test kinds ran, in order
GATE = threading.Event()


def record_run(job, **inline):
    RUNS.append(job.job_id)
    job.progress(done=1, total=2, message="half way")
    GATE.wait(inline.get("hold", 0))
    job.message = "recorded"
    return {"runs": RUNS.count(job.job_id)}


@pytest.fixture
def test_kinds(monkeypatch):
    """Two kinds whose run function records each run: one leased, one not (like imports and autointerp)."""
    RUNS.clear()
    GATE.clear()
    kinds = dict(jobs.JOB_KINDS)
    for name, lease in (("test_leased", True), ("test_unleased", False)):
        kinds[name] = JobKind(name=name, queue="default", run=f"{__name__}.record_run", lease=lease)
    monkeypatch.setattr(jobs, "JOB_KINDS", kinds)
    yield
    GATE.set()


def _clean_lease(job_id):
    redis_client().delete(job_lease_key(job_id), f"{job_lease_key(job_id)}:requeued")  # ids repeat across test DBs


@pytest.mark.parametrize("kind", ["test_leased", "test_unleased"])
def test_two_workers_racing_for_one_job_run_it_exactly_once(transactional_db, test_kinds, kind):
    job = job_create(kind=kind)
    _clean_lease(job.pk)
    outcomes = []

    def worker():
        try:
            outcomes.append(job_run(job_id=job.pk, hold=10).status)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(outcomes) < 1 and time.monotonic() < deadline:  # the loser returns while the winner still runs
        time.sleep(0.02)
    assert len(outcomes) == 1 and RUNS == [job.pk]  # the loser did not run it
    GATE.set()
    for t in threads:
        t.join(10)
    assert outcomes[1] == Job.Status.SUCCEEDED and RUNS == [job.pk]
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.message == "recorded" and job.result == {"runs": 1}


def test_a_redelivered_message_for_a_finished_or_held_job_does_nothing(db, test_kinds):
    GATE.set()
    done = job_create(kind="test_leased")
    _clean_lease(done.pk)
    assert job_run(job_id=done.pk).status == Job.Status.SUCCEEDED
    assert job_run(job_id=done.pk).status == Job.Status.SUCCEEDED and RUNS == [done.pk]

    held = job_create(kind="test_leased")
    _clean_lease(held.pk)
    other = JobLease(held.pk)
    assert other.acquire() is True  # a live worker holds it
    try:
        Job.objects.filter(pk=held.pk).update(status=Job.Status.RUNNING)
        assert job_run(job_id=held.pk).status == Job.Status.RUNNING and RUNS == [done.pk]
    finally:
        other.release()
    # its holder died (the lease is gone): the next delivery takes the RUNNING job over and finishes it
    assert job_run(job_id=held.pk).status == Job.Status.SUCCEEDED and RUNS == [done.pk, held.pk]


def test_a_lease_held_by_another_worker_is_never_extended_or_released_by_this_one(db, monkeypatch):
    monkeypatch.setenv("MEMICOS_JOB_LEASE_TTL", "0.6")  # refreshed every 0.2 s
    job = job_create(kind="dashboards")
    _clean_lease(job.pk)
    key = job_lease_key(job.pk)
    mine = JobLease(job.pk)
    assert mine.acquire() is True
    try:
        # this worker stalls past its lease (as if paused); it lapses and another worker takes the job over
        redis_client().delete(key)
        theirs = redis_client().lock(key, timeout=30, thread_local=False)
        assert theirs.acquire(blocking=False, token="another-host:1:theirs")
        assert mine.lost.wait(2), "the refresh noticed that the lease is no longer its own"
        time.sleep(0.5)  # more refresh periods: none may touch the other holder's lease
        assert redis_client().get(key) == b"another-host:1:theirs" and redis_client().pttl(key) <= 30_000
        ttl_before = redis_client().pttl(key)
    finally:
        mine.release()
    assert redis_client().get(key) == b"another-host:1:theirs", "release deleted another holder's lease"
    assert redis_client().pttl(key) <= ttl_before
    theirs.release()


def test_a_job_sent_inside_a_transaction_that_rolls_back_never_runs(transactional_db, real_celery):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    model = ModelFactory()
    with pytest.raises(RuntimeError), transaction.atomic():
        job_enqueue(kind="refresh_max_act", model_id=model.id, params={"source_id": 0})
        assert broker.llen("default") == 0  # not sent before the commit
        raise RuntimeError("the request failed after creating its job")
    assert broker.llen("default") == 0 and not Job.objects.exists()
    with transaction.atomic():
        job = job_enqueue(kind="refresh_max_act", model_id=model.id, params={"source_id": 0})
        assert broker.llen("default") == 0
    assert broker.llen("default") == 1  # sent once the row is visible to a worker
    message = json.loads(broker.lindex("default", 0))
    assert json.loads(base64.b64decode(message["body"]))[1] == {"job_id": job.pk}


def test_the_sweep_resends_jobs_that_lost_their_worker_or_their_message_and_leaves_live_ones(
    transactional_db, test_kinds, monkeypatch
):
    GATE.set()
    monkeypatch.setenv("MEMICOS_JOB_LEASE_TTL", "5")
    monkeypatch.setenv("MEMICOS_JOB_STALL_S", "60")
    old = time.time() - 120

    def job(kind, status):
        j = job_create(kind=kind)
        _clean_lease(j.pk)
        Job.objects.filter(pk=j.pk).update(status=status, updated_at=_at(old))
        return j

    lost_worker = job("test_leased", Job.Status.RUNNING)
    lost_message = job("test_leased", Job.Status.PENDING)
    unleased_stalled = job("test_unleased", Job.Status.RUNNING)
    alive = job("test_leased", Job.Status.RUNNING)
    live_lease = JobLease(alive.pk)
    assert live_lease.acquire()
    fresh = job_create(kind="test_unleased")  # queued a moment ago: its message may be waiting
    try:
        swept = jobs_sweep(queues=["default"])  # eager here: each job sent again runs at once
        again = jobs_sweep(queues=["default"])  # sent again at most once per quiet period, and all are done
    finally:
        live_lease.release()
    assert again == {}
    assert sorted(swept["test_leased"]) == sorted([lost_worker.pk, lost_message.pk])
    assert swept["test_unleased"] == [unleased_stalled.pk]
    assert sorted(RUNS) == sorted([lost_worker.pk, lost_message.pk, unleased_stalled.pk])
    for j in (lost_worker, lost_message, unleased_stalled):
        j.refresh_from_db()
        assert j.status == Job.Status.SUCCEEDED
    assert Job.objects.get(pk=alive.pk).status == Job.Status.RUNNING
    assert Job.objects.get(pk=fresh.pk).status == Job.Status.PENDING


def _at(epoch: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC)


def test_progress_is_throttled_but_its_latest_value_is_never_lost(db, monkeypatch):
    from features.services.jobs import JobContext

    job = job_create(kind="dashboards")
    writes = []
    monkeypatch.setattr(jobs, "job_progress", lambda **kw: writes.append(kw))
    ctx = JobContext(job, None)
    for i in range(1000):
        ctx.progress(done=i, total=1000, message=f"step {i}")
    assert 1 <= len(writes) <= 3  # a second at most between writes, and the last step (done == total) ...
    ctx.flush()  # ... is written before the job ends
    assert writes[-1] == {"job_id": job.pk, "done": 999, "total": 1000, "message": "step 999"}


def test_a_failing_job_is_failed_with_its_error_in_one_place(db, test_kinds, monkeypatch):
    def boom(job, **inline):
        raise ValueError("the corpus is empty")

    monkeypatch.setattr(f"{__name__}.record_run", boom)
    job = job_create(kind="test_leased")
    _clean_lease(job.pk)
    with pytest.raises(ValueError):
        job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and job.error == "ValueError: the corpus is empty" and job.finished_at


def _job_about(model, source="", creator=None):
    return Job.objects.create(kind="dashboards", model=model, source_name=source, created_by=creator, message="m")


def test_the_job_api_shows_a_job_to_those_who_may_read_its_model_and_source(
    client, user, other_user, staff_user, api_client, api_key_for
):
    public = ModelFactory()
    private = ModelFactory(visibility=Visibility.PRIVATE, creator=user)
    hidden_source = SourceFactory(model=public, visibility=Visibility.PRIVATE, creator=user)
    open_job = _job_about(public, "0-res-open")
    private_job = _job_about(private, "0-res-x", creator=user)
    hidden_job = _job_about(public, hidden_source.name)
    unlisted = _job_about(ModelFactory(visibility=Visibility.UNLISTED))

    body = client.get(f"/api/job/{open_job.pk}").json()
    assert body["status"] == "PENDING" and body["kind"] == "dashboards" and body["modelId"] == public.id
    assert body["source"] == "0-res-open" and body["done"] == 0 and body["fraction"] == 0.0
    assert client.get(f"/api/job/{unlisted.pk}").status_code == 200  # like its page: readable by link
    for job in (private_job, hidden_job):
        anonymous = client.get(f"/api/job/{job.pk}")
        assert anonymous.status_code == 404 and "message" in anonymous.json()
        stranger = api_client.get(f"/api/job/{job.pk}", HTTP_X_API_KEY=api_key_for(other_user))
        assert stranger.status_code == 404
        assert api_client.get(f"/api/job/{job.pk}", HTTP_X_API_KEY=api_key_for(user)).status_code == 200
        assert api_client.get(f"/api/job/{job.pk}", HTTP_X_API_KEY=api_key_for(staff_user)).status_code == 200
    own = _job_about(None, creator=other_user)  # about nothing public: its creator only
    assert api_client.get(f"/api/job/{own.pk}", HTTP_X_API_KEY=api_key_for(other_user)).status_code == 200
    assert client.get(f"/api/job/{own.pk}").status_code == 404
    for bad in ("abc", "%D9%A1", "9" * 30, "0", "-1"):
        r = client.get(f"/api/job/{bad}")
        assert r.status_code == 404 and "message" in r.json(), bad


def test_every_kind_declares_a_queue_a_run_function_that_imports_and_a_recovery(db):
    from django.utils.module_loading import import_string

    from memicos_site.queues import STATIC_QUEUES

    names = set(jobs.JOB_KINDS)
    assert {"train_sae", "dashboards", "import", "autointerp", "umap", "memory_source", "passage_codes",
            "toy_model", "refresh_max_act", "demo"} <= names  # fmt: skip
    for kind in jobs.JOB_KINDS.values():
        assert kind.queue in STATIC_QUEUES, kind
        assert callable(import_string(kind.run)), kind
        if kind.recover:
            assert callable(import_string(kind.recover)), kind
