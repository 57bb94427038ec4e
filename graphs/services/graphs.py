"""Graphs: generate (job `graph_generate`), upload (signed put → PUT → save-to-db), delete, and saved subgraphs.

Services raise Django's ValidationError (→ 400), PermissionDenied (→ 403) and Http404 (→ 404); the API turns
them into `{"message"}`.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import threading
import time
import zlib
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from features.models import Explanation, Job, Model, SourceSet, Visibility
from features.selectors import listed_q, readable_q
from features.services.jobs import JobContext, job_enqueue
from graphs.jobs import KIND_GRAPH_GENERATE
from graphs.models import Graph, GraphPutRequest, Subgraph
from graphs.services.storage import graph_object_delete, graph_object_get, graph_object_put, gzip_bytes
from graphs.services.transcoders import SOURCE_SET_TYPE, transcoder_set_path
from memicos_site.cpu_gate import released

MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # Neuronpedia's MAX_GRAPH_UPLOAD_SIZE_BYTES (gzipped size)


def upload_limit() -> int:
    """settings.GRAPH_UPLOAD_MAX_BYTES (tests lower it), else Neuronpedia's 100 MiB."""
    from django.conf import settings

    return int(getattr(settings, "GRAPH_UPLOAD_MAX_BYTES", MAX_UPLOAD_BYTES))


MIN_UPLOAD_BYTES = 1024
MAX_JSON_BYTES = 1024 * 1024 * 1024  # a gzip bomb stops here
PUT_TTL = timedelta(hours=1)
SLUG_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
GENERATE_SLUG_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # generate allows no dot (Neuronpedia)
MAX_PROMPT_CHARS = 10_000

# Neuronpedia's enforced ranges (reference/graphs.md §4), camelCase as the API takes them, with defaults. The
# runtime checks them again (inference/runtime/graphs.py LIMITS); these are the API's statement of them.
GENERATE_LIMITS = {
    "maxNLogits": (5, 15, 10),
    "desiredLogitProb": (0.6, 0.99, 0.95),
    "nodeThreshold": (0.5, 0.95, 0.8),
    "edgeThreshold": (0.65, 0.98, 0.98),
    "maxFeatureNodes": (1, 10_000, 5000),
}
MAX_PROMPT_TOKENS = 64  # BOS included


def _key(*, owner_id, slug: str) -> str:
    return f"user-graphs/{owner_id or 'anonymous'}/{slug}-{int(time.time() * 1000)}.json"


# --- generation ---------------------------------------------------------------------------------------------


def graph_source_set(*, model: Model, name: str = "", user=None) -> SourceSet:
    """The transcoder set a graph of `model` is traced with: the named one if `user` may read it, else the newest
    `user` may list (another user's PRIVATE or UNLISTED set is never picked for them)."""
    qs = SourceSet.objects.filter(model=model, type=SOURCE_SET_TYPE)
    if name:
        qs = qs.filter(readable_q(user), name=name)
    else:
        qs = qs.filter(listed_q(user))
    source_set = qs.order_by("-created_at", "-pk").first()
    if source_set is None:
        raise ValidationError(
            f"Model {model.id!r} has no transcoder set{f' named {name!r}' if name else ''}: "
            "train one first (manage.py train_transcoders)"
        )
    return source_set


def graph_generate_start(
    *, model: Model, prompt: str, slug: str = "", settings: dict | None = None, user=None,
    source_set_name: str = "", visibility: str = Visibility.PUBLIC, send: bool = True,
) -> Graph:  # fmt: skip
    """Check the request, create the graph's row (PENDING) and queue its job (send=False: leave it for an inline
    `job_run`). `settings` are the camelCase parameters of GENERATE_LIMITS."""
    settings = dict(settings or {})
    if not prompt or not prompt.strip():
        raise ValidationError("prompt: must not be empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValidationError(f"prompt: Prompt Too Long (at most {MAX_PROMPT_CHARS} characters)")
    params = _generate_settings(settings, GENERATE_LIMITS)
    slug = slug or ""
    if len(slug) < 2:
        slug = f"graph-{int(time.time() * 1000)}"
    if not GENERATE_SLUG_RE.match(slug):
        raise ValidationError("slug: letters, digits, '-' and '_' only, at most 128 characters")
    if visibility not in Visibility.values:
        raise ValidationError(f"visibility: one of {', '.join(Visibility.values)}")
    source_set = graph_source_set(model=model, name=source_set_name, user=user)
    with transaction.atomic():
        if Graph.objects.select_for_update().filter(model=model, slug=slug).exists():
            raise ValidationError(f"Model + Slug/ID Exists: {model.id}/{slug}")
        owner = user if getattr(user, "is_authenticated", False) else None
        graph = Graph.objects.create(
            model=model, slug=slug, prompt=prompt, creator=owner, visibility=visibility,
            source_set_name=source_set.name, params=params, status=Graph.Status.PENDING,
        )  # fmt: skip
        job = job_enqueue(
            kind=KIND_GRAPH_GENERATE, model_id=model.id, source=source_set.name,
            params={"graph_pk": graph.pk}, created_by=owner, send=send,
        )  # fmt: skip
        Graph.objects.filter(pk=graph.pk).update(job=job)
        graph.job = job
    return graph


def _generate_settings(settings: dict, names) -> dict:
    """The camelCase settings `names` (of GENERATE_LIMITS) checked against their ranges, defaults filled in."""
    params = {}
    for name in names:
        lo, hi, default = GENERATE_LIMITS[name]
        value = settings.get(name)
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ValidationError(f"{name}: must be a number between {lo} and {hi} (got {value!r})")
        params[name] = int(value) if isinstance(default, int) else float(value)
    return params


def salient_logit_params(settings: dict) -> dict:
    """tokenize's maxNLogits and desiredLogitProb (optional, as generate takes them) → the runtime's arguments."""
    params = _generate_settings(settings, ("maxNLogits", "desiredLogitProb"))
    return {"max_n_logits": params["maxNLogits"], "desired_logit_prob": params["desiredLogitProb"]}


_waiting = 0  # generate requests of this process waiting for their job
_waiting_lock = threading.Lock()


@contextlib.contextmanager
def _waiting_slot(limit: int):
    """True while fewer than `limit` requests of this process wait (then one more does), else False."""
    global _waiting
    with _waiting_lock:
        ok = _waiting < limit
        _waiting += ok
    try:
        yield ok
    finally:
        if ok:
            with _waiting_lock:
                _waiting -= 1


def graph_generate_wait(*, graph: Graph, timeout_s: float, poll_s: float = 0.25) -> Graph:
    """Wait for the graph's job to finish, at most `timeout_s`, and return the graph as it then is (READY, FAILED,
    or still PENDING). The request's CPU slot is given back meanwhile: the job runs in another process. With
    settings.GRAPH_GENERATE_MAX_WAITING requests of this process already waiting, it does not wait."""
    from django.conf import settings

    deadline = time.monotonic() + max(0.0, timeout_s)
    finished = (Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED)
    with _waiting_slot(settings.GRAPH_GENERATE_MAX_WAITING) as may_wait, released():
        while True:
            job_status = Job.objects.filter(pk=graph.job_id).values_list("status", flat=True).first()
            if not may_wait or job_status is None or job_status in finished or time.monotonic() >= deadline:
                break
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
    graph.refresh_from_db()
    if graph.job_id:
        graph.job.refresh_from_db()
    return graph


def graph_generate_failure(graph: Graph) -> str:
    """Why a graph's generation failed (or was cancelled), in a sentence; "" while it has not."""
    job = graph.job
    job_failed = job is not None and job.status in (Job.Status.FAILED, Job.Status.CANCELLED)
    if graph.status != Graph.Status.FAILED and not job_failed:
        return ""
    if job is not None and job.status == Job.Status.CANCELLED:
        return f"Graph generation was cancelled (job {job.pk})."
    error = (job.error if job is not None else "") or "no error was recorded"
    error = error.removeprefix("ValidationError: ").strip("[]'\"")  # ValidationError's repr of its message list
    return f"Graph generation failed: {error}"


def set_explanations(source_set: SourceSet) -> dict[tuple[int, int], str]:
    """(layer, feature index) → the newest explanation, for the graph's clerp labels."""
    out: dict[tuple[int, int], str] = {}
    rows = (
        Explanation.objects.filter(source__source_set=source_set)
        .order_by("created_at")
        .values_list("source__name", "feature__index", "description")
    )
    for source_name, index, description in rows.iterator():
        layer = source_name.split("-", 1)[0]
        if layer.isdigit():
            out[(int(layer), index)] = description
    return out


def _replacement_model(model: Model, set_path: Path):
    from inference.runtime import worker

    return worker.replacement_model_for(model.id, model.loader, set_path)


def graph_generate_run(job: JobContext) -> dict:
    """The `graph_generate` job: attribution (gradients on only inside the runtime call), JSON to the store."""
    from inference.runtime.graphs import GraphParams, graph_generate

    graph = Graph.objects.select_related("model").get(pk=job.params["graph_pk"])
    try:
        source_set = SourceSet.objects.get(model=graph.model, name=graph.source_set_name)
        job.progress(message="loading model and transcoders")
        lm, rm = _replacement_model(graph.model, transcoder_set_path(source_set=source_set))
        p = graph.params
        params = GraphParams(
            max_n_logits=p["maxNLogits"], desired_logit_prob=p["desiredLogitProb"], node_threshold=p["nodeThreshold"],
            edge_threshold=p["edgeThreshold"], max_feature_nodes=p["maxFeatureNodes"], max_prompt_tokens=MAX_PROMPT_TOKENS,
        )  # fmt: skip

        def progress(stage: str, done: int, total: int):
            job.progress(done=done, total=total, message=f"{stage}: {done:,}/{total:,}")

        creator = graph.creator.get_username() if graph.creator else ""
        result = graph_generate(
            lm, rm, prompt=graph.prompt, model_id=graph.model_id, slug=graph.slug, params=params,
            explanations=set_explanations(source_set), source_set=source_set.name,
            info={"creator_name": creator} if creator else None, progress=progress,
        )  # fmt: skip
    except Exception as exc:
        Graph.objects.filter(pk=graph.pk).update(status=Graph.Status.FAILED)
        if isinstance(exc, ValueError):  # the prompt is too long, a parameter out of range: say so
            raise ValidationError(str(exc)) from exc
        raise
    body = gzip_bytes(json.dumps(result.graph, separators=(",", ":")).encode())
    key = _key(owner_id=graph.creator_id, slug=graph.slug)
    graph_object_put(key=key, body=body)
    Graph.objects.filter(pk=graph.pk).update(
        status=Graph.Status.READY, storage_key=key, size_bytes=len(body), prompt_tokens=result.prompt_tokens,
        replacement_score=result.replacement_score, completeness_score=result.completeness_score,
        n_nodes=result.n_nodes, n_links=result.n_links, updated_at=timezone.now(),
    )  # fmt: skip
    job.message = f"{result.n_nodes} nodes, {result.n_links} links in {result.seconds:.1f} s"
    return {
        "graph_pk": graph.pk, "slug": graph.slug, "numNodes": result.n_nodes, "numLinks": result.n_links,
        "replacementScore": result.replacement_score, "completenessScore": result.completeness_score,
        "timings": result.timings,
    }  # fmt: skip


# --- upload ------------------------------------------------------------------------------------------------


def graph_put_request_create(*, user, filename: str, content_length, ip_address: str = "") -> GraphPutRequest:
    if not isinstance(filename, str) or not filename.endswith(".json") or "/" in filename or len(filename) > 200:
        raise ValidationError("filename: a name ending in .json, without '/'")
    if isinstance(content_length, bool) or not isinstance(content_length, int):
        raise ValidationError("contentLength: the gzipped size in bytes, an integer")
    if not MIN_UPLOAD_BYTES <= content_length <= upload_limit():
        raise ValidationError(f"contentLength: must be between {MIN_UPLOAD_BYTES} and {upload_limit()} bytes")
    key = _key(owner_id=user.pk, slug=Path(filename).stem[:100])
    return GraphPutRequest.objects.create(
        user=user, filename=filename, content_length=content_length, storage_key=key, ip_address=ip_address[:64]
    )


def _live_ticket(put_request_id) -> GraphPutRequest:
    if not re.fullmatch(r"[0-9a-fA-F-]{36}", str(put_request_id)):
        raise Http404("No such upload URL.")
    ticket = GraphPutRequest.objects.filter(pk=put_request_id, created_at__gte=timezone.now() - PUT_TTL).first()
    if ticket is None:
        raise Http404("No such upload URL, or it expired (they last an hour).")
    return ticket


def graph_put_receive(*, put_request_id, stream) -> int:
    """Read the PUT body (the gzip JSON) into the store, refusing more than MAX_UPLOAD_BYTES."""
    ticket = _live_ticket(put_request_id)
    chunks, size = [], 0
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        size += len(chunk)
        if size > upload_limit():
            raise ValidationError(f"The graph is over the upload limit of {upload_limit():,} bytes (gzipped)")
        if size > ticket.content_length:  # as a signed S3 PUT would: the URL was issued for that many bytes
            raise ValidationError(
                f"The upload is over the contentLength this URL was signed for ({ticket.content_length:,} bytes)"
            )
        chunks.append(chunk)
    if size == 0:
        raise ValidationError("The upload is empty")
    graph_object_put(key=ticket.storage_key, body=b"".join(chunks))
    GraphPutRequest.objects.filter(pk=ticket.pk).update(received_bytes=size)
    return size


def graph_json_decode(body: bytes) -> dict:
    """gzip (or plain) bytes → the graph dict; ValidationError naming what is wrong."""
    if body[:2] == b"\x1f\x8b":
        try:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            raw = d.decompress(body, MAX_JSON_BYTES + 1)
        except zlib.error as exc:
            raise ValidationError(f"The upload is not valid gzip: {exc}") from exc
        if len(raw) > MAX_JSON_BYTES:
            raise ValidationError(f"The graph is over {MAX_JSON_BYTES:,} bytes uncompressed")
    else:
        raw = body
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"The graph is not valid JSON: {exc}") from exc
    from inference.runtime.graph_schema import graph_problems

    problems = graph_problems(data)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValidationError("The graph does not match the graph schema: " + "; ".join(problems[:5]) + more)
    return data


def graph_save_uploaded(*, user, put_request_id, visibility: str = Visibility.PUBLIC) -> Graph:
    """save-to-db: validate the uploaded object and create (or, for its owner, replace) the graph's row."""
    ticket = None
    if re.fullmatch(r"[0-9a-fA-F-]{36}", str(put_request_id)):
        ticket = GraphPutRequest.objects.filter(pk=put_request_id, user=user).first()
    if ticket is None:
        raise Http404("putRequestId: no upload of yours with this id")
    body = graph_object_get(key=ticket.storage_key)
    if body is None:
        raise ValidationError("putRequestId: nothing was uploaded to this URL yet")
    try:
        data = graph_json_decode(body)
        meta = data["metadata"]
        slug, model_id = meta["slug"], meta["scan"]
        for name, value in (("slug", slug), ("scan", model_id)):
            if not SLUG_RE.match(value):
                raise ValidationError(f"metadata.{name}: letters, digits, '.', '-' and '_' only (got {value!r})")
        if _has_nul([meta["prompt"], meta["prompt_tokens"], meta.get("feature_details")]):
            raise ValidationError("metadata: strings must not contain NUL characters")
        model = Model.objects.filter(readable_q(user), pk=model_id).first()
        if model is None:
            raise ValidationError(f"ERR_MODEL_DOES_NOT_EXIST: metadata.scan names no model here ({model_id!r})")
        if visibility not in Visibility.values:
            raise ValidationError(f"visibility: one of {', '.join(Visibility.values)}")
        with transaction.atomic():
            existing = Graph.objects.select_for_update().filter(model=model, slug=slug).first()
            if existing is not None and existing.creator_id != user.pk:
                raise ValidationError(f"Another user's graph has this slug: {model_id}/{slug}")
            old_key = existing.storage_key if existing else ""
            fields = dict(
                prompt=meta["prompt"], prompt_tokens=meta["prompt_tokens"], creator=user, visibility=visibility,
                status=Graph.Status.READY, storage_key=ticket.storage_key, size_bytes=len(body),
                n_nodes=len(data["nodes"]), n_links=len(data["links"]),
                source_set_name=(meta.get("feature_details") or {}).get("neuronpedia_source_set", "") or "",
                params={k: meta[k] for k in ("generation_settings", "pruning_settings") if isinstance(meta.get(k), dict)},
                replacement_score=_number(meta.get("replacement_score")),
                completeness_score=_number(meta.get("completeness_score")),
            )  # fmt: skip
            graph, _ = Graph.objects.update_or_create(model=model, slug=slug, defaults=fields)
            ticket.delete()
    except ValidationError:
        graph_object_delete(key=ticket.storage_key)
        ticket.delete()
        raise
    if old_key and old_key != graph.storage_key:
        graph_object_delete(key=old_key)
    return graph


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# --- reading, editing, deleting ----------------------------------------------------------------------------


def graph_json_bytes(*, graph: Graph) -> bytes:
    """The stored gzip bytes of a READY graph."""
    if graph.status != Graph.Status.READY or not graph.storage_key:
        raise Http404(f"Graph {graph.model_id}/{graph.slug} is {graph.status.lower()}: no JSON yet.")
    body = graph_object_get(key=graph.storage_key)
    if body is None:
        raise Http404(f"Graph {graph.model_id}/{graph.slug}: its JSON is missing from the store.")
    return body


def graph_delete(*, user, model_id: str, slug: str) -> None:
    graph = Graph.objects.filter(model_id=model_id, slug=slug).filter(readable_q(user)).first()
    if graph is None:
        raise Http404(f"No graph {model_id}/{slug}.")
    if graph.creator_id != user.pk and not user.is_staff:
        raise PermissionDenied("Only its owner can delete a graph.")
    key = graph.storage_key
    graph.delete()
    graph_object_delete(key=key)


def graph_clerps_set(*, user, graph: Graph, clerps: list) -> Graph:
    """Owner's node labels: `[[featureId, text], ...]` written into the stored JSON's nodes (by node_id or
    Neuronpedia's `layer_feature_ctx` id) and into qParams."""
    if graph.creator_id != user.pk:
        raise PermissionDenied("Only its owner can edit a graph's labels.")
    if not isinstance(clerps, list) or not all(
        isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) for x in c) for c in clerps
    ):
        raise ValidationError("clerps: a list of [nodeId, label] string pairs")
    labels = dict(clerps)

    def label(node: dict) -> str | None:
        return labels.get(
            node["node_id"], labels.get(f"{node.get('layer')}_{node.get('feature')}_{node.get('ctx_idx')}")
        )

    return graph_labels_write(graph=graph, label=label)


def graph_labels_write(*, graph: Graph, label) -> Graph:
    """Rewrite the stored JSON with `label(node) -> str | None` applied to every node (None keeps its label);
    nothing is written when no label changes."""
    data = json.loads(gzip.decompress(graph_json_bytes(graph=graph)))
    changed = 0
    for node in data["nodes"]:
        text = label(node)
        if text is not None and text != node.get("clerp"):
            node["clerp"] = text
            changed += 1
    if not changed:
        return graph
    body = gzip_bytes(json.dumps(data, separators=(",", ":")).encode())
    key = _key(owner_id=graph.creator_id, slug=graph.slug)
    graph_object_put(key=key, body=body)
    old = graph.storage_key
    Graph.objects.filter(pk=graph.pk).update(storage_key=key, size_bytes=len(body), updated_at=timezone.now())
    graph_object_delete(key=old)
    graph.refresh_from_db()
    return graph


def _has_nul(value) -> bool:
    """Postgres jsonb refuses \\u0000 in strings: refuse it as a 400 rather than fail as a 500."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


def _string_list(value, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(f"{name}: a list of strings")
    return value


def subgraph_save(
    *, user, graph: Graph, display_name: str = "", pinned_ids, supernodes, clerps, pruning_threshold=None,
    density_threshold=None, overwrite_id=None,
) -> Subgraph:  # fmt: skip
    _string_list(pinned_ids, "pinnedIds")
    if not isinstance(supernodes, list):
        raise ValidationError("supernodes: a list of [label, nodeId, ...] lists")
    for s in supernodes:
        _string_list(s, "supernodes[]")
    if not isinstance(clerps, list) or not all(isinstance(c, list) and len(c) == 2 for c in clerps):
        raise ValidationError("clerps: a list of [featureId, label] pairs")
    for name, value in (("pruningThreshold", pruning_threshold), ("densityThreshold", density_threshold)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1
        ):
            raise ValidationError(f"{name}: a number between 0 and 1")
    if _has_nul([display_name, pinned_ids, supernodes, clerps]):
        raise ValidationError("subgraph: strings must not contain NUL characters")
    fields = dict(
        display_name=(display_name or "")[:255], pinned_ids=pinned_ids, supernodes=supernodes, clerps=clerps,
        pruning_threshold=pruning_threshold, density_threshold=density_threshold,
    )  # fmt: skip
    if overwrite_id:
        sub = Subgraph.objects.filter(pk=overwrite_id if str(overwrite_id).isdigit() else -1, graph=graph).first()
        if sub is None:
            raise Http404(f"No subgraph {overwrite_id} of this graph.")
        if sub.user_id != user.pk:
            raise PermissionDenied("Only its owner can overwrite a subgraph.")
        Subgraph.objects.filter(pk=sub.pk).update(**fields, updated_at=timezone.now())
        sub.refresh_from_db()
        return sub
    return Subgraph.objects.create(graph=graph, user=user, **fields)


def subgraph_delete(*, user, subgraph_id) -> None:
    sub = Subgraph.objects.filter(pk=subgraph_id if str(subgraph_id).isdigit() else -1).first()
    if sub is None:
        raise Http404(f"No subgraph {subgraph_id}.")
    if sub.user_id != user.pk and not user.is_staff:
        raise PermissionDenied("Only its owner can delete a subgraph.")
    sub.delete()


def graph_job_status(graph: Graph) -> Job | None:
    return graph.job
