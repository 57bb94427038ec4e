"""Pipeline tasks (SAE training, dashboards, the demo) on the gpu_batch queue.

Each takes a Job id and is idempotent: a finished job is left alone, an interrupted one resumes from its
checkpoints (training: SAELens checkpoints; dashboards: chunk and batch files, deterministic row ids).
acks_late (the project default) re-delivers a task whose worker died, but only after the broker's visibility
timeout; gpu_batch workers re-queue jobs that lost their worker much sooner (inference/pipeline/recovery.py).
"""

from celery import shared_task
from celery.signals import celeryd_after_setup, worker_ready

from memicos_site.queues import Queue

_consumes_batch = []


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


@celeryd_after_setup.connect
def _note_queues(sender, instance, **kwargs):
    queues = instance.app.amqp.queues.consume_from or {}
    _consumes_batch[:] = [Queue.GPU_BATCH.value in queues]


@worker_ready.connect
def _start_recovery(sender=None, **kwargs):
    if any(_consumes_batch):
        from inference.pipeline.recovery import recovery_sweeper_start

        recovery_sweeper_start()
