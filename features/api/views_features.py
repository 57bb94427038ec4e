"""Feature reads: GET /api/feature/{modelId}/{layer}/{index}, POST /api/features, POST /api/features-offset,
POST /api/activation/get."""

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from features.api import outputs as out
from features.api.base import ApiView, validated
from features.api.common import feature_or_404, list_url, parse_index, source_or_404, with_source_sets
from features.api.inputs import (
    MAX_ACTS_CAP,
    MAX_ACTS_DEFAULT,
    MAX_BATCH,
    ActivationGetIn,
    FeaturesBatchItemIn,
    FeaturesOffsetIn,
)
from features.api.presenters import (
    BLANKED_ON_FEATURE_GET,
    activation_wire,
    best_first,
    comment_wire,
    explanation_wire,
    explanations_by_feature,
    feature_key,
    feature_summary_wire,
    feature_wire,
    list_wire,
    model_wire,
    source_set_wire,
    source_wire,
    user_name,
)
from features.selectors import (
    Dashboard,
    feature_dashboard,
    features_get_many,
    features_page,
    top_activations_by_feature,
)

ERRORS = {400: out.ErrorOut, 401: out.ErrorOut, 404: out.ErrorOut}


def feature_detail(request, board: Dashboard) -> dict:
    """The dashboard payload; three statements whatever the number of activations (feature_dashboard)."""
    feature = board.feature
    key = feature_key(feature)
    source = feature.source
    body = feature_wire(feature)
    for name in BLANKED_ON_FEATURE_GET:
        body[name] = []
    body.update(
        model=model_wire(feature.model),
        source=source_wire(source, set_name=source.source_set.name),
        sourceSet=source_set_wire(source.source_set),
        creator=user_name(feature.creator),
        lists=[
            {"list": {**list_wire(lst, url=list_url(request, lst.id)), "user": user_name(lst.user)}}
            for lst in board.lists
        ],
        comments=[comment_wire(c, key=key) for c in board.comments],
        activations=[activation_wire(a, key=key) for a in board.activations],
        explanations=[explanation_wire(e, key=key) for e in best_first(board.explanations)],
    )
    return body


class FeatureDetailView(ApiView):
    @extend_schema(
        operation_id="feature_get",
        tags=["features"],
        summary="A feature with everything its dashboard shows",
        description=(
            "Neuronpedia's `GET /api/feature/{modelId}/{layer}/{index}` (`layer` is the source id, e.g. "
            "`6-res-jb`). Activations strongest first; explanations by scoreV2, then scoreV1, descending. "
            "Unknown, or PRIVATE and not yours → 404; a non-integer index → 400."
        ),
        parameters=[
            OpenApiParameter("model_id", str, OpenApiParameter.PATH, description="modelId, e.g. `gpt2-small`"),
            OpenApiParameter("source_id", str, OpenApiParameter.PATH, description="layer (source id), e.g. `6-res-jb`"),
            OpenApiParameter("index", int, OpenApiParameter.PATH, description="feature index"),
        ],
        responses={200: out.FeatureDetailOut, **ERRORS},
    )
    def get(self, request, model_id: str, source_id: str, index: str):
        board = feature_or_404(
            model_id=model_id, source_id=source_id, index=parse_index(index), user=request.user, read=feature_dashboard
        )
        return Response(feature_detail(request, board))


class FeaturesBatchView(ApiView):
    @extend_schema(
        operation_id="features_batch",
        tags=["features"],
        summary="Many features at once",
        description=(
            f"Body: an array of at most {MAX_BATCH} `{{modelId, layer, index, maxActsToReturn?}}` "
            f"(default {MAX_ACTS_DEFAULT} activations each). The answer is an array in the order of the "
            "request; a feature that does not exist or that you may not read is `null` at its position."
        ),
        request=FeaturesBatchItemIn(many=True),
        responses={200: serializers.ListSerializer(child=out.FeatureWithActivationsOrNullOut()), **ERRORS},
    )
    def post(self, request):
        items = validated(FeaturesBatchItemIn, request.data, many=True, max_length=MAX_BATCH)
        keys = [(i["modelId"], i["layer"], i["index"]) for i in items]
        found = features_get_many(keys=keys, user=request.user)
        features = with_source_sets(list(found.values()))
        limits = [i.get("maxActsToReturn", MAX_ACTS_DEFAULT) for i in items]
        activations = top_activations_by_feature(feature_ids=[f.pk for f in features], limit=max(limits, default=0))
        explanations = explanations_by_feature(features)
        result = []
        for key, limit in zip(keys, limits, strict=True):
            feature = found.get(key)
            if feature is None:
                result.append(None)
                continue
            fkey = feature_key(feature)
            body = feature_summary_wire(feature, explanations=explanations[feature.pk])
            body["activations"] = [activation_wire(a, key=fkey) for a in activations[feature.pk][:limit]]
            result.append(body)
        return Response(result)


class FeaturesOffsetView(ApiView):
    @extend_schema(
        operation_id="features_offset",
        tags=["features"],
        summary="Page through a source's features",
        description=(
            "Features with `maxActApprox > 0` in index order, 25 per page starting at `offset` "
            "(Neuronpedia's source browser)."
        ),
        request=FeaturesOffsetIn,
        responses={200: out.FeatureSummaryOut(many=True), **ERRORS},
    )
    def post(self, request):
        data = validated(FeaturesOffsetIn, request.data)
        source = source_or_404(model_id=data["modelId"], source_id=data["layer"], user=request.user)
        page = features_page(source=source, offset=data["offset"])
        for feature in page:
            feature.source = source  # already loaded with its source set; saves a query per feature
        explanations = explanations_by_feature(page)
        return Response([feature_summary_wire(f, explanations=explanations[f.pk]) for f in page])


class ActivationGetView(ApiView):
    @extend_schema(
        operation_id="activation_get",
        tags=["features"],
        summary="A feature's stored activations",
        description=(
            "Neuronpedia's `POST /api/activation/get`: an array of the feature's activations (strongest first, "
            f"at most {MAX_ACTS_CAP}), as in `GET /api/feature`. Unknown, or PRIVATE and not yours, or no "
            "activations stored → 404 (as Neuronpedia answers)."
        ),
        request=ActivationGetIn,
        responses={200: out.ActivationOut(many=True), **ERRORS},
    )
    def post(self, request):
        data = validated(ActivationGetIn, request.data)
        feature = feature_or_404(
            model_id=data["modelId"], source_id=data["source"], index=data["index"], user=request.user
        )
        activations = top_activations_by_feature(feature_ids=[feature.pk], limit=MAX_ACTS_CAP)[feature.pk]
        if not activations:
            raise Http404(f"No activations stored for {data['modelId']}/{data['source']}/{data['index']}.")
        key = feature_key(feature)
        return Response([activation_wire(a, key=key) for a in activations])
