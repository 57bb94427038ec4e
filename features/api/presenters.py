"""Model rows → Neuronpedia-shaped dicts (wire names from features/fields.py, never respelled here).

Views call these after reading through features/selectors.py; the matching output serializers in
features/api/outputs.py document the same shapes for the OpenAPI schema (a test keeps them in step).
"""

from django.db.models import F, Prefetch

from features.fields import (
    ACTIVATION_FIELDS,
    EXPLANATION_FIELDS,
    EXPLANATION_MODEL_TYPE_FIELDS,
    EXPLANATION_SCORE_MODEL_FIELDS,
    EXPLANATION_SCORE_TYPE_FIELDS,
    EXPLANATION_TYPE_FIELDS,
    FEATURE_FIELDS,
    MODEL_FIELDS,
    RELEASE_FIELDS,
    SOURCE_FIELDS,
    SOURCE_SET_FIELDS,
    to_wire,
)
from features.models import Explanation, ExplanationScore, Feature
from features.selectors import EXPLANATION_VECTORS

# Neuronpedia's GET /api/feature blanks these (they are large and unused by its dashboard).
BLANKED_ON_FEATURE_GET = ("correlated_features_indices", "correlated_features_pearson", "correlated_features_l1")


def user_brief(user) -> dict | None:
    return {"id": user.pk, "name": user.get_username()} if user is not None else None


def user_name(user) -> dict | None:
    return {"name": user.get_username()} if user is not None else None


def model_wire(model) -> dict:
    return {"id": model.id, **to_wire(model, MODEL_FIELDS), "creatorId": model.creator_id}


def release_wire(release) -> dict:
    return {"name": release.name, **to_wire(release, RELEASE_FIELDS), "creatorId": release.creator_id}


def source_set_wire(source_set) -> dict:
    return {
        "modelId": source_set.model_id,
        "name": source_set.name,
        "releaseName": source_set.release_id,
        **to_wire(source_set, SOURCE_SET_FIELDS),
        "creatorId": source_set.creator_id,
    }


def source_wire(source, *, set_name: str) -> dict:
    return {
        "id": source.name,
        "modelId": source.model_id,
        "setName": set_name,
        **to_wire(source, SOURCE_FIELDS),
        "creatorId": source.creator_id,
        "importIncomplete": source.import_incomplete,
    }


def feature_key(feature) -> dict:
    """Neuronpedia's (modelId, layer, index) triple; index is a string there."""
    return {"modelId": feature.model_id, "layer": feature.source.name, "index": str(feature.index)}


def feature_wire(feature) -> dict:
    """The Neuron row. Needs feature.source and feature.source.source_set loaded."""
    return {
        **feature_key(feature),
        "sourceSetName": feature.source.source_set.name,
        "creatorId": feature.creator_id,
        **to_wire(feature, FEATURE_FIELDS),
    }


def activation_wire(activation, *, key: dict) -> dict:
    # Neuronpedia's client reads the source id as `source` on each activation (and explanation), not `layer`.
    return {**to_wire(activation, ACTIVATION_FIELDS), **key, "source": key["layer"], "creatorId": activation.creator_id}


def score_wire(score) -> dict:
    return {
        "id": score.id,
        "explanationId": score.explanation_id,
        "value": score.value,
        "explanationScoreTypeName": score.score_type_id,
        "explanationScoreModelName": score.score_model_id,
        "initiatedByUserId": score.initiated_by_id,
        "jsonDetails": score.json_details,
        "createdAt": score.created_at.isoformat(),
    }


def explanation_wire(explanation, *, key: dict) -> dict:
    """Needs `triggered_by` selected and `scores` prefetched (features/selectors.feature_dashboard)."""
    return {
        **to_wire(explanation, EXPLANATION_FIELDS),
        **key,
        "source": key["layer"],
        "authorId": explanation.author_id,
        "triggeredByUserId": explanation.triggered_by_id,
        "triggeredByUser": user_brief(explanation.triggered_by),
        "scores": [score_wire(s) for s in explanation.scores.all()],
    }


def comment_wire(comment, *, key: dict) -> dict:
    return {
        "id": comment.id,
        **key,
        "text": comment.text,
        "userId": comment.user_id,
        "user": user_name(comment.user),
        "createdAt": comment.created_at.isoformat(),
        "updatedAt": comment.updated_at.isoformat(),
    }


def list_item_wire(item, *, feature) -> dict:
    """A feature of a list with its note (list/get's `neurons` items, list/edit-feature's `item`)."""
    return {
        **feature_key(feature),
        "description": item.description,
        "addedAt": item.added_at.isoformat(),
        "userId": item.user_id,
    }


def list_wire(feature_list, *, url: str) -> dict:
    return {
        "id": feature_list.id,
        "name": feature_list.name,
        "description": feature_list.description,
        "defaultTestText": feature_list.default_test_text,
        "visibility": feature_list.visibility,
        "userId": feature_list.user_id,
        "createdAt": feature_list.created_at.isoformat(),
        "updatedAt": feature_list.updated_at.isoformat(),
        "url": url,
    }


def lookup_types_wire(*, types, models, score_types, score_models) -> dict:
    return {
        "explanationTypes": [to_wire(t, EXPLANATION_TYPE_FIELDS) for t in types],
        "explanationModels": [to_wire(t, EXPLANATION_MODEL_TYPE_FIELDS) for t in models],
        "explanationScoreTypes": [to_wire(t, EXPLANATION_SCORE_TYPE_FIELDS) for t in score_types],
        "explanationScoreModelTypes": [to_wire(t, EXPLANATION_SCORE_MODEL_FIELDS) for t in score_models],
    }


# --- batch helpers: a constant number of queries for any number of features ---


def _explanations_query():
    scores = ExplanationScore.objects.order_by("-created_at")
    return (
        Explanation.objects.defer(*EXPLANATION_VECTORS)
        .select_related("triggered_by")
        .prefetch_related(Prefetch("scores", queryset=scores))
        .order_by(F("score_v2").desc(nulls_last=True), "-score_v1", "created_at")
    )


def best_first(explanations) -> list:
    """scoreV2 then scoreV1, descending, unscored (null scoreV2) last — Postgres would put NULLs first."""
    return sorted(explanations, key=lambda e: (e.score_v2 is None, -(e.score_v2 or 0.0), -e.score_v1))


def explanations_by_feature(features: list[Feature]) -> dict[int, list]:
    """Explanations of already-authorized features, best first (two queries)."""
    out: dict[int, list] = {f.pk: [] for f in features}
    if features:
        for explanation in _explanations_query().filter(feature__in=features):
            out[explanation.feature_id].append(explanation)
    return out


def feature_summary_wire(feature, *, explanations: list) -> dict:
    key = feature_key(feature)
    return {**feature_wire(feature), "explanations": [explanation_wire(e, key=key) for e in explanations]}
