"""Re-send the tasks of import runs that stalled because the broker lost a message.

File tasks are acks_late, so a worker killed mid-file gets its message back after the broker's visibility timeout
(an hour). A Redis crash can lose a message outright: one that BRPOP had taken off the queue but that the worker
had not yet recorded as unacknowledged, or had not yet received. Its file then stays PENDING and the run never
finishes. This is the recovery of the `import` kind in the one sweep (features.services.jobs.jobs_sweep), which every
`imports` worker runs at start and every MEMICOS_JOB_SWEEP_S seconds: a run that is not DONE and whose Job has not
moved for MEMICOS_IMPORT_STALL_S seconds gets its phase's pending files (or its plan) sent again, at most once per
REQUEUE_QUIET_S. Duplicates are harmless: a file task skips a file another
transaction is loading, or has loaded (imports.services.importer.import_file_load).
"""

import logging
import os
from datetime import timedelta

from django.utils import timezone

from features.models import Job
from features.services.jobs import JobKind, job_requeue_claim, job_send
from imports.models import ImportRun
from imports.services.importer import PHASE_KINDS, run_files

log = logging.getLogger(__name__)
REQUEUE_QUIET_S = 600  # a stalled run's tasks wait behind other imports; do not send them again for this long


def import_stall_s() -> float:
    """Seconds without a finished file (the Job's updated_at) after which a run counts as stalled."""
    return float(os.environ.get("MEMICOS_IMPORT_STALL_S", "300"))


def import_runs_recover(kind: JobKind | None = None) -> list[int]:
    """Send again the tasks of every stalled import run. Returns the run ids."""
    from imports.tasks import import_file_task, import_run_advance_task

    cutoff = timezone.now() - timedelta(seconds=import_stall_s())
    stalled = ImportRun.objects.exclude(phase=ImportRun.Phase.DONE).filter(
        job__status__in=[Job.Status.PENDING, Job.Status.RUNNING], job__updated_at__lt=cutoff
    )
    resent = []
    for run_id, job_id, phase in stalled.values_list("pk", "job_id", "phase"):
        if not job_requeue_claim(job_id=job_id, quiet_s=REQUEUE_QUIET_S):
            continue
        if phase == ImportRun.Phase.PLANNED:
            # the plan is claimed PENDING → RUNNING only: a plan whose worker died goes back to PENDING first
            Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(status=Job.Status.PENDING)
            job_send(job_id=job_id)
        elif files := run_files(run_id, PHASE_KINDS[phase]):
            for file_id in files:
                import_file_task.delay(file_id, run_id)
        else:  # every file loaded, but the task that would have advanced the run was lost
            import_run_advance_task.delay(run_id)
        resent.append(run_id)
        log.warning("import run %s stalled in %s; its tasks were sent again", run_id, phase)
    return resent
