"""Inference tasks, one queue per model (`inference.<model_id>`), run by `manage.py inference_worker`.

Interactive tasks are sent with an expiry (the caller's timeout) and acks_late=False. Under the solo pool
the ack still waits for the task to return (Celery defers it to the event loop, which the task blocks), so a
worker killed mid-request leaves the message unacked and Redis redelivers it after the visibility timeout;
the expiry is what makes the restarted worker discard it instead of running a request whose caller got its
error long ago. The caller learns of the death sooner: the worker claims each request (selectors.
task_claim_key) and the web side watches that worker's heartbeat. torch is imported lazily so the web
process, which imports this module through Celery's autodiscovery, never loads it.

An inference worker announces itself in Redis (selectors.heartbeat_key) every heartbeat_ttl()/5 seconds
once its model is loaded, so the web side can answer 503 at once when no worker serves a model.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

from celery import current_task, shared_task
from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown

from inference.selectors import (
    heartbeat_key,
    heartbeat_ttl,
    redis_client,
    request_units,
    service_record,
    task_cancel_key,
    task_claim_key,
    worker_member,
)
from memicos_site.queues import INFERENCE_PREFIX

log = logging.getLogger(__name__)
STREAM_TTL_S = 300
_served: list[str] = []  # model ids this worker process serves
_stop = threading.Event()


def _member() -> str:
    return worker_member(socket.gethostname(), os.getpid())


def _error(exc) -> dict:
    return {"error": str(exc), "status": 400}


def _queued_task_id() -> str | None:
    """The id of the request this worker took from a model's queue; None when run eagerly or outside a worker."""
    task_id = getattr(current_task.request, "id", None) if current_task else None
    return task_id if task_id and _served and not current_task.request.is_eager else None


def _claim() -> None:
    """Name this worker as the one running the current request: the waiting web process watches that worker's
    heartbeat, so it notices this worker dying even while other workers of the model live on."""
    if task_id := _queued_task_id():
        try:
            redis_client().set(task_claim_key(task_id), _member(), ex=STREAM_TTL_S)
        except Exception:  # the web side falls back to "no worker alive" and its timeout
            log.exception("inference: could not record the claim of %s", task_id)


def _run(name: str, payload: dict, **kwargs) -> dict:
    from inference.runtime import worker  # torch: only in worker processes

    _claim()
    t0 = time.monotonic()
    try:
        result = worker.call(name, payload, **kwargs)
    except worker.UserError as exc:
        return _error(exc)
    _timed(name.removeprefix("run_"), payload, time.monotonic() - t0)
    return result


def _timed(kind: str, payload: dict, seconds: float) -> None:
    """This request's service time, which web processes read to refuse at once what could not be served before its
    deadline (services.inference_slot). Only served requests count: a cancelled steer stopped early."""
    model_id = payload.get("model_id")
    if not model_id or _queued_task_id() is None:
        return
    try:
        service_record(model_id=model_id, kind=kind, units=request_units(kind, payload), seconds=seconds)
    except Exception:  # admission then goes on the last average, or on the count of requests alone
        log.exception("inference: could not record the service time of a %s", kind)


INTERACTIVE = {"acks_late": False, "ignore_result": False}


@shared_task(name="inference.activation_single", **INTERACTIVE)
def activation_single(payload: dict) -> dict:
    return _run("run_activation_single", payload)


@shared_task(name="inference.activation_source", **INTERACTIVE)
def activation_source(payload: dict) -> dict:
    return _run("run_activation_source", payload)


@shared_task(name="inference.search_all", **INTERACTIVE)
def search_all(payload: dict) -> dict:
    return _run("run_search_all", payload)


@shared_task(name="inference.topk_by_token", **INTERACTIVE)
def topk_by_token(payload: dict) -> dict:
    return _run("run_topk_by_token", payload)


@shared_task(name="inference.tokenize", **INTERACTIVE)
def tokenize(payload: dict) -> dict:
    return _run("run_tokenize", payload)


@shared_task(name="inference.steer_logits", **INTERACTIVE)
def steer_logits(payload: dict) -> dict:
    return _run("run_steer_logits", payload)


@shared_task(name="inference.cossim", **INTERACTIVE)
def cossim(payload: dict) -> dict:
    return _run("run_cossim", payload)


@shared_task(name="inference.steer", **INTERACTIVE)
def steer(payload: dict, stream_key: str = "") -> dict:
    """Generate; with stream_key, push the cumulative texts to a Redis list after every token. Either way, stop at
    the next token once the web side marks the request cancelled (its client hung up: selectors.task_cancel_key):
    an orphan generation would hold the model's worker for the rest of n_tokens while later requests wait."""
    r = redis_client()
    task_id = getattr(current_task.request, "id", None) if current_task else None
    cancel_key = task_cancel_key(task_id) if task_id else ""
    if cancel_key and r.exists(cancel_key):  # hung up while this waited in the queue
        return _cancelled(0, payload)
    tokens = 0

    def on_token(partial: dict):
        nonlocal tokens
        tokens += 1
        pipe = r.pipeline()
        if stream_key:
            pipe.rpush(stream_key, json.dumps({"partial": {t: {"text": o["text"]} for t, o in partial.items()}}))
            pipe.expire(stream_key, STREAM_TTL_S)
        if cancel_key:
            pipe.exists(cancel_key)
        replies = pipe.execute()
        if cancel_key and replies[-1]:
            raise _Cancelled

    try:
        result = _run("run_steer", payload, on_token=on_token if stream_key or cancel_key else None)
    except _Cancelled:
        if stream_key:
            r.delete(stream_key)
        return _cancelled(tokens, payload)
    if stream_key:
        r.rpush(stream_key, json.dumps({"done": True}))
        r.expire(stream_key, STREAM_TTL_S)
    return result


class _Cancelled(Exception):
    pass


def _cancelled(tokens: int, payload: dict) -> dict:
    n_tokens = payload["settings"]["n_tokens"]
    log.info("inference: steer cancelled by its caller after %d of %d tokens", tokens, n_tokens)
    return {"error": f"Cancelled by the caller after {tokens} of {n_tokens} tokens", "status": 499,
            "cancelled": True, "tokens": tokens}  # fmt: skip


# --- worker lifecycle: load the model once, then heartbeat -------------------------------------------


@celeryd_after_setup.connect
def _remember_queues(sender, instance, **kwargs):
    queues = instance.app.amqp.queues.consume_from or {}
    _served[:] = [q[len(INFERENCE_PREFIX) :] for q in queues if q.startswith(INFERENCE_PREFIX)]


def _beat():
    r = redis_client()
    while not _stop.is_set():
        try:
            for model_id in _served:
                r.zadd(heartbeat_key(model_id), {_member(): time.time()})
                r.expire(heartbeat_key(model_id), int(heartbeat_ttl() * 4) + 1)
        except Exception:  # Redis blips must not kill the worker; the next beat retries
            log.exception("inference heartbeat failed")
        _stop.wait(heartbeat_ttl() / 5)


@worker_ready.connect
def _load_and_beat(sender=None, **kwargs):
    if not _served:
        return
    from features.models import Model
    from inference.runtime import worker

    loaded = []
    for model_id in _served:
        row = Model.objects.filter(id=model_id).first()
        if row is None:
            log.error("inference worker: no Model row %r; not announcing it", model_id)
            continue
        t0 = time.monotonic()
        worker.model_for(model_id, row.loader)
        loaded.append(model_id)
        log.warning("inference worker: model %s loaded in %.1fs", model_id, time.monotonic() - t0)
    _served[:] = loaded
    threading.Thread(target=_beat, name="inference-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _goodbye(**kwargs):
    _stop.set()
    if _served:
        try:
            r = redis_client()
            for model_id in _served:
                r.zrem(heartbeat_key(model_id), _member())
        except Exception:
            log.exception("inference heartbeat cleanup failed")
