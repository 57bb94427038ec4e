"""Import tasks on the `imports` queue: one per file. The run's plan is the `import` job (imports/jobs.py).

Tasks take ids and are idempotent: a file task re-checks its ImportFile under a row lock and returns at
once when that version is already loaded, so a redelivery (acks_late after a lost worker) is harmless.
A database outage (restart, failover) rolls the file's transaction back; the task retries with backoff
instead of failing, which would leave the file PENDING and the run stalled. A message the broker lost (a Redis
crash) is sent again by the recovery sweep of the `import` kind (imports/recovery.py).
"""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from imports.services.importer import import_file_load, import_run_advance
from memicos_site.queues import Queue

RETRY_ON_OUTAGE = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 30,
    "max_retries": 12,  # ~5 minutes of outage
}


@shared_task(queue=Queue.IMPORTS, acks_late=True, **RETRY_ON_OUTAGE)
def import_file_task(file_id: int, run_id: int) -> str:
    f = import_file_load(file_id=file_id, run_id=run_id)
    _dispatch(import_run_advance(run_id=run_id), run_id)
    return f.status


@shared_task(queue=Queue.IMPORTS, acks_late=True, **RETRY_ON_OUTAGE)
def import_run_advance_task(run_id: int) -> int:
    """The advance a lost file task would have made (imports.recovery)."""
    started = import_run_advance(run_id=run_id)
    _dispatch(started, run_id)
    return len(started)


def _dispatch(file_ids: list[int], run_id: int):
    for file_id in file_ids:
        import_file_task.delay(file_id, run_id)
