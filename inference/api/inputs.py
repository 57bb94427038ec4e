"""Request bodies of the live-inference routes, under Neuronpedia's names (shared/reference/neuronpedia.md §2).

Limits follow Neuronpedia's webapp (§8): prompts ≤ 2,048 chars, n_tokens ≤ 256, strengths ±300,
strength_multiplier ≤ 10, temperature 0..2, freq_penalty −2..2, seed ±1e8.
"""

from rest_framework import serializers

from features.api.base import json_type
from features.api.inputs import INT32_MAX

PROMPT_MAX_CHARS = 2048
ACTIVATION_TEXT_MAX_CHARS = 4096
TOPK_TEXT_MAX_CHARS = 1700
MAX_TEXTS = 8
MAX_SOURCE_TEXTS = 4
N_TOKENS_MAX = 256
STRENGTH_MAX = 300
SEED_MAX = 100_000_000
STEER_METHODS = ("SIMPLE_ADDITIVE", "ORTHOGONAL_DECOMP", "PROJECTION_CAP")

# Legacy/alternative spellings accepted on input → the canonical field name.
ALIASES = {
    "nTokens": "n_tokens",
    "n_completion_tokens": "n_tokens",
    "nCompletionTokens": "n_tokens",
    "freqPenalty": "freq_penalty",
    "strengthMultiplier": "strength_multiplier",
    "steerMethod": "steer_method",
    "steerSpecialTokens": "steer_special_tokens",
    "source_set": "sourceSet",
    "selected_sources": "selectedLayers",
    "selectedSources": "selectedLayers",
    "sort_by_token_indexes": "sortIndexes",
    "sortByTokenIndexes": "sortIndexes",
    "ignore_bos": "ignoreBos",
    "num_results": "numResults",
    "density_threshold": "densityThreshold",
    "prepend_bos": "prependBos",
    "custom_text": "customText",
    "model_id": "modelId",
    "steer_output_id": "steerOutputId",
}


def canonical(data) -> dict:
    if not isinstance(data, dict):
        raise serializers.ValidationError({"body": f"must be a JSON object, not {json_type(data)}."})
    out = dict(data)
    for alias, name in ALIASES.items():
        if alias in out and name not in out:
            out[name] = out.pop(alias)
    return out


class TextOrTexts(serializers.JSONField):
    """A string or a non-empty list of strings (Neuronpedia's `customText: string | string[]`)."""

    def __init__(self, *, max_chars: int, max_items: int, **kwargs):
        self.max_chars, self.max_items = max_chars, max_items
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        texts = [data] if isinstance(data, str) else data
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise serializers.ValidationError("must be a string or a non-empty list of strings")
        if len(texts) > self.max_items:
            raise serializers.ValidationError(f"at most {self.max_items} texts")
        for t in texts:
            if not t.strip():
                raise serializers.ValidationError("must not be empty")
            if len(t) > self.max_chars:
                raise serializers.ValidationError(f"too long ({len(t)} chars; the limit is {self.max_chars})")
        return {"texts": texts, "batch": not isinstance(data, str)}


class FeatureRefIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    source = serializers.CharField(max_length=255, required=False)
    layer = serializers.CharField(max_length=255, required=False, help_text="Legacy name of `source`.")
    index = serializers.IntegerField(min_value=-(2**31), max_value=2**31 - 1)

    def validate(self, attrs):
        attrs["source"] = attrs.get("source") or attrs.get("layer")
        if not attrs["source"]:
            raise serializers.ValidationError({"source": "This field is required."})
        return attrs


class ActivationNewIn(serializers.Serializer):
    feature = FeatureRefIn(required=False)
    neuron = FeatureRefIn(required=False, help_text="Legacy: {modelId, layer, index}.")
    customText = TextOrTexts(max_chars=ACTIVATION_TEXT_MAX_CHARS, max_items=MAX_TEXTS)
    ignoreBos = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        attrs["feature"] = attrs.get("feature") or attrs.get("neuron")
        if not attrs["feature"]:
            raise serializers.ValidationError({"feature": "This field is required."})
        return attrs


class ActivationSourceIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    source = serializers.CharField(max_length=255)
    customText = TextOrTexts(max_chars=ACTIVATION_TEXT_MAX_CHARS, max_items=MAX_SOURCE_TEXTS)


class SearchAllInferenceIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    sourceSet = serializers.CharField(max_length=255)
    text = TextOrTexts(max_chars=ACTIVATION_TEXT_MAX_CHARS, max_items=MAX_SOURCE_TEXTS)
    selectedLayers = serializers.ListField(child=serializers.CharField(max_length=255), required=False, default=list)
    # token positions, stored in SavedSearch's integer array: bounded so a huge one is a 400, not a DataError
    sortIndexes = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=INT32_MAX),
        required=False, default=list, max_length=ACTIVATION_TEXT_MAX_CHARS,
    )  # fmt: skip
    ignoreBos = serializers.BooleanField(required=False, default=True)
    densityThreshold = serializers.FloatField(required=False, default=-1)
    numResults = serializers.IntegerField(min_value=1, max_value=100, required=False, default=50)

    def validate_densityThreshold(self, value):
        if value not in (-1, 0) and not 0 < value < 1:
            raise serializers.ValidationError("must be -1 or 0 (off), or between 0 and 1")
        return value


class TopkByTokenIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=50)
    source = serializers.CharField(max_length=50)
    text = TextOrTexts(max_chars=TOPK_TEXT_MAX_CHARS, max_items=MAX_SOURCE_TEXTS)
    numResults = serializers.IntegerField(min_value=1, max_value=20, required=False, default=10)
    ignoreBos = serializers.BooleanField(required=False, default=True)
    densityThreshold = serializers.FloatField(required=False, default=0.01)

    def validate_densityThreshold(self, value):
        # Neuronpedia's client sends 0.0 by default: no feature is dropped (as with -1)
        if value not in (-1, 0) and not 0 < value <= 1:
            raise serializers.ValidationError("must be -1 or 0 (off), or in (0, 1]")
        return value


class TokenizeIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    prompt = serializers.CharField(max_length=ACTIVATION_TEXT_MAX_CHARS, trim_whitespace=False)
    prependBos = serializers.BooleanField(required=False, default=True)


class CossimIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    source = serializers.CharField(max_length=255)
    index = serializers.IntegerField(min_value=0, max_value=2**31 - 1)
    targetModelId = serializers.CharField(max_length=128, required=False)
    targetSourceId = serializers.CharField(max_length=255, required=False)
    numResults = serializers.IntegerField(min_value=1, max_value=128, required=False, default=10)


class SteerFeatureIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    layer = serializers.CharField(max_length=255, required=False, help_text="Source id.")
    source = serializers.CharField(max_length=255, required=False, help_text="Alias of `layer`.")
    index = serializers.IntegerField(min_value=-(2**31), max_value=2**31 - 1)
    strength = serializers.FloatField(min_value=-STRENGTH_MAX, max_value=STRENGTH_MAX)

    def validate(self, attrs):
        attrs["layer"] = attrs.get("layer") or attrs.get("source")
        if not attrs["layer"]:
            raise serializers.ValidationError({"layer": "This field is required."})
        return attrs


class SteerSettingsIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    features = SteerFeatureIn(many=True, allow_empty=False, max_length=32)
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False, default=0.5)
    n_tokens = serializers.IntegerField(min_value=1, max_value=N_TOKENS_MAX, required=False, default=48)
    freq_penalty = serializers.FloatField(min_value=-2, max_value=2, required=False, default=0.0)
    seed = serializers.IntegerField(min_value=-SEED_MAX, max_value=SEED_MAX, required=False, default=16)
    strength_multiplier = serializers.FloatField(min_value=0, max_value=10, required=False, default=1.0)
    steer_method = serializers.ChoiceField(choices=STEER_METHODS, required=False, default="SIMPLE_ADDITIVE")
    stream = serializers.BooleanField(required=False, default=False)


class SteerIn(SteerSettingsIn):
    prompt = serializers.CharField(max_length=PROMPT_MAX_CHARS, trim_whitespace=False)


class ChatMessageIn(serializers.Serializer):
    role = serializers.ChoiceField(choices=("user", "assistant", "system", "model", "developer"))
    content = serializers.CharField(max_length=PROMPT_MAX_CHARS, allow_blank=True, trim_whitespace=False)


class SteerChatIn(SteerSettingsIn):
    defaultChatMessages = ChatMessageIn(many=True, allow_empty=False, max_length=64)
    steeredChatMessages = ChatMessageIn(many=True, allow_empty=False, max_length=64)
    steer_special_tokens = serializers.BooleanField()

    def validate(self, attrs):
        for name in ("defaultChatMessages", "steeredChatMessages"):
            total = sum(len(m["content"]) for m in attrs[name])
            if total > PROMPT_MAX_CHARS:
                raise serializers.ValidationError({name: f"too long ({total} chars; the limit is {PROMPT_MAX_CHARS})"})
            for m in attrs[name]:
                if m["role"] == "model":  # Gemma's name for the assistant turn
                    m["role"] = "assistant"
        return attrs


class SteerLoadIn(serializers.Serializer):
    steerOutputId = serializers.CharField(max_length=64)
