"""Housekeeping tasks on the default queue. Thin: parse ids, call a service."""

from celery import shared_task

from features.services.features import source_refresh_max_act
from features.services.jobs import job_fail, job_finish, job_start
from memicos_site.queues import Queue


@shared_task(queue=Queue.DEFAULT, acks_late=True)
def source_refresh_max_act_task(source_id: int, job_id: int | None = None) -> int:
    if job_id is not None:
        job_start(job_id=job_id)
    try:
        updated = source_refresh_max_act(source_id=source_id)
    except Exception as exc:
        if job_id is not None:
            job_fail(job_id=job_id, error=str(exc))
        raise
    if job_id is not None:
        job_finish(job_id=job_id, message=f"{updated} features updated", result={"updated": updated})
    return updated
