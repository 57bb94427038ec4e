"""Feature lists: /api/list/new|new-with-features|add-features|remove|edit-feature|update|delete|get|list."""

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from features.api import inputs as i
from features.api import outputs as out
from features.api.base import ApiView, AuthedApiView, validated
from features.api.common import feature_or_404, list_url, with_source_sets
from features.api.presenters import (
    explanations_by_feature,
    feature_summary_wire,
    list_item_wire,
    list_wire,
    user_brief,
)
from features.selectors import features_get_many, list_get, list_items, lists_with_counts
from features.services.lists import (
    list_add_features,
    list_create,
    list_delete,
    list_edit_feature,
    list_remove_feature,
    list_update,
)

AUTH_ERRORS = {400: out.ErrorOut, 401: out.ErrorOut, 403: out.ErrorOut, 404: out.ErrorOut}
TAGS = ["lists"]


def _resolve(items: list[dict], *, user) -> tuple[list, dict]:
    """Features named in a request → (features, {feature pk: description}); any unknown one → 404."""
    keys = [(x["modelId"], x["layer"], x["index"]) for x in items]
    found = features_get_many(keys=keys, user=user)
    missing = [k for k in keys if k not in found]
    if missing:
        model_id, layer, index = missing[0]
        raise Http404(f"Feature {model_id}/{layer}/{index} not found.")
    features, descriptions, seen = [], {}, set()
    for key, item in zip(keys, items, strict=True):
        feature = found[key]
        if feature.pk not in seen:
            seen.add(feature.pk)
            features.append(feature)
        descriptions[feature.pk] = item.get("description") or ""
    return features, descriptions


def _check_owner(request, list_id: str) -> None:
    """404 for a list the user may not read, 403 for one they may read but not change (before any other check)."""
    if list_get(list_id=list_id, user=request.user).user_id != request.user.pk:
        raise PermissionDenied("Only the owner of a list can change it.")


def _feature_of_own_list(request, data: dict):
    """The feature a body names, once the list is known to be the caller's (the list's 404/403 come first)."""
    _check_owner(request, data["listId"])
    return feature_or_404(model_id=data["modelId"], source_id=data["layer"], index=data["index"], user=request.user)


def _list_answer(request, list_id: str, **extra) -> Response:
    """The list as it is now, with what a write adds to the answer."""
    feature_list = list_get(list_id=list_id, user=request.user)
    return Response({**list_wire(feature_list, url=list_url(request, feature_list.id)), **extra})


def _create(request, data: dict):
    return list_create(
        user=request.user,
        name=data["name"],
        description=data.get("description", ""),
        default_test_text=data.get("testText") or "",
        **({"visibility": data["visibility"]} if "visibility" in data else {}),
    )


class ListNewView(AuthedApiView):
    @extend_schema(
        operation_id="list_new",
        tags=TAGS,
        summary="Create a list",
        description="Lists are UNLISTED by default: anyone with the returned `url` can read them.",
        request=i.ListNewIn,
        responses={200: out.ListOut, **AUTH_ERRORS},
    )
    def post(self, request):
        feature_list = _create(request, validated(i.ListNewIn, request.data))
        return Response(list_wire(feature_list, url=list_url(request, feature_list.id)))


class ListNewWithFeaturesView(AuthedApiView):
    @extend_schema(
        operation_id="list_new_with_features",
        tags=TAGS,
        summary="Create a list holding some features",
        description=f"At most {i.MAX_BATCH} features; an unknown feature → 404 and no list is created.",
        request=i.ListNewWithFeaturesIn,
        responses={200: out.ListAddedOut, **AUTH_ERRORS},
    )
    def post(self, request):
        data = validated(i.ListNewWithFeaturesIn, request.data)
        features, descriptions = _resolve(data["features"], user=request.user)
        with transaction.atomic():
            feature_list = _create(request, data)
            added = list_add_features(
                user=request.user, list_id=feature_list.id, features=features, descriptions=descriptions
            )
        feature_list.refresh_from_db()
        return Response({**list_wire(feature_list, url=list_url(request, feature_list.id)), "added": added})


class ListAddFeaturesView(AuthedApiView):
    @extend_schema(
        operation_id="list_add_features",
        tags=TAGS,
        summary="Add features to your list",
        description=(
            f"At most {i.MAX_BATCH} features; ones already in the list are kept as they are. Answers the items "
            "newly added, as Neuronpedia does (its client reads `modelId`, `layer`, `index` of each)."
        ),
        request=i.ListAddFeaturesIn,
        responses={200: out.ListItemNoteOut(many=True), **AUTH_ERRORS},
    )
    def post(self, request):
        data = validated(i.ListAddFeaturesIn, request.data)
        _check_owner(request, data["listId"])
        features, descriptions = _resolve(data["featuresToAdd"], user=request.user)
        feature_list = list_get(list_id=data["listId"], user=request.user)
        items = list_items(feature_list=feature_list, user=request.user)
        present = set(items.filter(feature__in=features).values_list("feature_id", flat=True))
        list_add_features(user=request.user, list_id=feature_list.id, features=features, descriptions=descriptions)
        added = items.filter(feature__in=[f for f in features if f.pk not in present])
        return Response([list_item_wire(item, feature=item.feature) for item in added])


class ListRemoveView(AuthedApiView):
    @extend_schema(
        operation_id="list_remove",
        tags=TAGS,
        summary="Remove a feature from your list",
        request=i.ListRemoveIn,
        responses={200: out.ListRemovedOut, **AUTH_ERRORS},
    )
    def post(self, request):
        data = validated(i.ListRemoveIn, request.data)
        feature = _feature_of_own_list(request, data)
        removed = list_remove_feature(user=request.user, list_id=data["listId"], feature=feature)
        return _list_answer(request, data["listId"], removed=removed)


class ListEditFeatureView(AuthedApiView):
    @extend_schema(
        operation_id="list_edit_feature",
        tags=TAGS,
        summary="Change the note on a feature of your list",
        description="A feature that is not in the list → 404.",
        request=i.ListEditFeatureIn,
        responses={200: out.ListItemEditedOut, **AUTH_ERRORS},
    )
    def post(self, request):
        data = validated(i.ListEditFeatureIn, request.data)
        feature = _feature_of_own_list(request, data)
        item = list_edit_feature(
            user=request.user, list_id=data["listId"], feature=feature, description=data["description"]
        )
        return _list_answer(request, data["listId"], item=list_item_wire(item, feature=feature))


class ListUpdateView(AuthedApiView):
    @extend_schema(
        operation_id="list_update",
        tags=TAGS,
        summary="Rename or describe your list",
        description="Fields left out stay as they are.",
        request=i.ListUpdateIn,
        responses={200: out.ListOut, **AUTH_ERRORS},
    )
    def post(self, request):
        data = validated(i.ListUpdateIn, request.data)
        test_text = data.get("defaultTestText")
        feature_list = list_update(
            user=request.user,
            list_id=data["listId"],
            name=data.get("name"),
            description=data.get("description"),
            default_test_text=("" if test_text is None else test_text) if "defaultTestText" in data else None,
            visibility=data.get("visibility"),
        )
        return Response(list_wire(feature_list, url=list_url(request, feature_list.id)))


class ListDeleteView(AuthedApiView):
    @extend_schema(
        operation_id="list_delete",
        tags=TAGS,
        summary="Delete your list",
        request=i.ListIdIn,
        responses={200: out.DeletedOut, **AUTH_ERRORS},
    )
    def post(self, request):
        data = validated(i.ListIdIn, request.data)
        list_delete(user=request.user, list_id=data["listId"])
        return Response({"id": data["listId"], "deleted": True})


class ListGetView(ApiView):
    @extend_schema(
        operation_id="list_get",
        tags=TAGS,
        summary="A list with its features",
        description="PUBLIC and UNLISTED lists are readable by anyone; PRIVATE ones only by their owner (404).",
        request=i.ListIdIn,
        responses={200: out.ListDetailOut, 400: out.ErrorOut, 404: out.ErrorOut},
    )
    def post(self, request):
        data = validated(i.ListIdIn, request.data)
        feature_list = list_get(list_id=data["listId"], user=request.user)
        items = list(list_items(feature_list=feature_list, user=request.user))
        features = with_source_sets([item.feature for item in items])
        explanations = explanations_by_feature(features)
        neurons = [
            {
                **list_item_wire(item, feature=item.feature),
                "neuron": feature_summary_wire(item.feature, explanations=explanations[item.feature.pk]),
            }
            for item in items
        ]
        return Response(
            {
                **list_wire(feature_list, url=list_url(request, feature_list.id)),
                "user": user_brief(feature_list.user),
                "neurons": neurons,
            }
        )


class ListListView(AuthedApiView):
    @extend_schema(
        operation_id="list_list",
        tags=TAGS,
        summary="Your lists",
        description=(
            "Every list you own, most recently changed first, with how many of its features you may read "
            "(those list/get shows)."
        ),
        request=None,
        responses={200: out.ListWithCountOut(many=True), 401: out.ErrorOut},
    )
    def post(self, request):
        lists = lists_with_counts(owner=request.user, user=request.user)
        return Response([{**list_wire(x, url=list_url(request, x.id)), "featureCount": x.n_items} for x in lists])

    @extend_schema(operation_id="list_list_get", tags=TAGS, summary="Your lists (GET form)", request=None,
                   responses={200: out.ListWithCountOut(many=True), 401: out.ErrorOut})  # fmt: skip
    def get(self, request):
        return self.post(request)
