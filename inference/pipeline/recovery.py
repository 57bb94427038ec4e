"""Re-queue pipeline jobs whose worker died: a batch worker sweeps for RUNNING jobs nobody holds a lease on.

A SIGKILLed or crashed gpu_batch worker leaves its job RUNNING and its Celery message unacked; Redis would
hand the message out again only after the visibility timeout (an hour, as long as the longest job). The
runner of a job refreshes a lease (features.services.jobs.job_lease) every few seconds, so a RUNNING job
without one has lost its runner. Every gpu_batch worker sweeps at start and every MEMICOS_JOB_SWEEP_S
seconds; the job resumes from its checkpoints (chunk and batch files, SAELens checkpoints) and writes its
rows with upserts on deterministic ids, so nothing is duplicated.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from features.models import Job
from features.services.jobs import job_lease_held, job_lease_ttl, job_requeue_claim

log = logging.getLogger(__name__)
REQUEUE_QUIET_S = 600  # a re-queued job waits behind other batch work; do not send it again for this long


def _tasks() -> dict:
    from inference.pipeline import services, tasks

    return {services.KIND_TRAIN: tasks.train_sae, services.KIND_DASHBOARDS: tasks.dashboards}


def pipeline_jobs_recover() -> list[int]:
    """Send the task again for every RUNNING pipeline job whose lease lapsed. Returns the job ids."""
    tasks = _tasks()
    # updated_at: a job that reported progress within a lease's lifetime is alive even if it runs unleased
    cutoff = timezone.now() - timedelta(seconds=job_lease_ttl())
    requeued = []
    for job_id, kind in Job.objects.filter(
        kind__in=list(tasks), status=Job.Status.RUNNING, updated_at__lt=cutoff
    ).values_list("pk", "kind"):
        if job_lease_held(job_id=job_id):
            continue
        if not job_requeue_claim(job_id=job_id, quiet_s=REQUEUE_QUIET_S):
            continue
        tasks[kind].delay(job_id)
        requeued.append(job_id)
        log.warning("pipeline job %s lost its worker; re-queued", job_id)
    return requeued
