"""Autointerp API: /api/explanation/* (generate, score, new, votes, search) and /api/umap.

LLM and embedding work runs on workers (autointerp / embeddings queues); these views enqueue and wait.
No worker or no LLM endpoint → 503 `{"message"}` saying which.
"""

from __future__ import annotations

import hashlib

from celery.exceptions import TimeoutError as CeleryTimeout
from django.core.cache import cache
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response

from autointerp import selectors as sel
from autointerp import services as svc
from autointerp.api import serializers as s
from autointerp.llm import LLMError, LLMUnavailable
from features.api.base import ApiView, AuthedApiView, validated
from features.api.common import feature_or_404, source_or_404
from features.api.presenters import (
    activation_wire,
    explanation_wire,
    feature_key,
    feature_wire,
    score_wire,
)
from features.models import Explanation, ExplanationScore
from features.selectors import feature_readable_q, model_get, release_get, top_activations_by_feature
from memicos_site.cpu_gate import released
from memicos_site.env import env_int

ERRORS = {
    400: s.ErrorOut, 401: s.ErrorOut, 404: s.ErrorOut,
    503: OpenApiResponse(s.ErrorOut, description="No worker or no LLM endpoint reachable."),
}  # fmt: skip
OWNER_ERRORS = {**ERRORS, 403: OpenApiResponse(s.ErrorOut, description="Not yours (or not staff).")}
QUERY_CACHE_SECONDS = 3600


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Service unavailable."


def _wait(result, *, what: str, timeout: int | None = None):
    timeout = timeout or env_int("AUTOINTERP_API_TIMEOUT", 300)
    try:
        with released():  # the request's CPU slot, while the worker computes
            return result.get(timeout=timeout, disable_sync_subtasks=False)
    except CeleryTimeout:
        raise ServiceUnavailable(f"No {what} worker answered within {timeout}s; is one running?") from None


def _check(outcome: dict) -> dict:
    if outcome.get("ok"):
        return outcome
    if outcome.get("unavailable"):
        raise ServiceUnavailable(outcome["error"])
    raise ValidationError(outcome.get("error") or "failed")


def _explanation_readable(request, explanation_id: str) -> Explanation:
    explanation = (
        Explanation.objects.filter(feature_readable_q(request.user), id=explanation_id)
        .select_related("feature", "feature__source", "triggered_by")
        .first()
    )
    if explanation is None:
        raise Http404(f"Explanation {explanation_id!r} not found.")
    return explanation


def _explanation_out(explanation_id: str) -> dict:
    e = Explanation.objects.select_related("feature__source", "triggered_by").get(pk=explanation_id)
    return explanation_wire(e, key=feature_key(e.feature))


class ExplanationGenerateView(AuthedApiView):
    throttle_scope = "autointerp"

    @extend_schema(
        operation_id="explanation_generate", tags=["explanations"], summary="Explain a feature with an LLM",
        description="Runs the explainer on the autointerp queue against the configured OpenAI-compatible endpoint "
        "(or the user's stored provider key). 400 if the feature already has this type by this model.",
        request=s.GenerateIn, responses={200: s.ExplanationWrapOut, **ERRORS},
    )  # fmt: skip
    def post(self, request):
        from autointerp.tasks import explanation_generate_task

        data = validated(s.GenerateIn, request.data)
        feature = feature_or_404(
            model_id=data["modelId"], source_id=data["layer"], index=data["index"], user=request.user
        )
        type_name = data["explanationType"]
        model_name = svc.explainer_model_name(
            user=request.user, type_name=type_name, model_name=data.get("explanationModelName")
        )
        if svc.explanation_exists(feature=feature, type_name=type_name, model_name=model_name):
            raise ValidationError(
                {"explanationType": f"this feature already has a {type_name} explanation by {model_name}"}
            )
        outcome = _check(_wait(
            explanation_generate_task.delay(
                feature_id=feature.pk, type_name=type_name, model_name=model_name, user_id=request.user.pk
            ), what="autointerp",
        ))  # fmt: skip
        return Response({"explanation": _explanation_out(outcome["explanation_id"])})


class ExplanationGenerateJobView(AuthedApiView):
    throttle_scope = "autointerp"

    @extend_schema(
        operation_id="explanation_generate_job", tags=["explanations"], summary="Explain a feature as a Job",
        description="As /api/explanation/generate, without waiting: returns the job at once (follow it with "
        "GET /api/job/<id>; its result holds explanation_id). Runs with the caller's own provider key when they "
        "stored one. 400 if the feature already has this type by this model.",
        request=s.GenerateIn, responses={200: s.JobStartedOut, **ERRORS},
    )  # fmt: skip
    def post(self, request):
        data = validated(s.GenerateIn, request.data)
        feature = feature_or_404(
            model_id=data["modelId"], source_id=data["layer"], index=data["index"], user=request.user
        )
        job = svc.explain_feature_job_create(
            user=request.user, feature=feature, type_name=data["explanationType"],
            model_name=data.get("explanationModelName"),
        )  # fmt: skip
        return Response({"jobId": job.pk, "status": job.status})


class ExplanationScoreJobView(AuthedApiView):
    throttle_scope = "autointerp"

    @extend_schema(
        operation_id="explanation_score_job", tags=["explanations"], summary="Score an explanation as a Job",
        description="As /api/explanation/score, without waiting: returns the job at once (GET /api/job/<id> shows "
        "how many examples the scorer has judged; its result holds score_id).",
        request=s.ScoreIn, responses={200: s.JobStartedOut, **ERRORS},
    )  # fmt: skip
    def post(self, request):
        data = validated(s.ScoreIn, request.data)
        explanation = _explanation_readable(request, data["explanationId"])
        job = svc.score_job_create(
            user=request.user, explanation=explanation, score_type=data["scorerType"],
            scorer_model=data.get("scorerModel"),
        )  # fmt: skip
        return Response({"jobId": job.pk, "status": job.status})


class ExplanationGenerateBatchView(AuthedApiView):
    throttle_scope = "autointerp"

    @extend_schema(
        operation_id="explanation_generate_batch", tags=["explanations"], summary="Batch autointerp (a Job)",
        description="Explains every feature of a source (or the listed indexes) that lacks this type+model, in "
        "chunked tasks on the autointerp queue. Staff or the source's creator only. Progress on the Job row.",
        request=s.GenerateBatchIn, responses={200: s.JobStartedOut, **OWNER_ERRORS},
    )  # fmt: skip
    def post(self, request):
        data = validated(s.GenerateBatchIn, request.data)
        source = source_or_404(model_id=data["modelId"], source_id=data["layer"], user=request.user)
        if not (request.user.is_staff or source.creator_id == request.user.pk):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied("Only staff or the source's creator can run batch autointerp on it.")
        model_name = svc.explainer_model_name(
            user=request.user, type_name=data["explanationType"], model_name=data.get("explanationModelName")
        )
        job = svc.autointerp_job_create(
            source=source, type_name=data["explanationType"], model_name=model_name,
            indexes=data.get("indexes"), user=request.user,
        )  # fmt: skip
        job.refresh_from_db()
        return Response({"jobId": job.pk, "status": job.status})


class ExplanationNewView(AuthedApiView):
    @extend_schema(
        operation_id="explanation_new", tags=["explanations"], summary="Add a human explanation",
        request=s.NewIn, responses={200: s.ExplanationWrapOut, **ERRORS},
    )  # fmt: skip
    def post(self, request):
        data = validated(s.NewIn, request.data)
        feature = feature_or_404(
            model_id=data["modelId"], source_id=data["layer"], index=data["index"], user=request.user
        )
        explanation = svc.explanation_create_human(user=request.user, feature=feature, text=data["text"])
        return Response({"explanation": _explanation_out(explanation.id)})


class ExplanationDetailView(ApiView):
    @extend_schema(
        operation_id="explanation_get", tags=["explanations"], summary="One explanation with its scores",
        responses={200: s.ExplanationOut, 404: s.ErrorOut},
    )  # fmt: skip
    def get(self, request, explanation_id: str):
        return Response(_explanation_out(_explanation_readable(request, explanation_id).id))


class ExplanationVoteView(AuthedApiView):
    @extend_schema(
        operation_id="explanation_vote", tags=["explanations"], summary="Vote for an explanation (idempotent)",
        request=None, responses={200: s.ExplanationOut, **ERRORS},
    )  # fmt: skip
    def post(self, request, explanation_id: str):
        explanation = svc.explanation_vote(
            user=request.user, explanation=_explanation_readable(request, explanation_id)
        )
        return Response(_explanation_out(explanation.id))


class ExplanationUnvoteView(AuthedApiView):
    @extend_schema(
        operation_id="explanation_unvote", tags=["explanations"], summary="Withdraw your vote",
        request=None, responses={200: s.ExplanationOut, **ERRORS},
    )  # fmt: skip
    def post(self, request, explanation_id: str):
        explanation = svc.explanation_unvote(
            user=request.user, explanation=_explanation_readable(request, explanation_id)
        )
        return Response(_explanation_out(explanation.id))


class ExplanationDeleteView(AuthedApiView):
    @extend_schema(
        operation_id="explanation_delete", tags=["explanations"], summary="Delete your explanation",
        request=None, responses={200: s.ErrorOut, **OWNER_ERRORS},
    )  # fmt: skip
    def post(self, request, explanation_id: str):
        svc.explanation_delete(user=request.user, explanation=_explanation_readable(request, explanation_id))
        return Response({"message": "deleted"})


class ExplanationScoreView(AuthedApiView):
    throttle_scope = "autointerp"

    @extend_schema(
        operation_id="explanation_score", tags=["explanations"], summary="Score an explanation",
        description="Detection/fuzzing (balanced accuracy), embedding (ROC-AUC), simulation (Pearson). The "
        "per-example breakdown is in jsonDetails. One score per (explanation, type, model): re-scoring replaces it.",
        request=s.ScoreIn, responses={200: s.ScoreWrapOut, **ERRORS},
    )  # fmt: skip
    def post(self, request):
        from autointerp.tasks import explanation_embedding_score_task, explanation_score_task

        data = validated(s.ScoreIn, request.data)
        score_type = svc.score_type_name(data["scorerType"])
        explanation = _explanation_readable(request, data["explanationId"])
        if score_type == "eleuther_embedding":
            pending = explanation_embedding_score_task.delay(explanation_id=explanation.id, user_id=request.user.pk)
            outcome = _check(_wait(pending, what="embeddings"))
        else:
            pending = explanation_score_task.delay(
                explanation_id=explanation.id, score_type=score_type, scorer_model=data.get("scorerModel"),
                user_id=request.user.pk,
            )  # fmt: skip
            outcome = _check(_wait(pending, what="autointerp"))
        return Response({"score": score_wire(ExplanationScore.objects.get(pk=outcome["score_id"]))})


# --- search ---


def query_vector(text: str) -> tuple[list[float], str]:
    """(vector, Explanation field) for a query, embedded on the embeddings queue and cached."""
    from autointerp.embeddings import embedder_current
    from autointerp.tasks import query_embed_task

    embedder = embedder_current()
    key = "aiq:" + hashlib.sha256(f"{embedder.name}\0{text}".encode()).hexdigest()
    vector = cache.get(key)
    if vector is None:
        kind = "openai" if embedder.field == "embedding_256" else "local"
        try:
            vector = _wait(query_embed_task.delay(text=text, embedder=kind), what="embeddings", timeout=60)
        except (LLMUnavailable, LLMError) as exc:  # this task raises instead of returning an outcome dict
            raise ServiceUnavailable(f"Query embedding failed: {exc}") from None
        cache.set(key, vector, QUERY_CACHE_SECONDS)
    return vector, embedder.field


def search_response(request, data: dict, **scope) -> dict:
    vector, field = query_vector(data["query"])
    offset = data["offset"]
    hits, has_more = sel.explanation_search(
        user=request.user, query=data["query"], vector=vector, field=field, offset=offset, **scope
    )
    acts = top_activations_by_feature(feature_ids={h.explanation.feature_id for h in hits}, limit=3)
    results = []
    for h in hits:
        f = h.explanation.feature
        key = feature_key(f)
        results.append({
            **key,
            "description": h.explanation.description,
            "explanationModelName": h.explanation.explanation_model_id,
            "typeName": h.explanation.type_id,
            "cosine_similarity": h.similarity,
            "exactMatch": h.phrase_match,
            "neuron": {**feature_wire(f), "activations": [activation_wire(a, key=key) for a in acts[f.pk]]},
        })  # fmt: skip
    return {
        "request": dict(request.data),
        "results": results,
        "resultsCount": len(results),
        "hasMore": has_more,
        "nextOffset": offset + len(results) if has_more else None,
    }


SEARCH_DOC = (
    "Semantic search over explanations: exact-phrase matches first, then nearest neighbours of the query's "
    "embedding (HNSW). 20 per page; page with `offset`. Only PUBLIC models/sources (and your own) appear."
)


class SearchAllView(ApiView):
    throttle_scope = "explanation-search"

    @extend_schema(operation_id="explanation_search_all", tags=["search"], summary="Search all explanations",
                   description=SEARCH_DOC, request=s.SearchAllIn, responses={200: s.SearchOut, **ERRORS})  # fmt: skip
    def post(self, request):
        return Response(search_response(request, validated(s.SearchAllIn, request.data)))


class SearchSourcesView(ApiView):
    throttle_scope = "explanation-search"

    @extend_schema(operation_id="explanation_search", tags=["search"], summary="Search explanations of sources",
                   description=SEARCH_DOC, request=s.SearchIn, responses={200: s.SearchOut, **ERRORS})  # fmt: skip
    def post(self, request):
        data = validated(s.SearchIn, request.data)
        model_get(model_id=data["modelId"], user=request.user)
        return Response(search_response(request, data, model_id=data["modelId"], source_names=data["layers"]))


class SearchModelView(ApiView):
    throttle_scope = "explanation-search"

    @extend_schema(operation_id="explanation_search_model", tags=["search"], summary="Search a model's explanations",
                   description=SEARCH_DOC, request=s.SearchModelIn, responses={200: s.SearchOut, **ERRORS})  # fmt: skip
    def post(self, request):
        data = validated(s.SearchModelIn, request.data)
        model_get(model_id=data["modelId"], user=request.user)
        return Response(search_response(request, data, model_id=data["modelId"]))


class SearchReleaseView(ApiView):
    throttle_scope = "explanation-search"

    @extend_schema(operation_id="explanation_search_release", tags=["search"],
                   summary="Search a release's explanations", description=SEARCH_DOC, request=s.SearchReleaseIn,
                   responses={200: s.SearchOut, **ERRORS})  # fmt: skip
    def post(self, request):
        data = validated(s.SearchReleaseIn, request.data)
        release_get(name=data["releaseName"], user=request.user)
        return Response(search_response(request, data, release_name=data["releaseName"]))


# --- UMAP ---


class UmapView(ApiView):
    @extend_schema(
        operation_id="umap", tags=["umap"], summary="UMAP points of sources",
        description="`{[layer]: [{id, layer, index, description, umap_cluster, umap_x, umap_y, "
        "umap_log_feature_sparsity}]}`; sources you may not list are absent.",
        request=s.UmapIn, responses={200: OpenApiResponse(description="points per layer"), **ERRORS},
    )  # fmt: skip
    def post(self, request):
        data = validated(s.UmapIn, request.data)
        sources = sel.umap_sources(user=request.user, model_id=data["modelId"], source_names=data["layers"])
        return Response({src.name: sel.umap_points(source=src) for src in sources})


class UmapGenerateView(AuthedApiView):
    throttle_scope = "autointerp"

    @extend_schema(
        operation_id="umap_generate", tags=["umap"], summary="Compute a source's UMAP (a Job)",
        description="Staff or the source's creator. Decoder directions when the source has a local SAE, "
        "else explanation embeddings (`input` forces one).",
        request=s.UmapGenerateIn, responses={200: s.JobStartedOut, **OWNER_ERRORS},
    )  # fmt: skip
    def post(self, request):
        from autointerp.services_umap import umap_job_create

        data = validated(s.UmapGenerateIn, request.data)
        source = source_or_404(model_id=data["modelId"], source_id=data["layer"], user=request.user)
        if not (request.user.is_staff or source.creator_id == request.user.pk):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied("Only staff or the source's creator can compute its UMAP.")
        job = umap_job_create(source=source, input_kind=data["input"], user=request.user)
        job.refresh_from_db()
        return Response({"jobId": job.pk, "status": job.status})
