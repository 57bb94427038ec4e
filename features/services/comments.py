"""Writes to feature comments."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from features.models import Comment, Feature, List, ListComment

COMMENT_MAX_CHARS = 10_000


def _comment_text(*, user, text: str) -> str:
    """The text of a new comment (feature or list) by a signed-in user, stripped; refusals name what is wrong."""
    if user is None or not user.is_authenticated:
        raise PermissionDenied("Log in to comment.")
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": "A comment cannot be empty."})
    if len(text) > COMMENT_MAX_CHARS:
        raise ValidationError({"text": f"At most {COMMENT_MAX_CHARS} characters."})
    return text


def _delete_own(*, user, comment, comment_id: str) -> None:
    """The author or staff may delete a comment; 404 for one that does not exist (or that the caller cannot see)."""
    if comment is None:
        raise Http404(f"Comment {comment_id!r} not found.")
    if comment.user_id != user.pk and not user.is_staff:
        raise PermissionDenied("Only the author of a comment can delete it.")
    comment.delete()


def comment_create(*, user, feature: Feature, text: str) -> Comment:
    return Comment.objects.create(user=user, feature=feature, text=_comment_text(user=user, text=text))


def comment_delete(*, user, comment_id: str) -> None:
    """The author or staff may delete; 404 for comments that do not exist."""
    if user is None or not user.is_authenticated:
        raise PermissionDenied("Log in to delete a comment.")
    _delete_own(user=user, comment=Comment.objects.filter(pk=comment_id).first(), comment_id=comment_id)


def list_comment_create(*, user, feature_list: List, text: str) -> ListComment:
    """A comment on a list the caller may read (the caller's view resolved it through list_get)."""
    return ListComment.objects.create(user=user, list=feature_list, text=_comment_text(user=user, text=text))


def list_comment_delete(*, user, comment_id: str) -> ListComment:
    """Authors delete their own comments (list owners and other commenters alike), staff any; 404 when the
    comment does not exist or its list is not readable by the caller."""
    from features.selectors import list_readable_q

    if user is None or not user.is_authenticated:
        raise PermissionDenied("Log in to delete a comment.")
    readable = List.objects.filter(list_readable_q(user))
    comment = ListComment.objects.filter(pk=comment_id, list__in=readable).first()
    _delete_own(user=user, comment=comment, comment_id=comment_id)
    return comment
