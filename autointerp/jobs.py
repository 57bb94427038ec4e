"""Job kinds of autointerp (features/services/jobs.py)."""

from features.services.jobs import JobKind, job_kind_register
from memicos_site.queues import Queue

# Fan-out: the plan is quick and sends one task per chunk of features, which run in parallel on the autointerp
# slots and finish the job; no lease. One LLM call per feature reports progress every few seconds, so a job
# that has not moved for stall_s lost its worker or a message, and the sweep plans what is still missing.
AUTOINTERP_JOB = job_kind_register(
    JobKind(name="autointerp", queue=Queue.AUTOINTERP, run="autointerp.services.autointerp_plan_run", lease=False)
).name
UMAP_JOB = job_kind_register(JobKind(name="umap", queue=Queue.EMBEDDINGS, run="autointerp.services_umap.umap_run")).name

# One feature or one score, started from the feature dashboard (which follows it with static/js/jobs.js). Leased:
# a re-sent job finds its explanation or score already saved and returns it (the run functions are idempotent).
EXPLAIN_FEATURE_JOB = job_kind_register(
    JobKind(name="explain_feature", queue=Queue.AUTOINTERP, run="autointerp.services.explain_feature_run")
).name
SCORE_EXPLANATION_JOB = job_kind_register(
    JobKind(name="score_explanation", queue=Queue.AUTOINTERP, run="autointerp.services.score_explanation_run")
).name
# the embedding scorer needs the local embedder, which the embeddings workers load (no LLM)
SCORE_EMBEDDING_JOB = job_kind_register(
    JobKind(name="score_explanation_embedding", queue=Queue.EMBEDDINGS, run="autointerp.services.score_explanation_run")
).name
