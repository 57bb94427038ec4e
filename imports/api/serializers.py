"""Input/output serializers of the upload API, with Neuronpedia's limits (reference §2)."""

from rest_framework import serializers as s

from features.api.inputs import INT32_MAX


def _token():
    return s.CharField(allow_blank=True, trim_whitespace=False, max_length=1000)


class LogitIn(s.Serializer):
    token = _token()
    value = s.FloatField()


class UploadActivationIn(s.Serializer):
    tokens = s.ListField(child=_token(), min_length=1, max_length=1024)
    values = s.ListField(child=s.FloatField(), min_length=1, max_length=1024)
    quantileMax = s.FloatField(required=False, allow_null=True)
    quantileMin = s.FloatField(required=False, allow_null=True)
    quantileFraction = s.FloatField(required=False, allow_null=True)

    def validate(self, attrs):
        if len(attrs["tokens"]) != len(attrs["values"]):
            raise s.ValidationError({"values": "must have one value per token."})
        return attrs


class UploadExplanationIn(s.Serializer):
    text = s.CharField(max_length=512)
    # Neuronpedia's client sends null for an explanation made without a method or model
    methodName = s.CharField(required=False, allow_null=True, max_length=128)
    modelName = s.CharField(required=False, allow_null=True, max_length=255)


class UploadFeatureIn(s.Serializer):
    index = s.IntegerField(min_value=0, max_value=10_000_000)
    density = s.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    # null: what Neuronpedia's client sends for a feature without logits (or density)
    topLogits = s.ListField(child=LogitIn(), required=False, allow_null=True, max_length=20)
    bottomLogits = s.ListField(child=LogitIn(), required=False, allow_null=True, max_length=20)
    explanations = s.ListField(child=UploadExplanationIn(), required=False, max_length=16)
    activations = s.ListField(child=UploadActivationIn(), min_length=1, max_length=256)


class FeatureUploadBatchIn(s.Serializer):
    modelId = s.CharField(max_length=128)
    source = s.CharField(max_length=255)
    features = s.ListField(child=UploadFeatureIn(), min_length=1, max_length=128)


class ActivationUploadBatchIn(s.Serializer):
    modelId = s.CharField(max_length=128)
    source = s.CharField(max_length=255)
    index = s.IntegerField(min_value=0, max_value=INT32_MAX)  # features.index is an int4 column
    activations = s.ListField(child=UploadActivationIn(), min_length=1, max_length=256)


class VectorNewIn(s.Serializer):
    modelId = s.CharField(max_length=128)
    layerNumber = s.IntegerField(min_value=0, max_value=INT32_MAX)
    hookType = s.ChoiceField(choices=["hook_resid_pre", "hook_resid_post"])
    vector = s.ListField(child=s.FloatField(), min_length=1, max_length=24576)
    vectorDefaultSteerStrength = s.FloatField(min_value=-300, max_value=300, default=10)
    vectorLabel = s.CharField(max_length=255)


class VectorKeyIn(s.Serializer):
    modelId = s.CharField(max_length=128)
    source = s.CharField(max_length=255)
    index = s.IntegerField(min_value=0, max_value=INT32_MAX)


class UploadCountsOut(s.Serializer):
    message = s.CharField()
    features = s.IntegerField()
    activations = s.IntegerField()
    explanations = s.IntegerField()


class MessageOut(s.Serializer):
    message = s.CharField()


class VectorOut(s.Serializer):
    modelId = s.CharField()
    layer = s.CharField()
    source = s.CharField()
    index = s.IntegerField()
    label = s.CharField()
    vectorLabel = s.CharField()
    hookName = s.CharField()
    vector = s.ListField(child=s.FloatField())
    values = s.ListField(child=s.FloatField())
    defaultSteerStrength = s.FloatField()
    vectorDefaultSteerStrength = s.FloatField()
    createdAt = s.DateTimeField()


class VectorNewOut(s.Serializer):
    message = s.CharField()
    url = s.CharField()
    vector = VectorOut()


class VectorGetOut(s.Serializer):
    vector = VectorOut()


class VectorListOut(s.Serializer):
    vectors = VectorOut(many=True)
