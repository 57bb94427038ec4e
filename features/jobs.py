"""Job kinds of the features app (features/services/jobs.py)."""

from features.services.jobs import JobKind, job_kind_register
from memicos_site.queues import Queue

KIND_REFRESH_MAX_ACT = job_kind_register(
    JobKind(name="refresh_max_act", queue=Queue.DEFAULT, run="features.services.features.source_refresh_max_act_run")
).name
