"""Batch jobs of the seed systems on the gpu_batch queue (idempotent, take a Job id; a rerun resumes: cached
embeddings, reused SAE directory, upserted dashboard rows), plus the interactive intervention task that runs on
a toy model's own inference queue. torch is imported lazily (the web process imports this module too).
"""

from celery import shared_task

from memicos_site.queues import Queue


@shared_task(name="retrieval.build_memory_source", queue=Queue.GPU_BATCH.value)
def build_memory_source(job_id: int) -> int:
    from retrieval.services import memory_source_job_run

    memory_source_job_run(job_id=job_id)
    return job_id


@shared_task(name="retrieval.passage_codes", queue=Queue.GPU_BATCH.value)
def passage_codes(job_id: int) -> int:
    from retrieval.services import lm_codes_job_run

    lm_codes_job_run(job_id=job_id)
    return job_id


@shared_task(name="retrieval.toy_model", queue=Queue.GPU_BATCH.value)
def toy_model(job_id: int) -> int:
    from retrieval.services import toy_job_run

    toy_job_run(job_id=job_id)
    return job_id


# Interactive, like inference.tasks: sent to the model's own queue (inference.<model_id>) by intervene_call,
# acked on receipt and sent with an expiry, so a dead worker's request is not replayed later.
@shared_task(name="retrieval.intervene", acks_late=False, ignore_result=False)
def intervene(payload: dict) -> dict:
    from inference.runtime import worker

    try:
        return worker.run_intervene(payload)
    except worker.UserError as exc:
        return {"error": str(exc), "status": 400}
