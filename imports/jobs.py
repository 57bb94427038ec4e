"""The `import` job kind (features/services/jobs.py): a run's plan, then one task per file (imports/tasks.py)."""

from features.services.jobs import JobKind, job_kind_register
from memicos_site.queues import Queue

# Fan-out and unleased: file tasks run in parallel on the imports workers and finish the job. Its recovery knows
# the run's phases (imports/recovery.py).
JOB_KIND = job_kind_register(
    JobKind(
        name="import",
        queue=Queue.IMPORTS,
        run="imports.services.importer.import_plan_run",
        lease=False,
        recover="imports.recovery.import_runs_recover",
    )  # fmt: skip
).name
