"""Writes to feature lists. Only the owner changes a list; others get 403 if they can read it, else 404."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404

from features.models import Feature, List, ListItem, Visibility
from features.selectors import list_get

LIST_NAME_MAX = 255
LIST_TEXT_MAX = 10_000


def _owned_list(*, user, list_id: str, lock: bool = False) -> List:
    """The list if `user` owns it; 404 when `user` may not even read it, 403 when they may read but not edit."""
    if user is None or not user.is_authenticated:
        raise PermissionDenied("Log in to change a list.")
    feature_list = list_get(list_id=list_id, user=user)  # raises Http404 for unreadable lists
    if feature_list.user_id != user.pk:
        raise PermissionDenied("Only the owner of a list can change it.")
    if lock:
        feature_list = List.objects.select_for_update().get(pk=feature_list.pk)
    return feature_list


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "A list needs a name."})
    if len(name) > LIST_NAME_MAX:
        raise ValidationError({"name": f"At most {LIST_NAME_MAX} characters."})
    return name


def _clean_text(field: str, value: str) -> str:
    value = value or ""
    if len(value) > LIST_TEXT_MAX:
        raise ValidationError({field: f"At most {LIST_TEXT_MAX} characters."})
    return value


def _clean_visibility(value: str) -> str:
    if value not in Visibility.values:
        raise ValidationError({"visibility": f"One of {', '.join(Visibility.values)}."})
    return value


def list_create(
    *,
    user,
    name: str,
    description: str = "",
    default_test_text: str = "",
    visibility: str = Visibility.UNLISTED,
) -> List:
    if user is None or not user.is_authenticated:
        raise PermissionDenied("Log in to create a list.")
    return List.objects.create(
        user=user,
        name=_clean_name(name),
        description=_clean_text("description", description),
        default_test_text=_clean_text("defaultTestText", default_test_text),
        visibility=_clean_visibility(visibility),
    )


def list_update(
    *,
    user,
    list_id: str,
    name: str | None = None,
    description: str | None = None,
    default_test_text: str | None = None,
    visibility: str | None = None,
) -> List:
    feature_list = _owned_list(user=user, list_id=list_id)
    if name is not None:
        feature_list.name = _clean_name(name)
    if description is not None:
        feature_list.description = _clean_text("description", description)
    if default_test_text is not None:
        feature_list.default_test_text = _clean_text("defaultTestText", default_test_text)
    if visibility is not None:
        feature_list.visibility = _clean_visibility(visibility)
    feature_list.save()
    return feature_list


def list_delete(*, user, list_id: str) -> None:
    _owned_list(user=user, list_id=list_id).delete()


def list_add_features(*, user, list_id: str, features: list[Feature], descriptions: dict | None = None) -> int:
    """Add features (idempotent: already present ones keep their row). `descriptions` maps feature pk → note.

    Returns how many items were newly added.
    """
    descriptions = descriptions or {}
    with transaction.atomic():
        feature_list = _owned_list(user=user, list_id=list_id, lock=True)
        present = set(
            ListItem.objects.filter(list=feature_list, feature__in=features).values_list("feature_id", flat=True)
        )
        new_items = []
        for feature in features:
            if feature.pk in present:
                continue
            present.add(feature.pk)
            new_items.append(
                ListItem(
                    list=feature_list,
                    feature=feature,
                    user=user,
                    description=_clean_text("description", descriptions.get(feature.pk, "")),
                )
            )
        ListItem.objects.bulk_create(new_items, ignore_conflicts=True)
        if new_items:
            feature_list.save(update_fields=["updated_at"])
    return len(new_items)


def list_remove_feature(*, user, list_id: str, feature: Feature) -> bool:
    feature_list = _owned_list(user=user, list_id=list_id)
    deleted, _ = ListItem.objects.filter(list=feature_list, feature=feature).delete()
    if deleted:
        feature_list.save(update_fields=["updated_at"])
    return bool(deleted)


def list_edit_feature(*, user, list_id: str, feature: Feature, description: str) -> ListItem:
    """Change the note on a feature of the list; 404 when the feature is not in it."""
    feature_list = _owned_list(user=user, list_id=list_id)
    item = ListItem.objects.filter(list=feature_list, feature=feature).first()
    if item is None:
        raise Http404("That feature is not in this list.")
    item.description = _clean_text("description", description)
    item.save(update_fields=["description"])
    feature_list.save(update_fields=["updated_at"])
    return item


def list_create_with_features(*, user, name: str, features: list[Feature], description: str = "") -> List:
    """A new list holding `features` in their order (a quick list saved): both or neither."""
    with transaction.atomic():
        feature_list = list_create(user=user, name=name, description=description)
        list_add_features(user=user, list_id=feature_list.id, features=features)
    return feature_list
