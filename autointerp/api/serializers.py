"""Input and output serializers of the autointerp API (Neuronpedia's field names)."""

from rest_framework import serializers

from autointerp.selectors import MAX_OFFSET
from features.api.inputs import INT32_MAX

EXPLAIN_TYPES = ["oai_token-act-pair", "np_max-act", "np_max-act-logits", "eleuther_acts_top20"]


class FeatureKeyIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    layer = serializers.CharField(max_length=255, help_text="Source id, e.g. `6-res-jb`.")
    index = serializers.IntegerField(min_value=-INT32_MAX, max_value=INT32_MAX)


class GenerateIn(FeatureKeyIn):
    explanationType = serializers.ChoiceField(choices=EXPLAIN_TYPES, default="np_max-act")
    explanationModelName = serializers.CharField(
        max_length=255,
        required=False,
        help_text="Model name sent to the endpoint: the type's default when absent; one the site's endpoint serves "
        "(a 400 names them), or any model of your provider once you stored its key.",
    )


class GenerateBatchIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    layer = serializers.CharField(max_length=255)
    indexes = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=INT32_MAX), required=False, max_length=100000
    )
    explanationType = serializers.ChoiceField(choices=EXPLAIN_TYPES, default="np_max-act")
    explanationModelName = serializers.CharField(max_length=255, required=False)


class NewIn(FeatureKeyIn):
    text = serializers.CharField(max_length=512)


class ScoreIn(serializers.Serializer):
    explanationId = serializers.CharField(max_length=64)
    scorerType = serializers.CharField(
        max_length=64,
        help_text="eleuther_recall (detection), eleuther_fuzz (fuzzing), eleuther_embedding, oai_simulation; "
        "aliases detection, fuzz, embedding, simulation.",
    )
    scorerModel = serializers.CharField(max_length=255, required=False)


class SearchAllIn(serializers.Serializer):
    query = serializers.CharField(min_length=3, max_length=1000)
    offset = serializers.IntegerField(min_value=0, max_value=MAX_OFFSET, default=0)


class SearchIn(SearchAllIn):
    modelId = serializers.CharField(max_length=128)
    layers = serializers.ListField(child=serializers.CharField(max_length=255), min_length=1, max_length=200)


class SearchModelIn(SearchAllIn):
    modelId = serializers.CharField(max_length=128)


class SearchReleaseIn(SearchAllIn):
    releaseName = serializers.CharField(max_length=255)


class UmapIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    layers = serializers.ListField(child=serializers.CharField(max_length=255), min_length=1, max_length=200)


class UmapGenerateIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    layer = serializers.CharField(max_length=255)
    input = serializers.ChoiceField(choices=["auto", "decoder", "explanations"], default="auto")


# --- outputs (documentation of the shapes the views build) ---


class ErrorOut(serializers.Serializer):
    message = serializers.CharField()


class ScoreOut(serializers.Serializer):
    id = serializers.CharField()
    explanationId = serializers.CharField()
    value = serializers.FloatField()
    explanationScoreTypeName = serializers.CharField()
    explanationScoreModelName = serializers.CharField()
    initiatedByUserId = serializers.IntegerField(allow_null=True)
    jsonDetails = serializers.CharField(help_text="JSON: {summary, samples[...]} with per-example breakdown.")
    createdAt = serializers.CharField()


class ExplanationOut(serializers.Serializer):
    id = serializers.CharField()
    modelId = serializers.CharField()
    layer = serializers.CharField()
    index = serializers.CharField()
    description = serializers.CharField()
    typeName = serializers.CharField(allow_null=True)
    explanationModelName = serializers.CharField(allow_null=True)
    scoreV1 = serializers.FloatField()
    scoreV2 = serializers.FloatField(allow_null=True)
    scores = ScoreOut(many=True)


class ExplanationWrapOut(serializers.Serializer):
    explanation = ExplanationOut()


class ScoreWrapOut(serializers.Serializer):
    score = ScoreOut()


class SearchResultOut(serializers.Serializer):
    modelId = serializers.CharField()
    layer = serializers.CharField()
    index = serializers.CharField()
    description = serializers.CharField()
    explanationModelName = serializers.CharField(allow_null=True)
    typeName = serializers.CharField(allow_null=True)
    cosine_similarity = serializers.FloatField()
    neuron = serializers.DictField(help_text="The feature with up to 3 top activations.")


class SearchOut(serializers.Serializer):
    request = serializers.DictField()
    results = SearchResultOut(many=True)
    resultsCount = serializers.IntegerField()
    hasMore = serializers.BooleanField()
    nextOffset = serializers.IntegerField(allow_null=True)


class JobStartedOut(serializers.Serializer):
    jobId = serializers.IntegerField()
    status = serializers.CharField()


class UmapPointOut(serializers.Serializer):
    id = serializers.CharField()
    layer = serializers.CharField()
    index = serializers.CharField()
    description = serializers.CharField()
    umap_cluster = serializers.IntegerField(allow_null=True)
    umap_x = serializers.FloatField()
    umap_y = serializers.FloatField()
    umap_log_feature_sparsity = serializers.FloatField(allow_null=True)
