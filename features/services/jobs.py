"""Job rows: the progress record every long job shares (UI and CLI read it)."""

from django.db.models import F
from django.utils import timezone

from features.models import Job


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
