"""API of the seed systems: composite passage retrieval (POST /api/retrieve) and feature interventions on a toy
model (POST /api/intervene). Errors are `{"message"}`: 400 naming the field, 404 for unknown or PRIVATE-for-others.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from features.api.base import ApiView, validated
from features.api.common import feature_or_404, source_or_404
from features.api.outputs import ErrorOut
from retrieval import selectors

TAGS = ["seed systems"]
MAX_TERMS = 32


class TermIn(serializers.Serializer):
    index = serializers.IntegerField(min_value=0, max_value=2**31 - 1)
    weight = serializers.FloatField(default=1.0, min_value=1e-6, max_value=1e6)


class RetrieveIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    source = serializers.CharField(max_length=255)
    positive = TermIn(
        many=True,
        allow_empty=False,
        max_length=MAX_TERMS,
        help_text="Features the passages should be strong on: [{index, weight}] (weight default 1).",
    )
    negative = TermIn(
        many=True,
        required=False,
        default=list,
        max_length=MAX_TERMS,
        help_text="Features the passages should not be on; their weighted codes are subtracted.",
    )
    k = serializers.IntegerField(default=10, min_value=1, max_value=100)

    def validate(self, data):
        seen = {}
        for field in ("positive", "negative"):
            for term in data.get(field, []):
                if term["index"] in seen:
                    raise ValidationError(
                        {field: f"feature {term['index']} appears more than once (already in {seen[term['index']]})."}
                    )
                seen[term["index"]] = field
        return data


class ContributionOut(serializers.Serializer):
    index = serializers.IntegerField()
    weight = serializers.FloatField()
    sign = serializers.ChoiceField(choices=["positive", "negative"])
    value = serializers.FloatField(help_text="The passage's code for the feature (0 when inactive).")
    max = serializers.FloatField(allow_null=True, help_text="The feature's largest code over the source's passages.")
    contribution = serializers.FloatField(help_text="±weight·value/max")


class PassageOut(serializers.Serializer):
    rank = serializers.IntegerField()
    passageId = serializers.IntegerField()
    dataIndex = serializers.IntegerField()
    dataSource = serializers.CharField()
    genre = serializers.CharField()
    text = serializers.CharField()
    planted = serializers.BooleanField()
    score = serializers.FloatField()
    contributions = ContributionOut(many=True)


class RetrieveOut(serializers.Serializer):
    modelId = serializers.CharField()
    source = serializers.CharField()
    k = serializers.IntegerField()
    nPassages = serializers.IntegerField()
    scoring = serializers.CharField()
    results = PassageOut(many=True)


SCORING = "sum over positive features of weight·value/max minus the same over negative features"


class RetrieveView(ApiView):
    @extend_schema(
        operation_id="retrieve",
        tags=TAGS,
        summary="Composite retrieval: passages strong on some features and not on others",
        description=(
            "Ranks the passages of a source (a passage SAE over sentence embeddings, or a language-model SAE "
            "whose per-passage code is each feature's max over the passage's tokens) by "
            "Σ_positive weight·value/max − Σ_negative weight·value/max, where max is the feature's largest code "
            "over the source's passages. Candidates fire on at least one positive feature."
        ),
        request=RetrieveIn,
        responses={200: RetrieveOut, 400: ErrorOut, 404: ErrorOut},
    )
    def post(self, request):
        data = validated(RetrieveIn, request.data)
        source = source_or_404(model_id=data["modelId"], source_id=data["source"], user=request.user)
        n = selectors.passage_count(source=source)
        if n == 0:
            raise ValidationError(
                {
                    "source": f"{source.model_id}/{source.name} has no passages "
                    "(build it with build_memory_source or passage_codes)."
                }
            )
        results = selectors.retrieve(
            source=source,
            positive=[selectors.Term(t["index"], t["weight"]) for t in data["positive"]],
            negative=[selectors.Term(t["index"], t["weight"]) for t in data["negative"]],
            k=data["k"],
        )
        return Response(
            {
                "modelId": source.model_id,
                "source": source.name,
                "k": data["k"],
                "nPassages": n,
                "scoring": SCORING,
                "results": results,
            }
        )


class GenreSpreadView(ApiView):
    @extend_schema(
        operation_id="genre_spread",
        tags=TAGS,
        summary="How a passage feature's passages spread over genres",
        request=None,
        responses={
            200: OpenApiResponse(description="{rows: [{genre, passages, firing, share, base, lift, top}], ...}"),
            404: ErrorOut,
        },
    )
    def get(self, request, model_id: str, source_id: str, index: str):
        feature = feature_or_404(model_id=model_id, source_id=source_id, index=int(index), user=request.user)
        spread = selectors.genre_spread(feature=feature)
        if spread is None:
            return Response({"message": f"{model_id}/{source_id} has no passages."}, status=404)
        return Response({"modelId": model_id, "source": source_id, "index": feature.index, **spread})


# ---- interventions on toy models (seed 003) ------------------------------------------------------------------


class InterveneIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    source = serializers.CharField(max_length=255)
    index = serializers.IntegerField(min_value=0, max_value=2**31 - 1)
    prompt = serializers.CharField(max_length=2000, help_text="Symbols separated by spaces, e.g. 'A B C D A B'.")
    positions = serializers.ListField(
        child=serializers.IntegerField(min_value=0),
        allow_empty=False,
        max_length=512,
        help_text="Token positions to edit; 0 is the BOS the prompt gets.",
    )
    mode = serializers.ChoiceField(choices=["clamp", "ablate"])
    value = serializers.FloatField(default=0.0, help_text="The feature's value at those positions (clamp).")
    topK = serializers.IntegerField(default=5, min_value=1, max_value=20)
    hallucination = serializers.BooleanField(default=True, help_text="Also run the hallucination check.")

    def validate(self, data):
        if data["mode"] == "clamp" and "value" not in self.initial_data:
            raise ValidationError({"value": "is required when mode is clamp."})
        return data


class InterveneOut(serializers.Serializer):
    tokens = serializers.ListField(child=serializers.CharField())
    positions = serializers.ListField(
        child=serializers.DictField(),
        help_text=(
            "[{position, token, featureValue, intervened, before: [{token, prob}], after: [{token, prob}], changed}]"
        ),
    )
    hallucination = serializers.DictField(
        required=False,
        help_text=(
            "{baseline, intervened: {wrongTokens, tokens, tokenErrorRate, sequencesWithError, sequences, "
            "sequenceErrorRate}, settings}"
        ),
    )


def intervene_run(*, user, data: dict) -> dict:
    """Shared by the API and the page: resolve the feature (404s), then call the model's worker."""
    from retrieval.services import intervene_call

    feature = feature_or_404(model_id=data["modelId"], source_id=data["source"], index=data["index"], user=user)
    return intervene_call(
        source=feature.source,
        index=feature.index,
        prompt=data["prompt"],
        positions=data["positions"],
        mode=data["mode"],
        value=data["value"],
        top_k=data["topK"],
        hallucination=data["hallucination"],
    )


class InterveneView(ApiView):
    throttle_scope = "steer"

    @extend_schema(
        operation_id="intervene",
        tags=TAGS,
        summary="Clamp or ablate a feature at chosen positions and compare next-token predictions",
        description=(
            "Runs on the model's inference worker. At each chosen position the SAE code z of the hook activation x "
            "is edited (feature set to `value`, or 0 for ablate) and x ← x + decode(z') − decode(z), keeping the "
            "SAE's error term. Returns top-k next-token predictions before/after at every position and, for toy "
            "cyclic models, a hallucination check: how often greedy continuations leave the cycle without and "
            "with the edit applied at every continuation position."
        ),
        request=InterveneIn,
        responses={200: InterveneOut, 400: ErrorOut, 404: ErrorOut, 503: ErrorOut, 504: ErrorOut},
    )
    def post(self, request):
        from inference.services import InferenceError

        data = validated(InterveneIn, request.data)
        try:
            return Response(intervene_run(user=request.user, data=data))
        except InferenceError as exc:
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
            return Response({"message": exc.message}, status=exc.status, headers=headers)
