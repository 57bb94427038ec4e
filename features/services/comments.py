"""Writes to feature comments."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from features.models import Comment, Feature, List, ListComment

COMMENT_MAX_CHARS = 10_000


def comment_create(*, user, feature: Feature, text: str) -> Comment:
    if user is None or not user.is_authenticated:
        raise PermissionDenied("Log in to comment.")
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": "A comment cannot be empty."})
    if len(text) > COMMENT_MAX_CHARS:
        raise ValidationError({"text": f"At most {COMMENT_MAX_CHARS} characters."})
    return Comment.objects.create(user=user, feature=feature, text=text)


def comment_delete(*, user, comment_id: str) -> None:
    """The author or staff may delete; 404 for comments that do not exist."""
    if user is None or not user.is_authenticated:
        raise PermissionDenied("Log in to delete a comment.")
    comment = Comment.objects.filter(pk=comment_id).first()
    if comment is None:
        raise Http404(f"Comment {comment_id!r} not found.")
    if comment.user_id != user.pk and not user.is_staff:
        raise PermissionDenied("Only the author of a comment can delete it.")
    comment.delete()


def list_comment_create(*, user, feature_list: List, text: str) -> ListComment:
    """A comment on a list the caller may read (the caller's view resolved it through list_get)."""
    if user is None or not user.is_authenticated:
        raise PermissionDenied("Log in to comment.")
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": "A comment cannot be empty."})
    if len(text) > COMMENT_MAX_CHARS:
        raise ValidationError({"text": f"At most {COMMENT_MAX_CHARS} characters."})
    return ListComment.objects.create(user=user, list=feature_list, text=text)


def list_comment_delete(*, user, comment_id: str) -> ListComment:
    """Authors delete their own comments (list owners and other commenters alike), staff any; 404 when the
    comment does not exist or its list is not readable by the caller."""
    from features.selectors import list_readable_q

    if user is None or not user.is_authenticated:
        raise PermissionDenied("Log in to delete a comment.")
    comment = (
        ListComment.objects.filter(pk=comment_id).filter(list__in=List.objects.filter(list_readable_q(user))).first()
    )
    if comment is None:
        raise Http404(f"Comment {comment_id!r} not found.")
    if comment.user_id != user.pk and not user.is_staff:
        raise PermissionDenied("Only the author of a comment can delete it.")
    comment.delete()
    return comment
