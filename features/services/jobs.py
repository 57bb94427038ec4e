"""The one job machinery: every long job (training, dashboards, imports, autointerp, UMAP, seed systems…) is a
Job row of a declared kind, created and sent by `job_enqueue`, claimed by exactly one worker in `job_run`,
leased while it runs, finished or failed here, and recovered by one sweep.

A kind is declared once, in its app's `jobs.py` (`job_kind_register(JobKind(...))`), with the dotted path of a
run function `run(ctx: JobContext, **inline) -> dict | None`. The run function does the work and reports
progress through `ctx.progress`; the machinery claims the job before it and finishes or fails it after:
- it returns a result dict (or None) → SUCCEEDED, `ctx.message` as the message;
- it raises JobInterrupted, or the database goes away → left RUNNING, the sweep re-sends it and it resumes from
  its own checkpoints;
- it raises anything else → FAILED with "Type: message" on the Job;
- it returns JOB_CONTINUES (fan-out kinds: imports, autointerp) → its sub-tasks finish the job themselves
  through job_finish / job_fail.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.db import InterfaceError, OperationalError, close_old_connections, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from features.models import Job
from memicos_site.redis_client import redis_client

log = logging.getLogger(__name__)

JOB_CONTINUES = object()  # returned by a fan-out kind's run function: its sub-tasks finish the job
PROGRESS_EVERY_S = 1.0  # one UPDATE a second at most per job: a training step is ~50 ms, a row UPDATE ~1 ms
REQUEUE_QUIET_S = 600  # a re-sent job waits behind other work on its queue: do not send it again for this long


class JobInterrupted(Exception):
    """Raised by a run function that stopped early on purpose: the job stays RUNNING and resumes later."""


# --- kinds -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobKind:
    name: str
    queue: str
    run: str  # dotted path of run(ctx: JobContext, **inline) -> dict | None | JOB_CONTINUES
    # lease: one live runner at a time, held in Redis and refreshed by a thread. A RUNNING job whose lease
    # lapsed lost its worker, and the sweep re-sends it. Fan-out kinds hold none: their plan is quick and their
    # sub-tasks run in parallel.
    lease: bool = True
    # recover: a dotted path of `sweep(kind) -> list[int]` replacing the default (re-send RUNNING jobs whose
    # lease lapsed, and PENDING ones whose message was lost); "" for the default.
    recover: str = ""
    # PENDING (or, unleased, RUNNING) this long without progress → its message or its worker was lost;
    # None: MEMICOS_JOB_STALL_S (300)
    stall_s: float | None = None


JOB_KINDS: dict[str, JobKind] = {}


def job_kind_register(kind: JobKind) -> JobKind:
    JOB_KINDS[kind.name] = kind
    return kind


def job_kind(name: str) -> JobKind:
    try:
        return JOB_KINDS[name]
    except KeyError:
        raise LookupError(f"No job kind {name!r} is declared (kinds: {', '.join(sorted(JOB_KINDS))})") from None


# --- creating and sending ----------------------------------------------------------------------------------


def job_create(
    *, kind: str, model_id: str | None = None, source: str = "", total: int = 0, params: dict | None = None,
    created_by=None,
) -> Job:  # fmt: skip
    return Job.objects.create(
        kind=kind, model_id=model_id, source_name=source, total=total, params=params or {}, created_by=created_by
    )


def job_enqueue(
    *, kind: str, model_id: str | None = None, source: str = "", params: dict | None = None, created_by=None,
    reuse_unfinished: bool = False, send: bool = True,
) -> Job:  # fmt: skip
    """Create a Job of a declared kind and send its task once the surrounding transaction commits (a worker never
    looks for a row it cannot see yet, and a rolled-back job is never sent). `reuse_unfinished` returns the
    unfinished job of this kind and subject instead, with the parameters it started with (its checkpoints belong
    to them), and sends it again. `send=False` leaves the job for an inline `job_run` (a CLI in the foreground)."""
    job_kind(kind)
    job = None
    if reuse_unfinished:
        job = (
            Job.objects.filter(kind=kind, model_id=model_id, source_name=source)
            .filter(status__in=[Job.Status.PENDING, Job.Status.RUNNING])
            .order_by("pk")
            .first()
        )
    if job is None:
        job = job_create(kind=kind, model_id=model_id, source=source, params=params, created_by=created_by)
    if send:
        job_send(job_id=job.pk)
    return job


def job_send(*, job_id: int, kind: str | None = None) -> None:
    """Send the job's task on commit. Harmless when the job is held or finished: the claim ignores it."""
    from features.tasks import job_run_task

    queue = job_kind(kind or Job.objects.values_list("kind", flat=True).get(pk=job_id)).queue
    transaction.on_commit(lambda: job_run_task.apply_async(kwargs={"job_id": job_id}, queue=queue))


def job_resume(*, job_id: int, send: bool = True) -> Job:
    """Make a failed, cancelled or interrupted job runnable again and send it (or, send=False, leave it for an
    inline `job_run`); its run skips what is done."""
    Job.objects.filter(pk=job_id).exclude(status=Job.Status.SUCCEEDED).update(
        status=Job.Status.PENDING, finished_at=None, updated_at=timezone.now()
    )
    if send:
        job_send(job_id=job_id)
    return Job.objects.get(pk=job_id)


# --- running -------------------------------------------------------------------------------------------------


class JobContext:
    """What a run function gets: its job (params, created_by), throttled progress, and the lease it runs under."""

    def __init__(self, job: Job, lease: JobLease | None):
        self.job, self.lease, self.message = job, lease, ""
        self._pending: dict | None = None
        self._last = 0.0

    @property
    def job_id(self) -> int:
        return self.job.pk

    @property
    def params(self) -> dict:
        return self.job.params

    def progress(self, *, done: int | None = None, total: int | None = None, message: str | None = None):
        """Record progress, at most every PROGRESS_EVERY_S seconds; the latest values are never lost (flush)."""
        pending = self._pending or {}
        pending.update({k: v for k, v in (("done", done), ("total", total), ("message", message)) if v is not None})
        self._pending = pending
        reached = done is not None and total is not None and done >= total
        if reached or time.monotonic() - self._last >= PROGRESS_EVERY_S:
            self.flush()

    def reporter(self, echo: Callable | None = None) -> Callable[..., None]:
        """A `(done, total, message=None)` callback for runtime code: throttled progress, echoed to a CLI's bar too."""

        def report(done: int, total: int, message: str | None = None):
            if echo:
                echo(done, total, message)
            self.progress(done=done, total=total, message=message)

        return report

    def flush(self):
        if self._pending:
            pending, self._pending, self._last = self._pending, None, time.monotonic()
            job_progress(job_id=self.job_id, **pending)


def job_run(*, job_id: int, **inline) -> Job:
    """Claim the job, run its kind's run function, finish or fail it. A job held by a live worker, or finished,
    is left alone. `inline` (a loaded model, an echo callback, a test's stop point) goes to the run function."""
    job = Job.objects.get(pk=job_id)
    kind = job_kind(job.kind)
    with job_claim(job_id=job_id, lease=kind.lease) as lease:
        if lease is None:
            return Job.objects.get(pk=job_id)
        job.refresh_from_db()
        _test_pause(job)
        ctx = JobContext(job, lease if isinstance(lease, JobLease) else None)
        try:
            result = import_string(kind.run)(ctx, **inline)
        except JobInterrupted:
            ctx.flush()  # left RUNNING: the row shows where it stopped, and a rerun resumes
        except (OperationalError, InterfaceError):
            raise  # the database went away: left RUNNING, the sweep re-sends it
        except Exception as exc:
            job_fail(job_id=job_id, error=f"{type(exc).__name__}: {exc}")
            raise
        else:
            ctx.flush()
            if result is not JOB_CONTINUES:
                job_finish(job_id=job_id, message=ctx.message, result=result)
    return Job.objects.get(pk=job_id)


def _test_pause(job: Job) -> None:
    """Test hook: MEMICOS_JOB_PAUSE_KIND=<kind> holds a claimed job of that kind (RUNNING, leased when its kind is)
    and touches VAR_DIR/paused-job-<id>, so a fault test can SIGKILL its worker mid-job. Unset everywhere else."""
    if os.environ.get("MEMICOS_JOB_PAUSE_KIND") == job.kind:
        from django.conf import settings

        (settings.VAR_DIR / f"paused-job-{job.pk}").touch()
        time.sleep(300)


@contextlib.contextmanager
def job_claim(*, job_id: int, lease: bool) -> Iterator[JobLease | bool | None]:
    """Yields the lease (or True, unleased) when this caller now runs the job; None when it must not.

    The conditional UPDATE lets exactly one caller move PENDING → RUNNING. A RUNNING job is taken over only by
    the caller that just acquired its lease, which no live runner holds (the previous one died). Without Redis
    (a CLI on a laptop) a RUNNING job is taken over once it has not moved for a lease's lifetime."""
    held = JobLease(job_id) if lease else None
    if held is not None:
        acquired = held.acquire()
        if acquired is False:
            yield None  # a live worker runs it
            return
        if acquired is None:
            held = None  # Redis is unavailable: unleased, with the staleness rule below
    try:
        takeover = Q(status=Job.Status.PENDING)
        if isinstance(held, JobLease):
            takeover |= Q(status=Job.Status.RUNNING)
        elif lease:
            stale = timezone.now() - timedelta(seconds=job_lease_ttl())
            takeover |= Q(status=Job.Status.RUNNING, updated_at__lt=stale)
        now = timezone.now()
        claimed = Job.objects.filter(takeover, pk=job_id).update(
            status=Job.Status.RUNNING, started_at=now, updated_at=now, error=""
        )
        yield (held or True) if claimed else None
    finally:
        if held is not None:
            held.release()


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


# --- leases ----------------------------------------------------------------------------------------------------
# A worker killed mid-job leaves its Job RUNNING and its Celery message unacked until the broker's visibility
# timeout (an hour). The runner therefore holds a short Redis lease, refreshed by a thread; a RUNNING job whose
# lease lapsed lost its runner, and the sweep re-sends it. redis-py's Lock extends and releases by compare-and-set
# on this holder's token (Lua), so a runner whose lease lapsed and was taken over can never extend or release the
# new holder's.


def job_lease_ttl() -> float:
    """Seconds a lease outlives its last refresh (MEMICOS_JOB_LEASE_TTL); the holder refreshes every ttl/3."""
    return float(os.environ.get("MEMICOS_JOB_LEASE_TTL", "30"))


def job_lease_key(job_id: int) -> str:
    return f"memicos:job:lease:{connection.settings_dict['NAME']}:{job_id}"  # ids repeat across databases


class JobLease:
    """One holder's lease on a job. The token names the host (`manage.py health worker` reads it)."""

    def __init__(self, job_id: int):
        self.job_id, self.ttl = job_id, job_lease_ttl()
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lock = redis_client().lock(job_lease_key(job_id), timeout=self.ttl, thread_local=False)
        self.lost = threading.Event()  # set when a refresh found the lease gone or taken over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool | None:
        """True: held now. False: another holder has it. None: Redis is unavailable."""
        import redis

        try:
            if not self.lock.acquire(blocking=False, token=self.token):
                return False
        except redis.RedisError:
            log.warning("job %s runs without a lease: Redis is unavailable", self.job_id)
            return None
        self._thread = threading.Thread(target=self._refresh, name=f"job-lease-{self.job_id}", daemon=True)
        self._thread.start()
        return True

    def _refresh(self):
        import redis
        from redis.exceptions import LockNotOwnedError

        while not self._stop.wait(self.ttl / 3):
            try:
                self.lock.reacquire()
            except LockNotOwnedError:
                log.error("job %s: its lease lapsed and another holder took it; not extending it", self.job_id)
                self.lost.set()
                return
            except redis.RedisError:  # a Redis restart: keep working, the next refresh retries
                log.warning("job %s: lease refresh failed", self.job_id)

    def release(self):
        import redis

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.lock.release()
        except (redis.exceptions.LockError, redis.RedisError):
            pass  # lapsed (and maybe taken over) or Redis is down: it is not ours to delete


def job_lease_held(*, job_id: int) -> bool:
    return bool(redis_client().exists(job_lease_key(job_id)))


def job_requeue_claim(*, job_id: int, quiet_s: int = REQUEUE_QUIET_S) -> bool:
    """True for the one sweeper that may re-send this job now; False for any other within `quiet_s`."""
    return bool(redis_client().set(f"{job_lease_key(job_id)}:requeued", "1", nx=True, ex=quiet_s))


# --- recovery ------------------------------------------------------------------------------------------------


def job_kind_sweep(kind: JobKind) -> list[int]:
    """The default recovery of a kind: re-send RUNNING jobs whose runner died (leased kinds: no lease and no
    progress for a lease's lifetime; unleased kinds: back to PENDING after `stall_s` without progress) and
    PENDING jobs whose message was lost (`stall_s` without a claim). Returns the job ids sent again."""
    now = timezone.now()
    stalled = now - timedelta(seconds=kind.stall_s or float(os.environ.get("MEMICOS_JOB_STALL_S", "300")))
    jobs = Job.objects.filter(kind=kind.name)
    if kind.lease:
        lapsed = now - timedelta(seconds=job_lease_ttl())
        candidates = jobs.filter(
            Q(status=Job.Status.RUNNING, updated_at__lt=lapsed) | Q(status=Job.Status.PENDING, updated_at__lt=stalled)
        )
    else:
        candidates = jobs.filter(status__in=[Job.Status.PENDING, Job.Status.RUNNING], updated_at__lt=stalled)
    sent = []
    for job_id, status in candidates.values_list("pk", "status"):
        if kind.lease and job_lease_held(job_id=job_id):
            continue
        if not job_requeue_claim(job_id=job_id):
            continue
        if not kind.lease and status == Job.Status.RUNNING:
            # an unleased job is claimed PENDING → RUNNING only; its plan resumes from what is done
            Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(status=Job.Status.PENDING)
        job_send(job_id=job_id, kind=kind.name)
        sent.append(job_id)
        log.warning("%s job %s lost its worker or its message; sent again", kind.name, job_id)
    return sent


def jobs_sweep(*, queues: list[str] | None = None) -> dict[str, list[int]]:
    """One recovery sweep over every declared kind (of these queues). Returns {kind: job ids sent again}."""
    swept = {}
    for kind in JOB_KINDS.values():
        if queues is not None and kind.queue not in queues:
            continue
        sweep = import_string(kind.recover) if kind.recover else job_kind_sweep
        if sent := sweep(kind):
            swept[kind.name] = sent
    return swept


def job_sweep_interval() -> float:
    """Seconds between a worker's recovery sweeps (MEMICOS_JOB_SWEEP_S)."""
    return float(os.environ.get("MEMICOS_JOB_SWEEP_S", "60"))


def job_sweeper_start(name: str, sweep: Callable[[], object]) -> threading.Thread:
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
