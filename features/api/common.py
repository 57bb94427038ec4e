"""Lookups shared by the API views: 404s that say which part of (modelId, layer, index) is unknown."""

from django.db.models import prefetch_related_objects
from django.http import Http404
from django.urls import NoReverseMatch, reverse
from rest_framework.exceptions import ValidationError

from features.models import Feature, Source
from features.selectors import feature_get, model_get, source_get


def parse_index(raw: str) -> int:
    """Path segment → feature index; Neuronpedia clients send it as a string."""
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValidationError({"index": f"must be an integer, got {raw!r}."}) from None
    if not -(2**31) < value < 2**31:
        raise ValidationError({"index": "out of range."})
    return value


def source_or_404(*, model_id: str, source_id: str, user) -> Source:
    try:
        return source_get(model_id=model_id, source_id=source_id, user=user)
    except Http404:
        model_get(model_id=model_id, user=user)  # a clearer 404 when the model itself is unknown
        raise


def feature_or_404(*, model_id: str, source_id: str, index: int, user, read=feature_get):
    """`read(...)` (feature_get, or feature_dashboard for everything a dashboard shows) or a clear 404."""
    try:
        return read(model_id=model_id, source_id=source_id, index=index, user=user)
    except Http404:
        # Only on the error path: name the first unknown part (model, then source, then feature).
        source_or_404(model_id=model_id, source_id=source_id, user=user)
        raise


def with_source_sets(features: list[Feature]) -> list[Feature]:
    """Load source and source set of many features in at most two queries (for `sourceSetName`)."""
    prefetch_related_objects(features, "source__source_set")
    return features


def list_url(request, list_id: str) -> str:
    """The list's page (shared by URL), absolute like Neuronpedia's `url`."""
    try:
        path = reverse("list", kwargs={"list_id": list_id})
    except NoReverseMatch:  # pages not mounted (API-only deployment)
        path = f"/list/{list_id}/"
    return request.build_absolute_uri(path)
