"""Job kinds of the SAE pipeline (features/services/jobs.py). Both resume from their checkpoints: SAELens
checkpoints for training, chunk and batch files and deterministic row ids for dashboards."""

from features.services.jobs import JobKind, job_kind_register
from memicos_site.queues import Queue

KIND_TRAIN = job_kind_register(
    JobKind(name="train_sae", queue=Queue.GPU_BATCH, run="inference.pipeline.services.train_run")
).name
KIND_DASHBOARDS = job_kind_register(
    JobKind(name="dashboards", queue=Queue.GPU_BATCH, run="inference.pipeline.services.dashboards_run")
).name
KIND_EVALS = job_kind_register(
    JobKind(name="sae_evals", queue=Queue.GPU_BATCH, run="inference.pipeline.evals.evals_run")
).name
