"""Reads for live inference: is a worker alive for a model, how long is its queue, cached results."""

from __future__ import annotations

import os
import time

from memicos_site.queues import inference_queue
from memicos_site.redis_client import redis_client


def heartbeat_ttl() -> float:
    """A worker refreshes its heartbeat every ttl/5 s; silent for this long = gone (MEMICOS_HEARTBEAT_TTL)."""
    return float(os.environ.get("MEMICOS_HEARTBEAT_TTL", "15"))


def heartbeat_key(model_id: str) -> str:
    return f"memicos:inference:alive:{model_id}"


def inference_workers_alive(*, model_id: str) -> int:
    """Workers whose heartbeat (sorted-set member scored by time) is fresher than the TTL."""
    r = redis_client()
    key = heartbeat_key(model_id)
    r.zremrangebyscore(key, "-inf", time.time() - heartbeat_ttl())
    return int(r.zcard(key))


def worker_member(host: str, pid: int) -> str:
    """How an inference worker names itself in the heartbeat set and in its claims."""
    return f"{host}:{pid}"


def task_claim_key(task_id: str) -> str:
    return f"memicos:inference:claim:{task_id}"


def task_cancel_key(task_id: str) -> str:
    """Set by the web side when the client of a request hangs up; a steer stops at its next token."""
    return f"memicos:inference:cancel:{task_id}"


def inference_task_worker_lost(*, model_id: str, task_id: str) -> bool:
    """True when the worker that took this request has stopped (its heartbeat is stale), or when nobody took
    it and no worker for the model is alive. False while it runs, or waits in the queue for a live worker."""
    r = redis_client()
    member = r.get(task_claim_key(task_id))
    if member is None:
        return inference_workers_alive(model_id=model_id) == 0
    beat = r.zscore(heartbeat_key(model_id), member)
    return beat is None or beat < time.time() - heartbeat_ttl()


def inference_queue_length(*, model_id: str) -> int:
    """Messages waiting in the model's Celery queue (kombu's Redis transport keeps a queue as a list)."""
    return int(redis_client().llen(inference_queue(model_id)))


# --- service times: what admission expects the requests in flight to cost ---------------------------------

SERVICE_EWMA = 0.3  # weight of the newest request: a few requests follow a change of load (another job started)


def service_key(model_id: str) -> str:
    return f"memicos:inference:service:{model_id}"


def request_units(kind: str, payload: dict) -> int:
    """A request's size in the unit its service time is kept per: tokens to generate for a steer (its time grows
    with n_tokens), one for every other kind."""
    if kind == "steer":
        return max(1, int((payload.get("settings") or {}).get("n_tokens") or 1))
    return 1


def service_record(*, model_id: str, kind: str, units: int, seconds: float) -> None:
    """A worker's time for one request of `kind` into the model's moving average of seconds per unit. Workers of a
    model may race on it; one lost update only slows the average's next step."""
    r, key = redis_client(), service_key(model_id)
    old = r.hget(key, kind)
    rate = seconds / max(1, units)
    if old is not None:
        rate = (1 - SERVICE_EWMA) * float(old) + SERVICE_EWMA * rate
    r.hset(key, kind, f"{rate:.6g}")
    r.expire(key, 7 * 86400)


def service_estimate(*, model_id: str, requests: list[tuple[str, int]]) -> list[float | None]:
    """Expected seconds of each (kind, units) request on one worker at the recent pace; None for a kind no worker
    has timed yet."""
    rates = {k.decode(): float(v) for k, v in redis_client().hgetall(service_key(model_id)).items()}
    return [rates[kind] * units if kind in rates else None for kind, units in requests]


def inference_models(*, user):
    """Models a user may run live inference on (listed and inference-enabled)."""
    from features.selectors import model_list

    return model_list(user=user).filter(inference_enabled=True)


def inference_sources(*, user, model):
    """Sources of a model that have an SAE to run (for the search and top-k pages)."""
    from django.db.models import Q

    from features.selectors import source_list

    return source_list(user=user, model=model).filter(Q(sae_path__gt="") | Q(saelens_release__gt="")).order_by("name")


def steer_output_get(*, output_id: str, user):
    """A saved steering result (its share link), or 404 unless the user may read its model and every feature it
    was steered with: the link must not reveal the features of someone's PRIVATE source, nor their effect."""
    from django.http import Http404

    from features.models import Feature, SteerOutput
    from features.selectors import feature_readable_q, model_get

    row = SteerOutput.objects.select_related("connected_default_output").filter(id=output_id).first()
    if row is None:
        raise Http404(f"Steer output {output_id} not found.")
    model_get(model_id=row.model_id, user=user)
    feature_ids = set(row.steer_features.values_list("feature_id", flat=True))
    if Feature.objects.filter(feature_readable_q(user), pk__in=feature_ids).count() < len(feature_ids):
        raise Http404(f"Steer output {output_id} not found.")
    return row


def steer_feature_search(*, user, model_id: str, query: str, limit: int = 20) -> list[dict]:
    """Features for the steer page's picker: `source/index`, or explanation text, of one model."""
    from features.models import Explanation
    from features.selectors import feature_listed_q, feature_readable_q

    query = query.strip()
    if "/" in query:
        source, _, index = query.rpartition("/")
        if index.lstrip("-").isdigit():
            from features.models import Feature

            rows = Feature.objects.filter(
                feature_readable_q(user), model_id=model_id, source__name=source, index=int(index)
            )
            return [
                {"modelId": f.model_id, "layer": source, "index": f.index, "description": f.vector_label}
                for f in rows[:1]
            ]
    if len(query) < 2:
        return []
    rows = (
        Explanation.objects.filter(feature__model_id=model_id, description__icontains=query)
        .filter(feature_listed_q(user, "feature__"))  # a search: UNLISTED stays out, as in every listing
        .select_related("feature__source")[:limit]
    )
    return [
        {
            "modelId": e.feature.model_id,
            "layer": e.feature.source.name,
            "index": e.feature.index,
            "description": e.description,
        }
        for e in rows
    ]
