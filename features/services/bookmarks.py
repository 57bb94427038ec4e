"""A user's bookmarked features."""

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet

from features.models import Bookmark, Feature
from features.selectors import feature_readable_q


def _require_user(user):
    if user is None or not user.is_authenticated:
        raise PermissionDenied("Log in to use bookmarks.")


def bookmark_add(*, user, feature: Feature) -> Bookmark:
    """Idempotent: bookmarking twice returns the same row."""
    _require_user(user)
    bookmark, _ = Bookmark.objects.get_or_create(user=user, feature=feature)
    return bookmark


def bookmark_delete(*, user, feature: Feature) -> bool:
    _require_user(user)
    deleted, _ = Bookmark.objects.filter(user=user, feature=feature).delete()
    return bool(deleted)


def bookmark_list(*, user) -> QuerySet[Bookmark]:
    """The user's bookmarks, newest first, skipping features that became unreadable to them."""
    _require_user(user)
    return (
        Bookmark.objects.filter(user=user)
        .filter(feature_readable_q(user, "feature__"))
        .select_related("feature", "feature__source", "feature__model")
        .order_by("-created_at", "-pk")
    )
