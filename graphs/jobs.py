"""Job kinds of attribution graphs (features/services/jobs.py). Transcoder training resumes from its finished
layers; a graph is small enough to redo from the start."""

from features.services.jobs import JobKind, job_kind_register
from memicos_site.queues import Queue

KIND_TRAIN_TRANSCODERS = job_kind_register(
    JobKind(name="train_transcoders", queue=Queue.GPU_BATCH, run="graphs.services.transcoders.transcoders_run")
).name
KIND_GRAPH_GENERATE = job_kind_register(
    JobKind(name="graph_generate", queue=Queue.GPU_BATCH, run="graphs.services.graphs.graph_generate_run")
).name
