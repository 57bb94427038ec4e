"""Comments and bookmarks: /api/comment/new|delete, /api/bookmark/add|delete, /api/user/bookmarks."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from features.api import inputs as i
from features.api import outputs as out
from features.api.base import AuthedApiView, validated
from features.api.common import feature_or_404, with_source_sets
from features.api.presenters import comment_wire, explanations_by_feature, feature_key, feature_summary_wire
from features.services.bookmarks import bookmark_add, bookmark_delete, bookmark_list
from features.services.comments import comment_create, comment_delete

AUTH_ERRORS = {400: out.ErrorOut, 401: out.ErrorOut, 403: out.ErrorOut, 404: out.ErrorOut}


def _feature(request, data: dict):
    return feature_or_404(model_id=data["modelId"], source_id=data["layer"], index=data["index"], user=request.user)


def _bookmark_wire(bookmark) -> dict:
    return {
        **feature_key(bookmark.feature),
        "userId": bookmark.user_id,
        "createdAt": bookmark.created_at.isoformat(),
    }


class CommentNewView(AuthedApiView):
    @extend_schema(
        operation_id="comment_new",
        tags=["comments"],
        summary="Comment on a feature",
        description="`text`: 1 to 10,000 characters.",
        request=i.CommentNewIn,
        responses={200: out.CommentOut, **AUTH_ERRORS},
    )
    def post(self, request):
        data = validated(i.CommentNewIn, request.data)
        feature = _feature(request, data)
        comment = comment_create(user=request.user, feature=feature, text=data["text"])
        return Response(comment_wire(comment, key=feature_key(feature)))


class CommentDeleteView(AuthedApiView):
    @extend_schema(
        operation_id="comment_delete",
        tags=["comments"],
        summary="Delete your comment",
        description="Its author (or staff) only; others get 403.",
        request=i.CommentDeleteIn,
        responses={200: out.DeletedOut, **AUTH_ERRORS},
    )
    def post(self, request):
        data = validated(i.CommentDeleteIn, request.data)
        comment_delete(user=request.user, comment_id=data["commentId"])
        return Response({"id": data["commentId"], "deleted": True})


class BookmarkAddView(AuthedApiView):
    @extend_schema(
        operation_id="bookmark_add",
        tags=["bookmarks"],
        summary="Bookmark a feature",
        description="Idempotent: bookmarking twice keeps one bookmark.",
        request=i.BookmarkIn,
        responses={200: out.BookmarkOut, **AUTH_ERRORS},
    )
    def post(self, request):
        feature = _feature(request, validated(i.BookmarkIn, request.data))
        return Response(_bookmark_wire(bookmark_add(user=request.user, feature=feature)))


class BookmarkDeleteView(AuthedApiView):
    @extend_schema(
        operation_id="bookmark_delete",
        tags=["bookmarks"],
        summary="Remove a bookmark",
        description="`deleted` is false when the feature was not bookmarked.",
        request=i.BookmarkIn,
        responses={200: out.BookmarkDeletedOut, **AUTH_ERRORS},
    )
    def post(self, request):
        feature = _feature(request, validated(i.BookmarkIn, request.data))
        deleted = bookmark_delete(user=request.user, feature=feature)
        return Response({**feature_key(feature), "deleted": deleted})


class UserBookmarksView(AuthedApiView):
    @extend_schema(
        operation_id="user_bookmarks",
        tags=["bookmarks"],
        summary="Your bookmarks",
        description="Newest first, each with its feature (and the feature's explanations).",
        request=None,
        responses={200: out.BookmarkWithFeatureOut(many=True), 401: out.ErrorOut},
    )
    def post(self, request):
        bookmarks = list(bookmark_list(user=request.user))
        features = with_source_sets([b.feature for b in bookmarks])
        explanations = explanations_by_feature(features)
        return Response(
            [
                {
                    **_bookmark_wire(b),
                    "neuron": feature_summary_wire(b.feature, explanations=explanations[b.feature.pk]),
                }
                for b in bookmarks
            ]
        )

    @extend_schema(operation_id="user_bookmarks_get", tags=["bookmarks"], summary="Your bookmarks (GET form)",
                   request=None, responses={200: out.BookmarkWithFeatureOut(many=True), 401: out.ErrorOut})  # fmt: skip
    def get(self, request):
        return self.post(request)
