"""The one Celery task every job kind runs through (features/services/jobs.py), and the recovery sweeper that
every worker starts for the kinds of the queues it consumes."""

from celery import shared_task
from celery.signals import celeryd_after_setup, worker_ready

from features.services.jobs import job_run, job_sweeper_start, jobs_sweep


# acks_late (the project default): a worker lost mid-job gets its message back after the visibility timeout;
# the sweep re-sends it much sooner, and the claim makes the duplicate harmless.
@shared_task(name="jobs.run")
def job_run_task(*, job_id: int) -> int:
    job_run(job_id=job_id)
    return job_id


_consumed: list[str] = []


@celeryd_after_setup.connect(weak=False, dispatch_uid="jobs-sweep-queues")
def _note_queues(sender, instance, **kwargs):
    _consumed[:] = list(instance.app.amqp.queues.consume_from or {})


@worker_ready.connect(weak=False, dispatch_uid="jobs-sweep-start")
def _start_sweeper(sender=None, **kwargs):
    if _consumed:
        job_sweeper_start("jobs-recovery", lambda: jobs_sweep(queues=list(_consumed)))
