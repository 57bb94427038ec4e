"""Writes of autointerp: explanations (LLM and human), votes, embeddings, scores, batch jobs, UMAP.

Functions that call an LLM or an embedder run in worker tasks (tasks.py), never in the web process.
"""

from __future__ import annotations

import logging
import random

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef

from autointerp import conf
from autointerp.examples import Example, split_quantiles, window
from autointerp.explainers import ExplainInput, ExplainResult, explain, explainer_get
from autointerp.jobs import AUTOINTERP_JOB, EXPLAIN_FEATURE_JOB, SCORE_EMBEDDING_JOB, SCORE_EXPLANATION_JOB
from autointerp.llm import LLMConfig
from autointerp.models import ProviderKey
from features.models import (
    Activation,
    Explanation,
    ExplanationModelType,
    ExplanationScore,
    ExplanationScoreModel,
    ExplanationScoreType,
    ExplanationType,
    Feature,
    Job,
    Source,
    Vote,
)
from features.services.jobs import JOB_CONTINUES, JobContext, job_enqueue, job_fail, job_finish, job_progress

log = logging.getLogger(__name__)

HUMAN = "human"
EXPLANATION_TYPES = {
    "oai_token-act-pair": ("OpenAI token/activation pairs", "OpenAI's neuron explainer: token<TAB>activation lines."),
    "np_max-act": ("Max activating examples", "Top activating excerpts with highlighted tokens."),
    "np_max-act-logits": ("Max activating examples + logits", "Top activating excerpts and top positive logits."),
    "eleuther_acts_top20": ("Eleuther/delphi default", "delphi's DefaultExplainer: <<spans>> and activations."),
    HUMAN: ("Human", "Written by a person."),
}
SCORE_TYPES = {
    "eleuther_recall": ("Detection", "Balanced accuracy of an LLM judging which plain excerpts the feature fires on."),
    "eleuther_fuzz": ("Fuzzing", "Balanced accuracy of an LLM judging whether highlighted tokens fit the explanation."),
    "eleuther_embedding": ("Embedding", "ROC-AUC of explanation–excerpt embedding similarity."),
    "oai_simulation": ("Simulation", "Pearson correlation of LLM-simulated and true activations (pooled tokens)."),
}
SCORE_ALIASES = {
    "detection": "eleuther_recall", "recall": "eleuther_recall", "fuzz": "eleuther_fuzz", "fuzzing": "eleuther_fuzz",
    "embedding": "eleuther_embedding", "simulation": "oai_simulation",
}  # fmt: skip
LLM_SCORE_TYPES = {"eleuther_recall", "eleuther_fuzz", "oai_simulation"}

# One chunk = one task. SmolLM2 takes ~2 s per np_max-act explanation on 2 cores, so 10 features ≈ 20 s:
# short enough that a killed worker loses little, long enough that task overhead is noise.
CHUNK_SIZE = 10


class AutointerpError(Exception):
    """A request the service refuses (API 400)."""


class ExplanationExists(AutointerpError):
    """The feature already has an explanation of this type by this model."""


def lookup_rows_ensure() -> None:
    """Create the explanation/score type rows autointerp writes under (idempotent)."""
    for name, (display, description) in EXPLANATION_TYPES.items():
        ExplanationType.objects.get_or_create(name=name, defaults={"display_name": display, "description": description})
    for name, (display, description) in SCORE_TYPES.items():
        ExplanationScoreType.objects.get_or_create(
            name=name, defaults={"display_name": display, "description": description}
        )


def score_type_name(raw: str) -> str:
    name = SCORE_ALIASES.get(raw, raw)
    if name not in SCORE_TYPES:
        raise ValidationError({"scorerType": f"unknown scorer {raw!r}; one of {', '.join(SCORE_TYPES)}"})
    return name


# --- LLM configuration per user ---


def provider_key_set(*, user, provider: str, api_key: str, base_url: str = "") -> ProviderKey:
    """Store (or replace) the user's key for a provider, encrypted at rest."""
    from autointerp.crypto import secret_encrypt

    api_key = (api_key or "").strip()
    base_url = (base_url or "").strip()
    if provider not in ProviderKey.Provider.values:
        raise ValidationError({"provider": f"one of {', '.join(ProviderKey.Provider.values)}"})
    if provider == ProviderKey.Provider.CUSTOM and not base_url:
        raise ValidationError({"baseUrl": "a custom provider needs its base URL"})
    if base_url and not base_url.startswith(("https://", "http://")):
        raise ValidationError({"baseUrl": "an http(s) URL, e.g. https://api.openai.com/v1"})
    if not 8 <= len(api_key) <= 512:
        raise ValidationError({"apiKey": "a provider key of 8 to 512 characters"})
    key, _ = ProviderKey.objects.update_or_create(
        user=user, provider=provider,
        defaults={"api_key_encrypted": secret_encrypt(plaintext=api_key), "last4": api_key[-4:], "base_url": base_url},
    )  # fmt: skip
    return key


def provider_key_delete(*, user, key_id: int) -> bool:
    """Delete one of the user's own keys; False when they have no such key (another user's id included)."""
    deleted, _ = ProviderKey.objects.filter(user_id=user.pk, pk=key_id).delete()
    return bool(deleted)


def llm_config_for(*, user, model: str) -> LLMConfig:
    """The user's own provider key (most recently saved) if they stored one, else the deployment's endpoint.

    Only `user`'s rows are read: a job passes the user who started it (Job.created_by), so one user's key never
    pays for another's job."""
    from autointerp.crypto import SecretUnreadable
    from autointerp.llm import LLMError

    default = LLMConfig.default(model=model)
    if user is not None and getattr(user, "pk", None):
        key = ProviderKey.objects.filter(user_id=user.pk).order_by("-updated_at").first()
        if key is not None:
            try:
                api_key = key.api_key
            except SecretUnreadable as exc:
                raise LLMError(f"Your {key.provider} key: {exc}") from None
            return LLMConfig(
                base_url=key.url, api_key=api_key, model=model, timeout=default.timeout,
                max_retries=default.max_retries,
            )  # fmt: skip
    return default


# --- examples from the database ---


def _example(activation: Activation, **extra) -> Example:
    return Example(tokens=list(activation.tokens), values=[float(v) for v in activation.values], **extra)


def feature_examples(*, feature: Feature, limit: int | None = None) -> list[Example]:
    qs = Activation.objects.filter(feature=feature).order_by("-max_value", "id")
    return [_example(a) for a in (qs[:limit] if limit else qs)]


def feature_explain_input(*, feature: Feature) -> ExplainInput:
    return ExplainInput(examples=feature_examples(feature=feature, limit=50), top_logits=list(feature.pos_str or []))


def non_activating_examples(*, feature: Feature, n: int, seed: int = 22) -> list[Example]:
    """Other features' top activations from the same source, as negatives. We cannot run the model here,
    so we assume this feature is silent on them (Neuronpedia's scorer makes the same assumption) and drop
    any text that is also one of this feature's own examples."""
    own = set("".join(tokens) for tokens in Activation.objects.filter(feature=feature).values_list("tokens", flat=True))
    candidates = list(
        Activation.objects.filter(feature__source_id=feature.source_id)
        .exclude(feature=feature)
        .order_by("feature_id", "-max_value")
        .values_list("id", "tokens", "feature__index")[: max(200, 20 * n)]
    )
    random.Random(seed).shuffle(candidates)
    out, seen = [], set(own)
    for _, tokens, index in candidates:
        text = "".join(tokens)
        if text in seen or not tokens:
            continue
        seen.add(text)
        out.append(Example(tokens=list(tokens), values=[0.0] * len(tokens), source_feature=index))
        if len(out) >= n:
            break
    return out


# --- explanations ---


def _explanation_model_row(name: str) -> ExplanationModelType:
    return ExplanationModelType.objects.get_or_create(name=name, defaults={"display_name": name})[0]


def explainer_model_name(*, user, type_name: str, model_name: str | None) -> str:
    """The explainer model a user's request names (the type's default when it names none), refused unless the
    deployment's endpoint serves it (conf.explainer_models). A user who stored a provider key may name any model of
    their provider: only the provider knows its models, and a wrong name fails that user's job with its answer."""
    model_name = (model_name or "").strip() or conf.model_for(type_name, role="explainer")
    if len(model_name) > 128:
        raise ValidationError({"explanationModelName": "at most 128 characters"})
    served = conf.explainer_models(t for t in EXPLANATION_TYPES if t != HUMAN)
    if model_name in served or ProviderKey.objects.filter(user_id=getattr(user, "pk", None)).exists():
        return model_name
    raise ValidationError({"explanationModelName": (
        f"{model_name!r} is not served by this site's LLM endpoint; one of {', '.join(served)} "
        "(or store your own provider key on the account page to use your provider's models)"
    )})  # fmt: skip


def explanation_exists(*, feature: Feature, type_name: str, model_name: str) -> bool:
    return Explanation.objects.filter(feature=feature, type_id=type_name, explanation_model_id=model_name).exists()


def explanation_generate(
    *, feature: Feature, type_name: str, model_name: str | None = None, user=None
) -> tuple[Explanation, ExplainResult]:
    """Explain one feature with an LLM and store the explanation (embedded afterwards on the embeddings queue)."""
    explainer = explainer_get(type_name)
    model_name = model_name or conf.model_for(type_name, role="explainer")
    _explanation_refuse_duplicate(feature=feature, type_name=type_name, model_name=model_name)
    data = feature_explain_input(feature=feature)
    result = explain(explainer=explainer, data=data, config=llm_config_for(user=user, model=model_name))
    # Two callers can both pass the check above while they wait on the LLM. No unique constraint can stop the
    # second insert (imported data may hold several explanations of one type and model), so the feature row
    # lock serialises the re-check and the insert; the LLM call stays outside the lock.
    with transaction.atomic():
        list(Feature.objects.select_for_update().filter(pk=feature.pk).values_list("pk", flat=True))
        _explanation_refuse_duplicate(feature=feature, type_name=type_name, model_name=model_name)
        explanation = _explanation_save(
            feature=feature, description=result.description, type_name=type_name, model_name=model_name,
            prompt_version=result.prompt_version, triggered_by=user, author=None,
        )  # fmt: skip
    return explanation, result


def _explanation_refuse_duplicate(*, feature: Feature, type_name: str, model_name: str) -> None:
    if explanation_exists(feature=feature, type_name=type_name, model_name=model_name):
        raise ExplanationExists(f"This feature already has an explanation of type {type_name} by {model_name}.")


def _explanation_save(*, feature, description, type_name, model_name, prompt_version, triggered_by, author):
    lookup_rows_ensure()
    explanation = Explanation.objects.create(
        feature=feature,
        model_id=feature.model_id,
        source_id=feature.source_id,
        description=description,
        type_id=type_name,
        explanation_model=_explanation_model_row(model_name) if model_name else None,
        prompt_version=prompt_version,
        triggered_by=triggered_by,
        author=author,
    )
    explanation_embed_later(explanation_ids=[explanation.id])
    return explanation


def explanation_create_human(*, user, feature: Feature, text: str) -> Explanation:
    text = (text or "").strip()
    if len(text) < 2:
        raise ValidationError({"text": "an explanation needs at least 2 characters"})
    if len(text) > 512:
        raise ValidationError({"text": "at most 512 characters"})
    return _explanation_save(
        feature=feature, description=text, type_name=HUMAN, model_name=None, prompt_version="",
        triggered_by=user, author=user,
    )  # fmt: skip


def explanation_delete(*, user, explanation: Explanation) -> None:
    if not (user.is_staff or explanation.author_id == user.pk or explanation.triggered_by_id == user.pk):
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied("Only the author of this explanation can delete it.")
    explanation.delete()


def _votes_refresh(explanation: Explanation) -> Explanation:
    # scoreV1 is the vote tally (Neuronpedia sorts explanations by it after scoreV2)
    total = Vote.objects.filter(explanation=explanation).values_list("points", flat=True)
    explanation.score_v1 = float(sum(total))
    explanation.save(update_fields=["score_v1", "updated_at"])
    return explanation


def explanation_vote(*, user, explanation: Explanation) -> Explanation:
    Vote.objects.get_or_create(voter=user, explanation=explanation, defaults={"points": 1})
    return _votes_refresh(explanation)


def explanation_unvote(*, user, explanation: Explanation) -> Explanation:
    Vote.objects.filter(voter=user, explanation=explanation).delete()
    return _votes_refresh(explanation)


# --- embeddings ---


def explanation_embed_later(*, explanation_ids: list[str]) -> None:
    from autointerp.tasks import explanations_embed_task

    transaction.on_commit(lambda: explanations_embed_task.delay(explanation_ids=list(explanation_ids)))


def explanations_embed(*, explanation_ids: list[str], force: bool = False) -> int:
    """Embed explanations with the configured embedder (worker only). Returns how many were written."""
    from autointerp.embeddings import embed_texts, embedder_current

    embedder = embedder_current()
    qs = Explanation.objects.filter(id__in=explanation_ids)
    if not force:
        qs = qs.filter(**{f"{embedder.field}__isnull": True})
    rows = list(qs.only("id", "description"))
    if not rows:
        return 0
    vectors = embed_texts([r.description for r in rows], embedder=embedder)
    for row, vector in zip(rows, vectors, strict=True):
        setattr(row, embedder.field, vector)
    Explanation.objects.bulk_update(rows, [embedder.field], batch_size=500)
    return len(rows)


def explanations_missing_embedding(*, source: Source | None = None):
    from autointerp.embeddings import embedder_current

    qs = Explanation.objects.filter(**{f"{embedder_current().field}__isnull": True})
    if source is not None:
        qs = qs.filter(source=source)
    return qs.order_by("id").values_list("id", flat=True)


# --- scores ---


def score_input_for(*, explanation: Explanation, n_activating: int = 10, n_non_activating: int = 10):
    """delphi sampling: activating examples drawn across rank quantiles, plus non-activating ones."""
    from autointerp.scorers import ScoreInput

    feature = explanation.feature
    activating = split_quantiles(feature_examples(feature=feature), n_quantiles=10, n_samples=n_activating)
    activating = [window(e) for e in activating]
    negatives = [window(e) for e in non_activating_examples(feature=feature, n=n_non_activating)]
    if not activating or not negatives:
        raise AutointerpError(
            "Scoring needs activating examples of this feature and top examples of other features of its source."
        )
    return ScoreInput(explanation=explanation.description, activating=activating, non_activating=negatives)


def explanation_score(
    *, explanation: Explanation, score_type: str, scorer_model: str | None = None, user=None,
    n_activating: int | None = None, n_non_activating: int | None = None, simulation_mode: str = "logprobs",
    progress=None,
) -> ExplanationScore:  # fmt: skip
    """Score an explanation and upsert ExplanationScore (one per explanation, type and model). Worker only."""
    from autointerp import prompts, scorers

    score_type = score_type_name(score_type)
    default_act, default_non = conf.scorer_n_examples()
    n_activating, n_non_activating = n_activating or default_act, n_non_activating or default_non
    data = score_input_for(explanation=explanation, n_activating=n_activating, n_non_activating=n_non_activating)
    if score_type == "eleuther_embedding":
        from autointerp.embeddings import LOCAL, embed_texts

        scorer_model = LOCAL.name
        result = scorers.embedding_score(data=data, embed=lambda texts: embed_texts(texts, embedder=LOCAL))
    else:
        scorer_model = scorer_model or conf.model_for(score_type, role="scorer")
        config = llm_config_for(user=user, model=scorer_model)
        if score_type == "oai_simulation":
            result = scorers.simulation_score(data=data, config=config, mode=simulation_mode, progress=progress)
        else:
            kind = "fuzz" if score_type == "eleuther_fuzz" else "detection"
            result = scorers.classifier_score(
                kind=kind, data=data, config=config, n_examples_shown=conf.scorer_examples_per_prompt(),
                log_prob=conf.scorer_logprobs(), progress=progress,
            )  # fmt: skip
    if result.value is None:
        raise AutointerpError(f"The scorer produced no score ({result.summary}).")
    result.summary.update(
        prompt_version=prompts.VERSIONS[score_type], prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )  # fmt: skip
    lookup_rows_ensure()
    model_row = ExplanationScoreModel.objects.get_or_create(name=scorer_model, defaults={"display_name": scorer_model})[
        0
    ]
    score, _ = ExplanationScore.objects.update_or_create(
        explanation=explanation, score_type_id=score_type, score_model=model_row,
        defaults={"value": float(result.value), "json_details": result.json_details(), "initiated_by": user},
    )  # fmt: skip
    return score


# --- one explanation or one score as a job (the dashboard's buttons) ---


def explain_feature_job_create(
    *, user, feature: Feature, type_name: str, model_name: str | None = None, send: bool = True
) -> Job:
    """Explain one feature on the autointerp queue; the page follows the job and shows the explanation."""
    if type_name == HUMAN:
        raise ValidationError({"explanationType": "a human explanation is written, not generated"})
    try:
        explainer_get(type_name)
    except ValueError as exc:
        raise ValidationError({"explanationType": str(exc)}) from None
    model_name = explainer_model_name(user=user, type_name=type_name, model_name=model_name)
    if explanation_exists(feature=feature, type_name=type_name, model_name=model_name):
        raise ValidationError(
            {"explanationType": f"this feature already has a {type_name} explanation by {model_name}"}
        )
    params = {"feature_id": feature.pk, "index": feature.index, "type_name": type_name, "model_name": model_name}
    return job_enqueue(
        kind=EXPLAIN_FEATURE_JOB, model_id=feature.model_id, source=feature.source.name, params=params,
        created_by=user, send=send,
    )  # fmt: skip


def explain_feature_run(job: JobContext, **inline) -> dict:
    p = job.params
    feature = Feature.objects.select_related("source", "model").get(pk=p["feature_id"])
    job.progress(done=0, total=1, message=f"Asking {p['model_name']} for a {p['type_name']} explanation…")
    try:
        explanation, res = explanation_generate(
            feature=feature, type_name=p["type_name"], model_name=p["model_name"], user=job.job.created_by
        )
        tokens = {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens}
    except ExplanationExists:
        # a re-sent job whose first run saved it before the worker died (or another caller got there first)
        explanation = Explanation.objects.filter(
            feature=feature, type_id=p["type_name"], explanation_model_id=p["model_name"]
        ).latest("created_at")
        tokens = {}
    job.progress(done=1, total=1)
    job.message = f"Explained: {explanation.description}"
    return {"explanation_id": explanation.id, **tokens}


def score_job_create(
    *, user, explanation: Explanation, score_type: str, scorer_model: str | None = None, send: bool = True
) -> Job:
    """Score one explanation with one scorer (LLM scorers on autointerp, the embedding one on embeddings)."""
    score_type = score_type_name(score_type)
    kind = SCORE_EMBEDDING_JOB if score_type == "eleuther_embedding" else SCORE_EXPLANATION_JOB
    scorer_model = (scorer_model or "").strip() or None
    if scorer_model and len(scorer_model) > 128:
        raise ValidationError({"scorerModel": "at most 128 characters"})
    params = {"explanation_id": explanation.id, "score_type": score_type, "scorer_model": scorer_model}
    return job_enqueue(
        kind=kind, model_id=explanation.model_id, source=explanation.feature.source.name, params=params,
        created_by=user, send=send,
    )  # fmt: skip


def score_explanation_run(job: JobContext, **inline) -> dict:
    p = job.params
    explanation = Explanation.objects.select_related("feature").get(pk=p["explanation_id"])
    label = SCORE_TYPES[p["score_type"]][0]
    job.progress(done=0, message=f"{label}: sampling examples…")

    def progress(done: int, total: int) -> None:
        job.progress(done=done, total=total, message=f"{label}: {done} of {total} examples judged")

    score = explanation_score(
        explanation=explanation, score_type=p["score_type"], scorer_model=p.get("scorer_model"),
        user=job.job.created_by, progress=progress,
    )  # fmt: skip
    job.message = f"{label} {score.value:.3f} by {score.score_model_id}"
    return {"score_id": score.id, "explanation_id": explanation.id, "value": score.value}


# --- batch autointerp jobs ---


def autointerp_job_create(
    *, source: Source, type_name: str, model_name: str | None = None, indexes: list[int] | None = None,
    user=None, limit: int | None = None, chunk_size: int = CHUNK_SIZE, send: bool = True,
) -> Job:  # fmt: skip
    explainer_get(type_name)  # unknown type → ValueError before a job exists
    params = {
        "source_pk": source.pk, "type_name": type_name,
        "model_name": model_name or conf.model_for(type_name, role="explainer"),
        "indexes": sorted(set(indexes)) if indexes else None, "limit": limit,
        "user_id": getattr(user, "pk", None), "chunk_size": chunk_size,
    }  # fmt: skip
    return job_enqueue(
        kind=AUTOINTERP_JOB, model_id=source.model_id, source=source.name, params=params, created_by=user, send=send
    )


def _targets_qs(params: dict):
    qs = Feature.objects.filter(source_id=params["source_pk"])
    qs = qs.filter(Exists(Activation.objects.filter(feature=OuterRef("pk"))))
    if params.get("indexes"):
        qs = qs.filter(index__in=params["indexes"])
    qs = qs.order_by("index")
    if params.get("limit"):
        qs = qs[: params["limit"]]
    return qs.values_list("id", flat=True)


def _targets(params: dict):
    return list(_targets_qs(params))


def _explained_q(params: dict):
    return Exists(
        Explanation.objects.filter(
            feature=OuterRef("pk"), type_id=params["type_name"], explanation_model_id=params["model_name"]
        )
    )


def _explained_count(params: dict) -> int:
    return Feature.objects.filter(id__in=_targets_qs(params)).filter(_explained_q(params)).count()


def autointerp_plan_run(job: JobContext, **inline):
    """The `autointerp` job: plan the chunks and send one task per chunk; the last chunk finishes the job."""
    from autointerp.tasks import autointerp_chunk_task

    chunks = autointerp_job_plan(job_id=job.job_id, chunk_size=job.params.get("chunk_size") or CHUNK_SIZE)
    if not chunks:
        job.message = _summary(Job.objects.get(pk=job.job_id).result)
        return Job.objects.get(pk=job.job_id).result
    for chunk in chunks:
        transaction.on_commit(lambda c=chunk: autointerp_chunk_task.delay(job_id=job.job_id, feature_ids=c))
    return JOB_CONTINUES


def autointerp_job_plan(*, job_id: int, chunk_size: int = CHUNK_SIZE) -> list[list[int]]:
    """Split the features still lacking this type+model into chunks. Re-running it (a resume) plans only what is
    still missing: explained features are skipped, never redone."""
    job = Job.objects.get(pk=job_id)
    targets = _targets(job.params)
    pending = list(
        Feature.objects.filter(id__in=targets)
        .exclude(_explained_q(job.params))
        .order_by("index")
        .values_list("id", flat=True)
    )
    chunks = [pending[i : i + chunk_size] for i in range(0, len(pending), chunk_size)]
    job_progress(job_id=job_id, total=len(targets), message=f"{len(pending)} features to explain")
    result = dict(job.result or {})
    for key in ("prompt_tokens", "completion_tokens"):
        result.setdefault(key, 0)  # tokens spent add up over resumes
    # counts restart with the plan: what was explained before it is `skipped`, what failed is retried
    result.update(explained=0, failed=0, skipped=len(targets) - len(pending), chunks_total=len(chunks), chunks_done=0)
    Job.objects.filter(pk=job_id).update(result=result, done=len(targets) - len(pending), error="")
    return chunks


def _summary(result: dict) -> str:
    return (
        f"{result.get('explained', 0)} explained, {result.get('skipped', 0)} already had one, "
        f"{result.get('failed', 0)} failed; {result.get('prompt_tokens', 0)} prompt + "
        f"{result.get('completion_tokens', 0)} completion tokens"
    )


def autointerp_chunk_run(*, job_id: int, feature_ids: list[int]) -> None:
    """Explain one chunk. Idempotent: a feature explained meanwhile (by an earlier delivery of this chunk or
    anyone else) is not redone, and the job's counts are recomputed from the database, never added twice.
    An endpoint that is down or answers errors (bad key, unknown model) fails the whole job: every other
    feature would fail the same way. A resume retries it."""
    from autointerp.explainers import ExplanationParseError
    from autointerp.llm import LLMError, LLMUnavailable

    job = Job.objects.get(pk=job_id)
    if job.status != Job.Status.RUNNING:
        return  # failed or cancelled meanwhile
    params = job.params
    user = job.created_by
    counts = {"failed": 0, "prompt_tokens": 0, "completion_tokens": 0}
    errors = []
    features = Feature.objects.filter(id__in=feature_ids).exclude(_explained_q(params)).order_by("index")
    try:
        for feature in features.select_related("source", "model"):
            try:
                _, res = explanation_generate(
                    feature=feature, type_name=params["type_name"], model_name=params["model_name"], user=user
                )
            except ExplanationExists:
                pass  # another caller explained it meanwhile: counted from the database
            except (ExplanationParseError, AutointerpError) as exc:
                counts["failed"] += 1
                errors.append(f"feature {feature.index}: {exc}")
            else:
                counts["prompt_tokens"] += res.prompt_tokens
                counts["completion_tokens"] += res.completion_tokens
            # per feature, not every N: one LLM call costs seconds, one UPDATE microseconds. A redelivered
            # chunk may overshoot here; _job_add sets the exact count.
            job_progress(job_id=job_id, add=1)
    except (LLMUnavailable, LLMError) as exc:
        _job_add(job_id, counts, errors, chunk_done=False)
        job_fail(job_id=job_id, error=str(exc))
        raise
    _job_add(job_id, counts, errors, chunk_done=True)


def _job_add(job_id: int, counts: dict, errors: list[str], *, chunk_done: bool) -> None:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        result = dict(job.result or {})
        for key, value in counts.items():
            result[key] = result.get(key, 0) + value
        result["errors"] = (result.get("errors", []) + errors)[-20:]
        if chunk_done:
            result["chunks_done"] = result.get("chunks_done", 0) + 1
        # Counted from the database under the job's lock, so a redelivered chunk cannot count its features
        # twice. Failures are in `failed` once: a chunk adds them only when it completes.
        explained = _explained_count(job.params)
        result["explained"] = max(0, explained - result.get("skipped", 0))
        job.result = result
        job.done = explained + result.get("failed", 0)
        job.message = _summary(result)
        job.save(update_fields=["result", "done", "message", "updated_at"])
        if chunk_done and job.status == Job.Status.RUNNING and result["chunks_done"] >= result.get("chunks_total", 0):
            job_finish(job_id=job_id, message=_summary(result), result=result)
