"""Celery tasks: thin wrappers over services. LLM calls on `autointerp`, embeddings and UMAP on `embeddings`.

Tasks the API waits on return `{"ok": ..., "error": ..., "unavailable": ...}` dicts instead of raising, so
the reason reaches the web process intact whatever the result backend does with exception classes.
"""

import logging

from celery import shared_task

from memicos_site.env import env_str
from memicos_site.queues import Queue

# Optional per-worker rate limit of LLM chunk tasks (Celery syntax, e.g. "30/m"); concurrency is the
# autointerp worker's --concurrency.
AUTOINTERP_RATE_LIMIT = env_str("AUTOINTERP_RATE_LIMIT")

log = logging.getLogger(__name__)


def _failure(exc) -> dict:
    from autointerp.llm import LLMUnavailable

    return {"ok": False, "error": str(exc), "unavailable": isinstance(exc, LLMUnavailable)}


@shared_task(queue=Queue.AUTOINTERP)
def explanation_generate_task(*, feature_id: int, type_name: str, model_name: str | None = None, user_id=None):
    from django.contrib.auth import get_user_model

    from autointerp.explainers import ExplanationParseError
    from autointerp.llm import LLMError, LLMUnavailable
    from autointerp.services import AutointerpError, explanation_generate
    from features.models import Feature

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    feature = Feature.objects.select_related("source", "model").get(pk=feature_id)
    try:
        explanation, result = explanation_generate(
            feature=feature, type_name=type_name, model_name=model_name, user=user
        )
    except (LLMUnavailable, LLMError, AutointerpError, ExplanationParseError, ValueError) as exc:
        return _failure(exc)
    return {
        "ok": True, "explanation_id": explanation.id, "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
    }  # fmt: skip


def _score(explanation_id: str, score_type: str, scorer_model, user_id, options: dict) -> dict:
    from django.contrib.auth import get_user_model

    from autointerp.llm import LLMError, LLMUnavailable
    from autointerp.services import AutointerpError, explanation_score
    from features.models import Explanation

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    explanation = Explanation.objects.select_related("feature").get(pk=explanation_id)
    try:
        score = explanation_score(
            explanation=explanation, score_type=score_type, scorer_model=scorer_model, user=user, **options
        )
    except (LLMUnavailable, LLMError, AutointerpError) as exc:
        return _failure(exc)
    except Exception as exc:  # a scorer bug on odd LLM output: the caller gets the reason, the log the trace
        log.exception("scoring explanation %s (%s) failed", explanation_id, score_type)
        return _failure(AutointerpError(f"The {score_type} scorer failed: {exc.__class__.__name__}: {exc}"))
    return {"ok": True, "score_id": score.id}


@shared_task(queue=Queue.AUTOINTERP)
def explanation_score_task(*, explanation_id: str, score_type: str, scorer_model=None, user_id=None, options=None):
    return _score(explanation_id, score_type, scorer_model, user_id, options or {})


@shared_task(queue=Queue.EMBEDDINGS)
def explanation_embedding_score_task(*, explanation_id: str, user_id=None, options=None):
    return _score(explanation_id, "eleuther_embedding", None, user_id, options or {})


@shared_task(queue=Queue.EMBEDDINGS)
def explanations_embed_task(*, explanation_ids: list[str], force: bool = False):
    from autointerp.services import explanations_embed

    return explanations_embed(explanation_ids=explanation_ids, force=force)


@shared_task(queue=Queue.EMBEDDINGS)
def query_embed_task(*, text: str, embedder: str = "local") -> list[float]:
    from autointerp.embeddings import LOCAL, OPENAI_256, embed_texts

    return embed_texts([text], embedder=OPENAI_256 if embedder == "openai" else LOCAL)[0]


@shared_task(queue=Queue.AUTOINTERP, rate_limit=AUTOINTERP_RATE_LIMIT)
def autointerp_chunk_task(*, job_id: int, feature_ids: list[int]):
    from autointerp.llm import LLMError, LLMUnavailable
    from autointerp.services import autointerp_chunk_run

    try:
        autointerp_chunk_run(job_id=job_id, feature_ids=feature_ids)
    except (LLMUnavailable, LLMError):
        return {"ok": False}  # the job row is FAILED with the reason; nothing to retry until resumed
    return {"ok": True}
