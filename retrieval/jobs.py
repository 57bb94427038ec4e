"""Job kinds of the seed systems (features/services/jobs.py); each resumes from its own checkpoints."""

from features.services.jobs import JobKind, job_kind_register
from memicos_site.queues import Queue

KIND_BUILD = job_kind_register(
    JobKind(name="memory_source", queue=Queue.GPU_BATCH, run="retrieval.services.memory_source_run")
).name
KIND_LM_CODES = job_kind_register(
    JobKind(name="passage_codes", queue=Queue.GPU_BATCH, run="retrieval.services.lm_codes_run")
).name
KIND_TOY = job_kind_register(JobKind(name="toy_model", queue=Queue.GPU_BATCH, run="retrieval.services.toy_run")).name
