"""Output serializers: they document the response shapes for drf-spectacular.

The field lists come from the same maps in features/fields.py that features/api/presenters.py uses, so
the schema cannot drift from the responses (tests/features/test_openapi.py compares them too).
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models as dj
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from features import models as m
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
)


def _drf_field(model_field, nullable: bool | None = None) -> serializers.Field:
    """A read-only DRF field describing how a model field appears on the wire."""
    if nullable is None:
        nullable = bool(getattr(model_field, "null", False))
    if isinstance(model_field, ArrayField):
        return serializers.ListField(child=_drf_field(model_field.base_field), read_only=True)
    if isinstance(model_field, dj.ForeignKey):
        return _drf_field(model_field.target_field, nullable)
    for django_type, drf_type in (
        (dj.BooleanField, serializers.BooleanField),
        (dj.FloatField, serializers.FloatField),
        (dj.IntegerField, serializers.IntegerField),  # includes BigIntegerField
        (dj.DateTimeField, serializers.DateTimeField),
        (dj.JSONField, serializers.JSONField),
    ):
        if isinstance(model_field, django_type):
            return drf_type(read_only=True, allow_null=nullable)
    return serializers.CharField(read_only=True, allow_null=nullable)


def wire_fields(model, field_map: dict[str, str]) -> dict[str, serializers.Field]:
    # get_field also resolves attnames such as "type_id" to their ForeignKey
    return {wire: _drf_field(model._meta.get_field(attr)) for wire, attr in field_map.items()}


def make_serializer(name: str, *parts: dict, doc: str = "") -> type[serializers.Serializer]:
    """`name` is the schema component name; "Np" (Neuronpedia-shaped) keeps it apart from other apps' names."""
    attrs = {}
    for part in parts:
        attrs.update(part)
    attrs["__doc__"] = doc or name
    attrs["__module__"] = __name__
    return type(name, (serializers.Serializer,), attrs)


def _str(**kw):
    return serializers.CharField(read_only=True, **kw)


def _int(**kw):
    return serializers.IntegerField(read_only=True, **kw)


KEY_FIELDS = {
    "modelId": _str(),
    "layer": _str(help_text="Source id, e.g. `6-res-jb`."),
    "index": _str(help_text="Feature index, as a string like Neuronpedia's."),
}
# activations and explanations also carry the source id as `source` (what Neuronpedia's client reads there)
CHILD_KEY_FIELDS = {**KEY_FIELDS, "source": _str(help_text="The same as `layer`.")}

UserBriefOut = make_serializer("NpUserBrief", {"id": _int(), "name": _str()})
UserNameOut = make_serializer("NpUserName", {"name": _str()})

ModelOut = make_serializer(
    "NpModel", {"id": _str()}, wire_fields(m.Model, MODEL_FIELDS), {"creatorId": _int(allow_null=True)}
)
ReleaseOut = make_serializer(
    "NpRelease",
    {"name": _str()},
    wire_fields(m.SourceRelease, RELEASE_FIELDS),
    {"creatorId": _int(allow_null=True)},
)
SourceSetOut = make_serializer(
    "NpSourceSet",
    {"modelId": _str(), "name": _str(), "releaseName": _str(allow_null=True)},
    wire_fields(m.SourceSet, SOURCE_SET_FIELDS),
    {"creatorId": _int(allow_null=True)},
)
SourceOut = make_serializer(
    "NpSource",
    {"id": _str(help_text="Neuronpedia's source id, e.g. `6-res-jb`."), "modelId": _str(), "setName": _str()},
    wire_fields(m.Source, SOURCE_FIELDS),
    {
        "creatorId": _int(allow_null=True),
        "importIncomplete": serializers.BooleanField(
            help_text="True while some of the source's dataset files are not loaded (failed, waiting for their "
            "features, or not read yet): its features may lack activations or explanations that exist upstream."
        ),
    },
)
SourceSetWithSourcesOut = make_serializer(
    "NpSourceSetWithSources",
    SourceSetOut._declared_fields,
    {"sources": SourceOut(many=True, read_only=True)},
)
SourceSetWithSourcesAndModelOut = make_serializer(
    "NpSourceSetWithSourcesAndModel",
    SourceSetWithSourcesOut._declared_fields,
    {"model": ModelOut(read_only=True)},
)
ReleaseWithSourceSetsOut = make_serializer(
    "NpReleaseWithSourceSets",
    ReleaseOut._declared_fields,
    {"sourceSets": SourceSetWithSourcesOut(many=True, read_only=True)},
)
ModelWithSourceSetsOut = make_serializer(
    "NpModelWithSourceSets",
    ModelOut._declared_fields,
    {"sourceSets": SourceSetWithSourcesOut(many=True, read_only=True)},
)
SourceDetailOut = make_serializer(
    "NpSourceDetail",
    SourceOut._declared_fields,
    {"sourceSet": SourceSetOut(read_only=True), "model": ModelOut(read_only=True)},
)

FeatureOut = make_serializer(
    "NpFeature",
    KEY_FIELDS,
    {"sourceSetName": _str(), "creatorId": _int(allow_null=True)},
    wire_fields(m.Feature, FEATURE_FIELDS),
    doc="A feature (Neuronpedia's Neuron row) under its wire names.",
)
ActivationOut = make_serializer(
    "NpActivation",
    wire_fields(m.Activation, ACTIVATION_FIELDS),
    CHILD_KEY_FIELDS,
    {"creatorId": _int(allow_null=True)},
)
ExplanationScoreOut = make_serializer(
    "NpExplanationScore",
    {
        "id": _str(),
        "explanationId": _str(),
        "value": serializers.FloatField(read_only=True),
        "explanationScoreTypeName": _str(),
        "explanationScoreModelName": _str(),
        "initiatedByUserId": _int(allow_null=True),
        "jsonDetails": _str(),
        "createdAt": serializers.DateTimeField(read_only=True),
    },
)
ExplanationOut = make_serializer(
    "NpExplanation",
    wire_fields(m.Explanation, EXPLANATION_FIELDS),
    CHILD_KEY_FIELDS,
    {
        "authorId": _int(allow_null=True),
        "triggeredByUserId": _int(allow_null=True),
        "triggeredByUser": UserBriefOut(read_only=True, allow_null=True),
        "scores": ExplanationScoreOut(many=True, read_only=True),
    },
)
CommentOut = make_serializer(
    "NpComment",
    {"id": _str()},
    KEY_FIELDS,
    {
        "text": _str(),
        "userId": _int(),
        "user": UserNameOut(read_only=True),
        "createdAt": serializers.DateTimeField(read_only=True),
        "updatedAt": serializers.DateTimeField(read_only=True),
    },
)
ListOut = make_serializer(
    "NpList",
    {
        "id": _str(),
        "name": _str(),
        "description": _str(),
        "defaultTestText": _str(),
        "visibility": serializers.ChoiceField(choices=m.Visibility.choices, read_only=True),
        "userId": _int(),
        "createdAt": serializers.DateTimeField(read_only=True),
        "updatedAt": serializers.DateTimeField(read_only=True),
        "url": _str(help_text="Page of the list; share it to share the list."),
    },
)
FeatureListEntryOut = make_serializer(
    "NpFeatureListEntry",
    {
        "list": make_serializer("NpFeatureList", ListOut._declared_fields, {"user": UserNameOut(read_only=True)})(
            read_only=True
        ),
    },
)
FeatureDetailOut = make_serializer(
    "NpFeatureDetail",
    FeatureOut._declared_fields,
    {
        "model": ModelOut(read_only=True),
        "source": SourceOut(read_only=True),
        "sourceSet": SourceSetOut(read_only=True),
        "creator": UserNameOut(read_only=True, allow_null=True),
        "lists": FeatureListEntryOut(many=True, read_only=True),
        "comments": CommentOut(many=True, read_only=True),
        "activations": ActivationOut(many=True, read_only=True, help_text="Strongest first (maxValue desc)."),
        "explanations": ExplanationOut(many=True, read_only=True, help_text="Best first (scoreV2, scoreV1 desc)."),
    },
    doc="Everything the feature dashboard shows. `correlated_features_*` are always empty, as in Neuronpedia.",
)
FeatureSummaryOut = make_serializer(
    "NpFeatureSummary",
    FeatureOut._declared_fields,
    {"explanations": ExplanationOut(many=True, read_only=True)},
)
FeatureWithActivationsOut = make_serializer(
    "NpFeatureWithActivations",
    FeatureSummaryOut._declared_fields,
    {"activations": ActivationOut(many=True, read_only=True, help_text="Top `maxActsToReturn`, strongest first.")},
)


@extend_schema_field(FeatureWithActivationsOut(allow_null=True))
class FeatureWithActivationsOrNullOut(serializers.Field):
    """An item of POST /api/features' answer: null where the feature is unknown or not yours to read."""


ListItemNoteOut = make_serializer(  # presenters.list_item_wire
    "NpListItemNote",
    KEY_FIELDS,
    {"description": _str(), "addedAt": serializers.DateTimeField(read_only=True), "userId": _int(allow_null=True)},
)
ListItemOut = make_serializer(
    "NpListItem", ListItemNoteOut._declared_fields, {"neuron": FeatureSummaryOut(read_only=True)}
)
ListDetailOut = make_serializer(
    "NpListDetail",
    ListOut._declared_fields,
    {"user": UserBriefOut(read_only=True), "neurons": ListItemOut(many=True, read_only=True)},
)
ListItemEditedOut = make_serializer(
    "NpListItemEdited", ListOut._declared_fields, {"item": ListItemNoteOut(read_only=True)}
)
ListWithCountOut = make_serializer("NpListWithCount", ListOut._declared_fields, {"featureCount": _int()})
ListAddedOut = make_serializer(
    "NpListAdded", ListOut._declared_fields, {"added": _int(help_text="Features newly added (others were there).")}
)
ListRemovedOut = make_serializer(
    "NpListRemoved", ListOut._declared_fields, {"removed": serializers.BooleanField(read_only=True)}
)
DeletedOut = make_serializer("NpDeleted", {"id": _str(), "deleted": serializers.BooleanField(read_only=True)})
BookmarkOut = make_serializer(
    "NpBookmark", KEY_FIELDS, {"userId": _int(), "createdAt": serializers.DateTimeField(read_only=True)}
)
BookmarkDeletedOut = make_serializer(
    "NpBookmarkDeleted", KEY_FIELDS, {"deleted": serializers.BooleanField(read_only=True)}
)
BookmarkWithFeatureOut = make_serializer(
    "NpBookmarkWithFeature", BookmarkOut._declared_fields, {"neuron": FeatureSummaryOut(read_only=True)}
)

ExplanationTypeOut = make_serializer("NpExplanationType", wire_fields(m.ExplanationType, EXPLANATION_TYPE_FIELDS))
ExplanationModelTypeOut = make_serializer(
    "NpExplanationModelType", wire_fields(m.ExplanationModelType, EXPLANATION_MODEL_TYPE_FIELDS)
)
ExplanationScoreTypeOut = make_serializer(
    "NpExplanationScoreType", wire_fields(m.ExplanationScoreType, EXPLANATION_SCORE_TYPE_FIELDS)
)
ExplanationScoreModelOut = make_serializer(
    "NpExplanationScoreModel", wire_fields(m.ExplanationScoreModel, EXPLANATION_SCORE_MODEL_FIELDS)
)
GlobalOut = make_serializer(
    "NpGlobal",
    {
        "models": ModelOut(many=True, read_only=True),
        "explanationTypes": ExplanationTypeOut(many=True, read_only=True),
        "explanationModels": ExplanationModelTypeOut(many=True, read_only=True),
        "releases": ReleaseWithSourceSetsOut(many=True, read_only=True),
        "explanationScoreTypes": ExplanationScoreTypeOut(many=True, read_only=True),
        "explanationScoreModelTypes": ExplanationScoreModelOut(many=True, read_only=True),
    },
    doc="Bootstrap payload: everything listed (PUBLIC, or your own) on this instance.",
)

ErrorOut = make_serializer("NpError", {"message": _str()}, doc="Every error: a message and an HTTP status.")
