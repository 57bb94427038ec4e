"""Live inference from the web side: admission, enqueue on the model's queue, wait, cache in the DB.

Nothing here imports torch: payloads are plain dicts (SAE directories, vectors, settings) that the worker
(inference/runtime/worker.py) turns into tensors.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import redis
from celery.exceptions import TimeoutError as CeleryTimeout
from django.db import transaction

from features.models import Feature, Model, SavedSearch, Source, SteerOutput, SteerOutputFeature
from inference import tasks
from inference.selectors import (
    inference_queue_length,
    inference_task_worker_lost,
    inference_workers_alive,
    redis_client,
    request_units,
    service_estimate,
    task_cancel_key,
    task_claim_key,
)
from memicos_site.celery import app
from memicos_site.cpu_gate import released
from memicos_site.handler import client_gone
from memicos_site.queues import inference_queue

log = logging.getLogger(__name__)
STEER_VERSION = 2  # bump when generation changes so old cached outputs are not served for new settings
RETRY_AFTER_S = 5


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def max_queued() -> int:
    """More waiting jobs than this on a model's queue → 503 + Retry-After (MEMICOS_MAX_QUEUED)."""
    return _env_int("MEMICOS_MAX_QUEUED", 8)


def call_timeout() -> int:
    return _env_int("MEMICOS_INFERENCE_TIMEOUT", 60)


def steer_timeout() -> int:
    return _env_int("MEMICOS_STEER_TIMEOUT", 180)


@dataclass
class InferenceError(Exception):
    message: str
    status: int = 503
    retry_after: int | None = None

    def __str__(self):
        return self.message


# --- payload pieces -----------------------------------------------------------------------------------


def sae_ref(source: Source) -> dict:
    if source.sae_path:
        return {"path": source.sae_path}
    if source.saelens_release and source.saelens_sae_id:
        return {"release": source.saelens_release, "sae_id": source.saelens_sae_id}
    raise InferenceError(f"Source {source.model_id}/{source.name} has no SAE for inference", status=400)


def feature_probe(feature: Feature) -> dict:
    """What the worker needs to compute or steer with one feature: a vector+hook, or an SAE+index."""
    if feature.has_vector:
        if not feature.vector or not feature.hook_name:
            raise InferenceError(f"Vector feature {feature} has no vector or hook name", status=400)
        return {"vector": list(feature.vector), "hook": feature.hook_name}
    return {"sae": sae_ref(feature.source), "index": feature.index}


def model_payload(model: Model) -> dict:
    return {"model_id": model.id, "loader": model.loader or {}}


# --- calling the worker -------------------------------------------------------------------------------


def _eager() -> bool:
    return bool(app.conf.task_always_eager)


def inference_admit(*, model: Model) -> None:
    """Fail fast: no worker for the model → 503; its queue too long → 503 with Retry-After."""
    if not model.inference_enabled:
        raise InferenceError(f"Model {model.id} does not have inference enabled", status=400)
    if _eager():
        return
    if inference_workers_alive(model_id=model.id) == 0:
        raise InferenceError(
            f"No inference worker is running for model {model.id} "
            f"(start one with: python manage.py inference_worker {model.id})",
            retry_after=RETRY_AFTER_S * 2,
        )
    if inference_queue_length(model_id=model.id) >= max_queued():
        raise InferenceError(f"Model {model.id} is busy ({max_queued()} requests waiting); retry shortly",
                             retry_after=RETRY_AFTER_S)  # fmt: skip


def _enqueue(task, *, model: Model, args: list, timeout: int):
    return task.apply_async(args=args, queue=inference_queue(model.id), expires=timeout)


def _wait(result, *, model: Model, timeout: int, slot: Slot | None = None) -> dict:
    """Wait for a task, noticing a dead worker (heartbeat gone) long before the timeout, and giving up at once on a
    queued request that the workers' pace says cannot be answered in time (`slot`)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with released():  # the request's CPU slot, while the worker computes
                value = result.get(timeout=1.0, propagate=False, disable_sync_subtasks=False)
        except CeleryTimeout:
            if time.monotonic() > deadline:
                result.revoke()
                raise InferenceError(f"Model {model.id} did not answer within {timeout}s", status=504) from None
            if client_gone():  # nobody will read the answer: free the worker for those who will
                _cancel(redis_client(), result)
                raise InferenceError("The client closed the connection", status=499) from None
            _give_up_if_too_late(slot, result, deadline)
            if not _eager() and inference_task_worker_lost(model_id=model.id, task_id=result.id):
                raise InferenceError(f"The inference worker for {model.id} stopped during the request; retry",
                                     retry_after=RETRY_AFTER_S) from None  # fmt: skip
            continue
        if result.failed():
            raise InferenceError(f"Inference failed: {value!r}", status=500)
        return _checked(value)


def _give_up_if_too_late(slot: Slot | None, result, deadline: float, *, stream_key: str = "") -> None:
    """While no worker has taken the request, refuse it (and take it off the queue) once it cannot be answered
    before `deadline`: the pace may have slowed since it was admitted, or no request was timed then."""
    if slot is None or redis_client().exists(task_claim_key(result.id)):
        return
    refusal = slot.too_late(deadline - time.monotonic())
    if refusal is not None:
        _cancel(redis_client(), result, stream_key=stream_key)
        raise refusal


def _checked(value: dict) -> dict:
    if isinstance(value, dict) and "error" in value:
        raise InferenceError(value["error"], status=int(value.get("status", 400)))
    return value


@dataclass
class Slot:
    """A request's place among those of its model in flight (inference_slot)."""

    model: Model
    token: str  # `kind:units:admitted:uuid`, a member of the model's in-flight set
    timeout: int

    def too_late(self, remaining: float) -> InferenceError | None:
        """The 503 to answer now when, at the pace the workers recorded (selectors.service_record), the work admitted
        before this request and its own would not be done within `remaining` seconds; None while it would be, when
        its kind was never timed, or when nothing is ahead of it (alone, refusing it would not make it sooner)."""
        r = redis_client()
        in_flight = [m.decode() for m in r.zrange(_inflight_key(self.model), 0, -1)]
        me = _request_of(self.token)
        ahead = [q for m in in_flight if m != self.token and (q := _request_of(m)) and q[2] <= me[2]]
        *others, mine = service_estimate(model_id=self.model.id, requests=[q[:2] for q in [*ahead, me]])
        if mine is None or not ahead:
            return None
        workers = max(1, inference_workers_alive(model_id=self.model.id))
        wait = sum(e for e in others if e is not None) / workers + mine
        if wait <= remaining:
            return None
        return InferenceError(
            f"Model {self.model.id} is busy: this request would be answered in about {wait:.0f}s, past its "
            f"{self.timeout}s deadline; retry shortly",
            retry_after=max(RETRY_AFTER_S, math.ceil(wait - self.timeout)),
        )


def _inflight_key(model: Model) -> str:
    return f"memicos:inference:inflight:{model.id}"


def _request_of(member: str) -> tuple[str, int, float] | None:
    """(kind, units, admitted at) of an in-flight member; None for a bare token (those of an older version)."""
    parts = member.split(":")
    return (parts[0], int(parts[1]), float(parts[2])) if len(parts) == 4 else None


@contextlib.contextmanager
def inference_slot(*, model: Model, timeout: int, kind: str = "", units: int = 1):
    """Admission across web processes: at most (live workers + max_queued()) requests of a model in flight,
    counted in a Redis sorted set (member → deadline). Reading the queue length first and enqueueing after would
    let a burst of concurrent requests all pass the check; adding, then counting, in one MULTI does not. A web
    process killed mid-request leaks its member only until the deadline.

    Nor is a request admitted behind more work than it could wait for (Slot.too_late): it is refused now, with a
    Retry-After of when it would fit, rather than answered 504 at its deadline. In a demo whose CPU the autointerp
    jobs shared, 2 of 20 concurrent 32-token steers waited out the 180 s deadline behind the 8 admitted before
    them. Yields the Slot, which a waiting caller asks again while its request is queued: the pace may change."""
    if _eager():
        yield None
        return
    r, key, now = redis_client(), _inflight_key(model), time.time()
    slot = Slot(model=model, token=f"{kind}:{units}:{now:.6f}:{uuid.uuid4().hex}", timeout=timeout)
    pipe = r.pipeline()  # MULTI/EXEC
    pipe.zremrangebyscore(key, "-inf", now)
    pipe.zadd(key, {slot.token: now + timeout + 5})
    pipe.zcard(key)
    pipe.expire(key, timeout + 60)
    in_flight = pipe.execute()[2]
    limit = inference_workers_alive(model_id=model.id) + max_queued()
    if in_flight > limit:
        refusal = InferenceError(f"Model {model.id} is busy ({limit} requests in flight); retry shortly",
                                 retry_after=RETRY_AFTER_S)  # fmt: skip
    else:
        refusal = slot.too_late(timeout)
    if refusal is not None:
        r.zrem(key, slot.token)
        raise refusal
    try:
        yield slot
    finally:
        with contextlib.suppress(redis.RedisError):  # it lapses at its deadline anyway
            r.zrem(key, slot.token)


def inference_call(*, model: Model, task, payload: dict, timeout: int | None = None) -> dict:
    inference_admit(model=model)
    timeout = timeout or call_timeout()
    payload = {**model_payload(model), **payload}
    if _eager():
        return _checked(task.apply(args=[payload]).get())
    kind = task.name.rsplit(".", 1)[-1]
    with inference_slot(model=model, timeout=timeout, kind=kind, units=request_units(kind, payload)) as slot:
        result = _enqueue(task, model=model, args=[payload], timeout=timeout)
        return _wait(result, model=model, timeout=timeout, slot=slot)


# --- search-all cache ---------------------------------------------------------------------------------


def search_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def saved_search_get_or_run(*, model: Model, params: dict, payload: dict, user) -> dict:
    """search-all for one text, from SavedSearch when the same query ran before."""
    key = search_key(params)
    row = SavedSearch.objects.filter(model=model, query_key=key).first()
    if row is not None:
        return row.result
    result = inference_call(model=model, task=tasks.search_all, payload=payload)["results"][0]
    SavedSearch.objects.update_or_create(
        model=model,
        query_key=key,
        defaults=dict(
            query=params["text"],
            tokens=result["tokens"],
            source_set=params["sourceSet"],
            selected_layers=params["selectedLayers"],
            sort_by_indexes=params["sortIndexes"],
            ignore_bos=params["ignoreBos"],
            density_threshold=params["densityThreshold"],
            num_results=params["numResults"],
            counts=result.get("counts"),
            result=result,
            user=user if getattr(user, "is_authenticated", False) else None,
        ),
    )
    return result


# --- steering -----------------------------------------------------------------------------------------


@dataclass
class SteerRequest:
    model: Model
    features: list[tuple[Feature, float]]  # (feature, strength)
    settings: dict  # temperature, n_tokens, freq_penalty, seed, strength_multiplier, steer_method, steer_special_tokens
    prompt: str | None = None
    default_messages: list[dict] | None = None
    steered_messages: list[dict] | None = None

    @property
    def chat(self) -> bool:
        return self.default_messages is not None


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _input_text(req: SteerRequest, kind: str) -> str:
    if not req.chat:
        return req.prompt
    return json.dumps(req.default_messages if kind == "DEFAULT" else req.steered_messages, sort_keys=True)


def steer_cache_key(req: SteerRequest, kind: str) -> str:
    s = req.settings
    parts = {
        "input": _input_text(req, kind),
        "chat": req.chat,
        "temperature": s["temperature"],
        "n_tokens": s["n_tokens"],
        "freq_penalty": s["freq_penalty"],
        "seed": s["seed"],
        "version": STEER_VERSION,
        "steer_special_tokens": s["steer_special_tokens"] if req.chat else None,
    }
    if kind == "STEERED":
        parts.update(
            strength_multiplier=s["strength_multiplier"],
            steer_method=s["steer_method"],
            features=sorted((f.pk, float(strength)) for f, strength in req.features),
        )
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _cached(req: SteerRequest, kind: str) -> SteerOutput | None:
    return (
        SteerOutput.objects.filter(model=req.model, type=kind, cache_key=steer_cache_key(req, kind))
        .order_by("-created_at")
        .first()
    )


def _steer_payload(req: SteerRequest, types: list[str]) -> dict:
    mult = req.settings["strength_multiplier"]
    features = [{**feature_probe(f), "coeff": float(strength) * mult} for f, strength in req.features]
    payload = {"types": types, "features": features, "settings": dict(req.settings)}
    if req.chat:
        # DEFAULT and STEERED may have different conversations: run them as two calls only then.
        payload["messages"] = req.default_messages if types == ["DEFAULT"] else req.steered_messages
    else:
        payload["prompt"] = req.prompt
    return payload


def _plan(req: SteerRequest) -> tuple[dict[str, SteerOutput], list[list[str]]]:
    """Which outputs are cached, and which generation calls are still needed."""
    cached = {k: row for k in ("DEFAULT", "STEERED") if (row := _cached(req, k)) is not None}
    missing = [k for k in ("DEFAULT", "STEERED") if k not in cached]
    if not missing:
        return cached, []
    if req.chat and len(missing) == 2 and req.default_messages != req.steered_messages:
        return cached, [["DEFAULT"], ["STEERED"]]
    return cached, [missing]


def _chat_template(req: SteerRequest, kind: str, text: str, eos: str) -> list[dict]:
    messages = req.default_messages if kind == "DEFAULT" else req.steered_messages
    content = text[: -len(eos)] if eos and text.endswith(eos) else text
    return [*messages, {"role": "assistant", "content": content}]


@transaction.atomic
def _save_outputs(req: SteerRequest, results: dict[str, tuple[str, dict, str]], user) -> dict[str, SteerOutput]:
    """One transaction, after the worker finished: a dead worker leaves no half-written rows."""
    s = req.settings
    rows = {}
    for kind in ("DEFAULT", "STEERED"):
        if kind not in results:
            continue
        prompt, out, eos = results[kind]
        input_text = _input_text(req, kind)
        rows[kind] = SteerOutput.objects.create(
            type=kind,
            model=req.model,
            steer_special_tokens=bool(s["steer_special_tokens"]) if req.chat else False,
            input_text=input_text,
            input_text_md5=_md5(input_text),
            input_text_chat_template=prompt if req.chat else "",
            input_text_chat_template_md5=_md5(prompt) if req.chat else "",
            output_text=prompt + out["text"],  # completion: prompt + continuation; chat: templated prompt + reply
            output_text_chat_template=json.dumps(_chat_template(req, kind, out["text"], eos)) if req.chat else "",
            temperature=s["temperature"],
            num_tokens=s["n_tokens"],
            freq_penalty=s["freq_penalty"],
            seed=s["seed"],
            strength_multiplier=s["strength_multiplier"],
            steer_method=s["steer_method"],
            version=STEER_VERSION,
            logprobs=json.dumps(out["logprobs"]),
            creator=user if getattr(user, "is_authenticated", False) else None,
            cache_key=steer_cache_key(req, kind),
        )
        if kind == "STEERED":
            SteerOutputFeature.objects.bulk_create(
                [SteerOutputFeature(steer_output=rows[kind], feature=f, strength=st) for f, st in req.features],
                ignore_conflicts=True,
            )
    return rows


def _link(rows: dict[str, SteerOutput]) -> None:
    steered, default = rows.get("STEERED"), rows.get("DEFAULT")
    if steered and default and steered.connected_default_output_id != default.id:
        steered.connected_default_output = default
        steered.save(update_fields=["connected_default_output"])


def _collect(req: SteerRequest, value: dict) -> dict[str, tuple[str, dict, str]]:
    return {kind: (value["prompt"], out, value.get("eos", "")) for kind, out in value["outputs"].items()}


def steer_run(*, req: SteerRequest, user) -> dict[str, SteerOutput]:
    """DEFAULT and STEERED outputs (cached ones reused, the rest generated) → saved rows by type."""
    inference_admit(model=req.model)
    cached, calls = _plan(req)
    results: dict = {}
    for types in calls:
        value = inference_call(
            model=req.model, task=tasks.steer, payload=_steer_payload(req, types), timeout=steer_timeout()
        )
        results.update(_collect(req, value))
    rows = {**cached, **_save_outputs(req, results, user)}
    _link(rows)
    return rows


def _cancel(r, result, *, stream_key: str = "") -> None:
    """Tell the worker to stop (a queued request is discarded, a running steer stops at its next token)."""
    try:
        pipe = r.pipeline()
        pipe.set(task_cancel_key(result.id), 1, ex=tasks.STREAM_TTL_S)
        if stream_key:
            pipe.delete(stream_key)
        pipe.execute()
        result.revoke()
    except Exception:  # Redis down: the worker runs to n_tokens and the list expires; the caller's error stands
        log.exception("inference: could not cancel %s", result.id)


def steer_stream(*, req: SteerRequest, user, slot: Slot | None = None) -> Iterator[dict]:
    """Yield {"partial": {type: text}} while generating, then {"rows": {type: SteerOutput}}.

    The worker pushes cumulative texts to a Redis list; this relays them. Admission is checked by the
    caller before the HTTP response starts (so 503 is still a status code, not an event).
    """
    cached, calls = _plan(req)
    partial = {k: {"text": row.output_text} for k, row in cached.items()}
    results: dict = {}
    r = redis_client()
    for types in calls:
        stream_key = f"memicos:steer:stream:{uuid.uuid4().hex}"
        payload = {**model_payload(req.model), **_steer_payload(req, types)}
        timeout = steer_timeout()
        if _eager():
            result = tasks.steer.apply(args=[payload, stream_key])
        else:
            result = _enqueue(tasks.steer, model=req.model, args=[payload, stream_key], timeout=timeout)
        deadline = time.monotonic() + timeout
        finished = False
        try:
            while True:
                item = r.blpop([stream_key], timeout=1)
                if item is None:
                    if result.ready():
                        break
                    if time.monotonic() > deadline:
                        raise InferenceError(f"Model {req.model.id} did not answer within {timeout}s", status=504)
                    if not _eager() and inference_task_worker_lost(model_id=req.model.id, task_id=result.id):
                        raise InferenceError("The inference worker stopped during the request; retry",
                                             retry_after=RETRY_AFTER_S)  # fmt: skip
                    _give_up_if_too_late(slot, result, deadline, stream_key=stream_key)
                    continue
                frame = json.loads(item[1])
                if frame.get("done"):
                    break
                for kind, out in frame["partial"].items():
                    prompt = req.prompt if not req.chat else ""
                    partial[kind] = {"text": (prompt or "") + out["text"]}
                yield {"partial": dict(partial)}
            value = _wait(result, model=req.model, timeout=max(1, int(deadline - time.monotonic())))
            finished = True
        finally:
            # Closed early (the client hung up: the server closes the response at its next failed write) or
            # failed: tell the worker to stop generating for nobody.
            if finished:
                r.delete(stream_key)
            else:
                _cancel(r, result, stream_key=stream_key)
        results.update(_collect(req, value))
    rows = {**cached, **_save_outputs(req, results, user)}
    _link(rows)
    yield {"rows": rows}
