"""Response shapes of the live-inference routes (documentation for /api/schema/)."""

from rest_framework import serializers

from features.api.outputs import ErrorOut, make_serializer  # noqa: F401  (re-exported for the views)


def _s(**kw):
    return serializers.CharField(read_only=True, **kw)


def _f(**kw):
    return serializers.FloatField(read_only=True, **kw)


def _i(**kw):
    return serializers.IntegerField(read_only=True, **kw)


def _list(child, **kw):
    return serializers.ListField(child=child, read_only=True, **kw)


ActivationNewOut = make_serializer(
    "ActivationNewOut",
    {
        "tokens": _list(_s()),
        "tokensIsSpecial": _list(serializers.BooleanField()),
        "values": _list(_f()),
        "maxValue": _f(),
        "minValue": _f(),
        "maxValueTokenIndex": _i(),
        "modelId": _s(),
        "layer": _s(),
        "index": _s(),
        "creatorId": _s(allow_null=True),
        "dataSource": _s(),
        "dataIndex": _i(allow_null=True),
        "createdAt": _s(),
    },
    doc="Activation-shaped result; an array of these when customText is an array.",
)

ActivationSourceOut = make_serializer(
    "ActivationSourceOut",
    {
        "results": _list(
            serializers.DictField(), help_text="[{tokens, tokensIsSpecial, activeFeatures{idx: [[tokenIdx, value]]}}]"
        )
    },
)

SearchAllInferenceRowOut = make_serializer(
    "SearchAllInferenceRowOut",
    {
        "modelId": _s(),
        "layer": _s(),
        "index": _s(),
        "values": _list(_f()),
        "maxValue": _f(),
        "maxValueIndex": _i(),
        "sumValues": _f(),
        "neuron": serializers.DictField(read_only=True, allow_null=True),
    },
)
SearchAllInferenceOut = make_serializer(
    "SearchAllInferenceOut",
    {
        "tokens": _list(_s()),
        "result": SearchAllInferenceRowOut(many=True, read_only=True),
        "sortIndexes": _list(_i()),
        "counts": serializers.DictField(read_only=True),
        "results": _list(serializers.DictField(), required=False, help_text="Batch form (text is an array)."),
    },
)

TopkFeatureOut = make_serializer(
    "TopkFeatureOut",
    {"activationValue": _f(), "featureIndex": _i(), "feature": serializers.DictField(read_only=True, allow_null=True)},
)
TopkTokenOut = make_serializer(
    "TopkTokenOut",
    {
        "position": _i(),
        "token": _s(),
        "isSpecial": serializers.BooleanField(read_only=True),
        "topFeatures": TopkFeatureOut(many=True, read_only=True),
    },
)
TopkByTokenOut = make_serializer("TopkByTokenOut", {"source": _s(), "results": TopkTokenOut(many=True, read_only=True)})

TokenizeOut = make_serializer(
    "TokenizeOut",
    {"tokens": _list(_i()), "tokenStrings": _list(_s()), "prependBos": serializers.BooleanField(read_only=True)},
)

CossimOut = make_serializer(
    "CossimOut",
    {
        "feature": serializers.DictField(read_only=True),
        "topkDecoderCossimFeatures": _list(
            serializers.DictField(), help_text="[{feature{modelId, source, index}, cosineSimilarity}]"
        ),
    },
)

LogprobOut = make_serializer(
    "LogprobOut", {"token": _s(), "logprob": _f(), "topLogprobs": _list(serializers.DictField())}
)
SteerOut = make_serializer(
    "SteerOut",
    {
        "STEERED": _s(allow_null=True),
        "DEFAULT": _s(allow_null=True),
        "steeredLogProbs": LogprobOut(many=True, read_only=True),
        "defaultLogProbs": LogprobOut(many=True, read_only=True),
        "id": _s(),
        "shareUrl": _s(),
        "limit": _s(allow_null=True),
    },
    doc="With stream=true: text/event-stream, each `data:` frame the cumulative object.",
)
SteerChatPartOut = make_serializer(
    "SteerChatPartOut",
    {"raw": _s(), "chatTemplate": _list(serializers.DictField()), "logprobs": LogprobOut(many=True, read_only=True)},
)
SteerChatOut = make_serializer(
    "SteerChatOut",
    {
        "STEERED": SteerChatPartOut(read_only=True),
        "DEFAULT": SteerChatPartOut(read_only=True),
        "id": _s(),
        "shareUrl": _s(),
        "limit": _s(allow_null=True),
        "settings": serializers.DictField(read_only=True),
        "features": _list(serializers.DictField()),
    },
)
SteerLoadOut = make_serializer(
    "SteerLoadOut",
    {
        "STEERED": serializers.JSONField(read_only=True),
        "DEFAULT": serializers.JSONField(read_only=True),
        "id": _s(),
        "shareUrl": _s(),
        "chat": serializers.BooleanField(read_only=True),
        "settings": serializers.DictField(read_only=True),
        "inputText": serializers.JSONField(read_only=True),
        "features": _list(serializers.DictField()),
    },
)
