"""The embedded demo's pipeline: SmolLM2-135M-Instruct, an SAE trained here on the Brown corpus, its dashboards.

`demo_pipeline_start()` (called by `manage.py demo_prepare`) registers the model and queues one `train_sae` job
on gpu_batch (training → Source with metrics → dashboards). Later runs find the finished job and reuse it;
an interrupted job is re-queued and resumes from its checkpoints.

Sizes are chosen so the first run fits in 30 minutes on 2 CPU cores (measured stages in the pipeline report):
a TopK SAE (k=32, 4096 latents, ~7× d_model) on layer 9's residual stream (a third of the way up, where
SmolLM2's features are already lexical-to-semantic and the forward pass stays cheap), trained on 500k Brown
tokens (batches of 1,024, lr 1e-3: ~490 steps), dashboards over 65k tokens (512 contexts of 128).
"""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from features.models import Job, Source
from inference.pipeline.services import KIND_TRAIN, model_ensure, train_job_create

DEMO_MODEL_ID = "smollm2-135m-instruct"
DEMO = {
    "hook": "blocks.9.hook_resid_post",
    "source_id": "9-res-brown",
    "corpus": "brown",
    "arch": "topk",
    "width": 4096,
    "k": 32,
    "tokens": 500_000,
    "context_size": 128,
    "batch_size_tokens": 1024,
    "lr": 1e-3,
    "dashboard_tokens": 65_536,
}
DEMO_TOY_MODEL_ID = "toy-cyclic-4x4"  # seed 003's toy; the Procfile's `toy` worker serves its interventions
DEMO_EXPLAIN = {"type_name": "np_max-act", "count": 32}  # the local SmolLM2 explains ~3 features a minute
STALE_AFTER = timedelta(minutes=10)  # a RUNNING job not updated for this long lost its worker


def brown_ensure() -> None:
    root = Path(settings.BASE_DIR)
    subprocess.run(["bash", str(root / "scripts" / "fetch_brown.sh")], check=True)


def demo_model():
    return model_ensure(
        model_id=DEMO_MODEL_ID,
        loader={"kind": "smollm2-gguf"},
        display_name="SmolLM2-135M-Instruct",
        display_name_short="SmolLM2-135M",
        layers=30,
        neurons_per_layer=576,
        instruct=True,
        inference_enabled=True,
        owner="HuggingFaceTB",
    )


def demo_pipeline_start(*, enqueue: bool = True) -> Job:
    """Register the demo model and make sure its pipeline job is done or queued. Returns the job."""
    model = demo_model()
    subject = f"{model.id}/{DEMO['source_id']}"
    done = Job.objects.filter(kind=KIND_TRAIN, subject=subject, status=Job.Status.SUCCEEDED).first()
    source = Source.objects.filter(model=model, name=DEMO["source_id"]).first()
    if done and source and source.features.exists():
        return done
    brown_ensure()
    previous = Job.objects.filter(kind=KIND_TRAIN, subject=subject).first()
    job = train_job_create(model_id=model.id, **DEMO)
    fresh = previous is None or previous.pk != job.pk or previous.status == Job.Status.FAILED
    stale = job.updated_at < timezone.now() - STALE_AFTER
    if enqueue and (fresh or stale or job.status == Job.Status.PENDING):
        from inference.pipeline.tasks import demo_followups, train_sae

        (train_sae.si(job.pk) | demo_followups.si()).delay()
    return job


def demo_top_feature_indexes(source: Source, count: int) -> list[int]:
    """The features worth explaining first: strongest maxima among those neither dead nor dense (≤ 5%)."""
    qs = source.features.filter(frac_nonzero__gt=0, frac_nonzero__lte=0.05).order_by("-max_act_approx")
    return list(qs.values_list("index", flat=True)[:count])


def demo_followups_start(*, enqueue: bool = True) -> list[Job]:
    """Once the demo's dashboards exist, queue (each once) what makes the rest of the platform show:
    explanations of the top features and a UMAP (autointerp), then on gpu_batch after the pipeline the seed
    systems: the passage-SAE memory source, per-passage codes of the demo SAE for composite retrieval, and
    the cyclic toy model with its SAE for interventions.

    Called when the pipeline finishes and on every `demo_prepare`, so an interrupted or failed follow-up is
    picked up again at the next start (each job resumes from its own checkpoints)."""
    from autointerp.services import AUTOINTERP_JOB, autointerp_job_create, autointerp_job_resume
    from autointerp.services_umap import UMAP_JOB, umap_job_create
    from autointerp.tasks import autointerp_job_task, umap_source_task
    from retrieval import services as retrieval
    from retrieval import tasks as retrieval_tasks

    subject = f"{DEMO_MODEL_ID}/{DEMO['source_id']}"
    if not Job.objects.filter(kind=KIND_TRAIN, subject=subject, status=Job.Status.SUCCEEDED).exists():
        return []  # dashboards still being written: explaining now would pick from a partial source
    source = Source.objects.get(model_id=DEMO_MODEL_ID, name=DEMO["source_id"])

    def explain():
        indexes = demo_top_feature_indexes(source, DEMO_EXPLAIN["count"])
        return autointerp_job_create(source=source, type_name=DEMO_EXPLAIN["type_name"], indexes=indexes)

    followups = [
        # (kind, subject, create, resume, task)
        (AUTOINTERP_JOB, subject, explain, lambda job: autointerp_job_resume(job_id=job.pk),
         lambda job: autointerp_job_task.delay(job_id=job.pk)),
        (UMAP_JOB, subject, lambda: umap_job_create(source=source, input_kind="decoder"), None,
         lambda job: umap_source_task.delay(job_id=job.pk)),
        (retrieval.KIND_BUILD, f"{retrieval.EMBEDDER_MODEL_ID}/{retrieval.DEFAULT_SOURCE_ID}",
         retrieval.memory_source_job_create, None, lambda job: retrieval_tasks.build_memory_source.delay(job.pk)),
        (retrieval.KIND_LM_CODES, subject,
         lambda: retrieval.lm_codes_job_create(model_id=DEMO_MODEL_ID, source_id=DEMO["source_id"]), None,
         lambda job: retrieval_tasks.passage_codes.delay(job.pk)),
        (retrieval.KIND_TOY, None, lambda: retrieval.toy_job_create(model_id=DEMO_TOY_MODEL_ID), None,
         lambda job: retrieval_tasks.toy_model.delay(job.pk)),
    ]  # fmt: skip
    jobs = []
    for kind, job_subject, create, resume, send in followups:
        existing = Job.objects.filter(kind=kind)
        existing = (
            existing.filter(subject=job_subject)
            if job_subject
            else existing.filter(subject__startswith=DEMO_TOY_MODEL_ID)
        )
        job = existing.order_by("-pk").first()
        if job is None:
            job = create()
        elif _interrupted(job):
            job = resume(job) if resume else create()
        else:
            continue  # done, or in progress
        jobs.append(job)
        if enqueue:
            send(job)
    return jobs


def _interrupted(job: Job) -> bool:
    if job.status in (Job.Status.FAILED, Job.Status.CANCELLED):
        return True
    return job.status != Job.Status.SUCCEEDED and job.updated_at < timezone.now() - STALE_AFTER
