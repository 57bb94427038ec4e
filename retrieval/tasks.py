"""The interactive intervention task that runs on a toy model's own inference queue (its batch jobs run through
the job machinery: retrieval/jobs.py). torch is imported lazily (the web process imports this module too)."""

from celery import shared_task


# Interactive, like inference.tasks: sent to the model's own queue (inference.<model_id>) by intervene_call,
# acked on receipt and sent with an expiry, so a dead worker's request is not replayed later.
@shared_task(name="retrieval.intervene", acks_late=False, ignore_result=False)
def intervene(payload: dict) -> dict:
    from inference.runtime import worker

    try:
        return worker.run_intervene(payload)
    except worker.UserError as exc:
        return {"error": str(exc), "status": 400}
