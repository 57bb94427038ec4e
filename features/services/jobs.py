"""Job rows: the progress record every long job shares (UI and CLI read it)."""

import contextlib
import logging
import os
import socket
import threading
import time
import uuid

from django.db import close_old_connections, connection
from django.db.models import F
from django.utils import timezone

from features.models import Job
from memicos_site.redis_client import redis_client

log = logging.getLogger(__name__)


def job_create(*, kind: str, subject: str = "", total: int = 0, params: dict | None = None, created_by=None) -> Job:
    return Job.objects.create(kind=kind, subject=subject, total=total, params=params or {}, created_by=created_by)


def job_start(*, job_id: int, total: int | None = None, message: str = "") -> bool:
    """Claim a pending (or interrupted running) job. Returns False if it already finished."""
    now = timezone.now()  # updated_at too: .update() skips auto_now, and staleness checks read it
    updates = {"status": Job.Status.RUNNING, "started_at": now, "updated_at": now, "message": message}
    if total is not None:
        updates["total"] = total
    return bool(Job.objects.filter(pk=job_id, status__in=[Job.Status.PENDING, Job.Status.RUNNING]).update(**updates))


def job_progress(*, job_id: int, done: int | None = None, add: int = 0, total: int | None = None, message=None):
    updates = {"updated_at": timezone.now()}
    if done is not None:
        updates["done"] = done
    elif add:
        updates["done"] = F("done") + add
    if total is not None:
        updates["total"] = total
    if message is not None:
        updates["message"] = message
    Job.objects.filter(pk=job_id).update(**updates)


def job_finish(*, job_id: int, message: str = "", result: dict | None = None):
    now = timezone.now()
    updates = {"status": Job.Status.SUCCEEDED, "finished_at": now, "updated_at": now, "message": message, "error": ""}
    if result is not None:
        updates["result"] = result
    Job.objects.filter(pk=job_id).update(**updates)


def job_fail(*, job_id: int, error: str):
    now = timezone.now()
    Job.objects.filter(pk=job_id).update(status=Job.Status.FAILED, finished_at=now, updated_at=now, error=error[:10000])


# --- leases: which jobs a live process is running ------------------------------------------------------
# A worker killed mid-job leaves its Job RUNNING and its Celery message unacked until the broker's visibility
# timeout (an hour). The runner of a job therefore holds a short Redis lease, refreshed by a thread; a RUNNING
# job whose lease lapsed lost its runner, and a batch worker re-queues it (inference/pipeline/recovery.py). The
# lease also keeps a re-queued or redelivered copy from running a job twice at once. Best-effort: without
# Redis (a CLI on a laptop) jobs run unleased.


def job_lease_ttl() -> float:
    """Seconds a lease outlives its last refresh (MEMICOS_JOB_LEASE_TTL); the holder refreshes every ttl/3."""
    return float(os.environ.get("MEMICOS_JOB_LEASE_TTL", "30"))


def job_lease_key(job_id: int) -> str:
    return f"memicos:job:lease:{connection.settings_dict['NAME']}:{job_id}"  # ids repeat across databases


@contextlib.contextmanager
def job_lease(*, job_id: int):
    """Yields True while this process holds the job's lease, False if another live process holds it."""
    import redis

    key, holder, ttl = (
        job_lease_key(job_id),
        f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        job_lease_ttl(),
    )
    try:
        if not redis_client().set(key, holder, nx=True, px=int(ttl * 1000)):
            yield False
            return
    except redis.RedisError:
        log.warning("job %s runs without a lease: Redis is unavailable", job_id)
        yield True
        return
    stop = threading.Event()

    def refresh():
        while not stop.wait(ttl / 3):
            try:
                redis_client().set(key, holder, xx=True, px=int(ttl * 1000))
            except redis.RedisError:  # a Redis restart: keep working, the next refresh retries
                log.warning("job %s: lease refresh failed", job_id)

    thread = threading.Thread(target=refresh, name=f"job-lease-{job_id}", daemon=True)
    thread.start()
    try:
        yield True
    finally:
        stop.set()
        thread.join()
        try:
            if redis_client().get(key) == holder.encode():
                redis_client().delete(key)
        except redis.RedisError:
            pass  # it expires on its own


def job_lease_held(*, job_id: int) -> bool:
    return bool(redis_client().exists(job_lease_key(job_id)))


def job_requeue_claim(*, job_id: int, quiet_s: int) -> bool:
    """True for the one sweeper that may re-queue this job now; False for any other within `quiet_s`."""
    return bool(redis_client().set(f"{job_lease_key(job_id)}:requeued", "1", nx=True, ex=quiet_s))


def job_sweep_interval() -> float:
    """Seconds between a worker's sweeps for work that lost its runner or its message (MEMICOS_JOB_SWEEP_S)."""
    return float(os.environ.get("MEMICOS_JOB_SWEEP_S", "60"))


def job_sweeper_start(name: str, sweep) -> threading.Thread:
    """Run `sweep()` now and every job_sweep_interval() seconds in a daemon thread of this worker."""

    def loop():
        while True:
            try:
                sweep()
            except Exception:  # the database or Redis is restarting: the next sweep retries
                log.exception("%s sweep failed", name)
            finally:
                close_old_connections()
            time.sleep(job_sweep_interval())

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread


def job_sweeper_in_workers_of(queue: str, name: str, sweep_path: str) -> None:
    """Start job_sweeper_start(name, sweep) in every Celery worker that consumes `queue`, once the worker is ready.
    `sweep_path` (a dotted path) is imported then, not when the tasks module that calls this is loaded."""
    from celery.signals import celeryd_after_setup, worker_ready
    from django.utils.module_loading import import_string

    consumes: list[bool] = []

    def note_queues(sender, instance, **kwargs):
        consumes[:] = [queue in (instance.app.amqp.queues.consume_from or {})]

    def start(sender=None, **kwargs):
        if any(consumes):
            job_sweeper_start(name, import_string(sweep_path))

    # closures: held strongly, and once per name however often the calling module is imported
    celeryd_after_setup.connect(note_queues, weak=False, dispatch_uid=f"{name}-queues")
    worker_ready.connect(start, weak=False, dispatch_uid=f"{name}-start")
