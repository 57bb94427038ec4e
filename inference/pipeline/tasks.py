"""Pipeline tasks (SAE training, dashboards, the demo) on the gpu_batch queue.

Each takes a Job id and is idempotent: a finished job is left alone, an interrupted one resumes from its
checkpoints (training: SAELens checkpoints; dashboards: chunk and batch files, deterministic row ids).
acks_late (the project default) re-delivers a task whose worker died, but only after the broker's visibility
timeout; gpu_batch workers re-queue jobs that lost their worker much sooner (inference/pipeline/recovery.py).
"""

from celery import shared_task

from features.services.jobs import job_sweeper_in_workers_of
from memicos_site.queues import Queue


@shared_task(name="pipeline.train_sae", queue=Queue.GPU_BATCH.value)
def train_sae(job_id: int) -> int:
    from inference.pipeline.services import train_job_run

    train_job_run(job_id=job_id)
    return job_id


@shared_task(name="pipeline.dashboards", queue=Queue.GPU_BATCH.value)
def dashboards(job_id: int) -> int:
    from inference.pipeline.services import dashboards_job_run

    dashboards_job_run(job_id=job_id)
    return job_id


@shared_task(name="pipeline.demo_followups", queue=Queue.DEFAULT.value)
def demo_followups() -> list[int]:
    from inference.pipeline.demo import demo_followups_start

    return [job.pk for job in demo_followups_start()]


job_sweeper_in_workers_of(
    Queue.GPU_BATCH.value, "pipeline-recovery", "inference.pipeline.recovery.pipeline_jobs_recover"
)
