"""Input serializers: request bodies under Neuronpedia's names. Errors become 400 naming the field."""

from rest_framework import serializers

from features.models import Visibility
from features.services.catalog import MODEL_DISPLAY_NAME_MAX, SOURCE_SET_DESCRIPTION_MAX, URL_MAX
from features.services.comments import COMMENT_MAX_CHARS
from features.services.lists import LIST_NAME_MAX, LIST_TEXT_MAX

INT32_MAX = 2**31 - 1
MAX_BATCH = 100  # Neuronpedia's cap for /api/features and /api/list/add-features
MAX_ACTS_DEFAULT = 20
MAX_ACTS_CAP = 1000


class FeatureKeyIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    layer = serializers.CharField(max_length=255, help_text="Source id, e.g. `6-res-jb`.")
    # Indexes are non-negative (the importer refuses others); a negative one names no feature, so it is a 400.
    index = serializers.IntegerField(min_value=0, max_value=INT32_MAX)


class FeaturesBatchItemIn(FeatureKeyIn):
    maxActsToReturn = serializers.IntegerField(
        min_value=0,
        max_value=MAX_ACTS_CAP,
        required=False,
        help_text=f"How many top activations to return (default {MAX_ACTS_DEFAULT}).",
    )


class FeaturesOffsetIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    layer = serializers.CharField(max_length=255)
    # Postgres takes OFFSET as a bigint; past the int32 range of indexes every page is empty anyway.
    offset = serializers.IntegerField(min_value=0, max_value=INT32_MAX, default=0)


class ActivationGetIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    source = serializers.CharField(max_length=255, help_text="Source id, e.g. `6-res-jb`.")
    index = serializers.IntegerField(min_value=0, max_value=INT32_MAX, help_text="A number or a numeric string.")


class ListNewIn(serializers.Serializer):
    name = serializers.CharField(max_length=LIST_NAME_MAX)
    description = serializers.CharField(max_length=LIST_TEXT_MAX, allow_blank=True, default="")
    testText = serializers.CharField(max_length=LIST_TEXT_MAX, allow_blank=True, allow_null=True, required=False)
    visibility = serializers.ChoiceField(
        choices=Visibility.choices, required=False, help_text="memicos extra; default UNLISTED (shared by URL)."
    )


class ListFeatureIn(FeatureKeyIn):
    description = serializers.CharField(max_length=LIST_TEXT_MAX, allow_blank=True, required=False, default="")


class ListNewWithFeaturesIn(ListNewIn):
    features = ListFeatureIn(many=True, max_length=MAX_BATCH)


class ListIdIn(serializers.Serializer):
    listId = serializers.CharField(max_length=64)


class ListAddFeaturesIn(ListIdIn):
    featuresToAdd = ListFeatureIn(many=True, allow_empty=False, max_length=MAX_BATCH)


class ListRemoveIn(ListIdIn, FeatureKeyIn):
    pass


class ListEditFeatureIn(ListIdIn, FeatureKeyIn):
    description = serializers.CharField(max_length=LIST_TEXT_MAX, allow_blank=True)


class ListUpdateIn(ListIdIn):
    name = serializers.CharField(max_length=LIST_NAME_MAX, required=False)
    description = serializers.CharField(max_length=LIST_TEXT_MAX, allow_blank=True, required=False)
    defaultTestText = serializers.CharField(max_length=LIST_TEXT_MAX, allow_blank=True, allow_null=True, required=False)
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False)


class CommentNewIn(FeatureKeyIn):
    text = serializers.CharField(max_length=COMMENT_MAX_CHARS)


class CommentDeleteIn(serializers.Serializer):
    commentId = serializers.CharField(max_length=64)


class BookmarkIn(FeatureKeyIn):
    pass


class ModelGetIn(serializers.Serializer):
    id = serializers.CharField(max_length=128)


class ModelNewIn(serializers.Serializer):
    id = serializers.CharField(max_length=32, help_text="2–32 of a-z, 0-9, '-'; starts with a letter.")
    layers = serializers.IntegerField(min_value=1, max_value=127)
    # Neuronpedia's client sends null for a model made without a display name: the id is used then.
    displayName = serializers.CharField(
        max_length=MODEL_DISPLAY_NAME_MAX, allow_null=True, allow_blank=True, required=False, default=None
    )
    url = serializers.URLField(max_length=URL_MAX, allow_null=True, allow_blank=True, required=False, default=None)


class SourceSetNewIn(serializers.Serializer):
    name = serializers.CharField(max_length=64, help_text="1–64 of a-z, 0-9, '-'; sources are `<layer>-<name>`.")
    modelId = serializers.CharField(max_length=128)
    description = serializers.CharField(
        max_length=SOURCE_SET_DESCRIPTION_MAX, allow_null=True, allow_blank=True, required=False, default=None
    )
    url = serializers.URLField(max_length=URL_MAX, allow_null=True, allow_blank=True, required=False, default=None)
