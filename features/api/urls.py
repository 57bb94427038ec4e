"""Neuronpedia-compatible API routes of the features app, mounted under /api/.

Every path also answers with a trailing slash (Neuronpedia's python client adds one to some routes).
The slash sits in a non-capturing group so the OpenAPI schema documents Neuronpedia's slash-free path.
"""

from django.urls import re_path

from features.api import schema as _schema_extensions  # noqa: F401  (registers the auth schemes)
from features.api import views_catalog as catalog
from features.api import views_evals as evals
from features.api import views_features as features
from features.api import views_jobs as jobs
from features.api import views_lists as lists
from features.api import views_social as social

SEGMENT = r"[^/\x00]+"  # a NUL cannot reach Postgres (it would be a 500); such paths are 404


def route(pattern: str, view, name: str):
    return re_path(rf"^{pattern}(?:/)?$", view.as_view(), name=name)


urlpatterns = [
    route(
        rf"feature/(?P<model_id>{SEGMENT})/(?P<source_id>{SEGMENT})/(?P<index>{SEGMENT})",
        features.FeatureDetailView,
        "api-feature",
    ),
    route(r"features", features.FeaturesBatchView, "api-features"),
    route(rf"job/(?P<job_id>{SEGMENT})", jobs.JobDetailView, "api-job"),
    route(r"features-offset", features.FeaturesOffsetView, "api-features-offset"),
    route(r"activation/get", features.ActivationGetView, "api-activation-get"),
    route(r"list/new", lists.ListNewView, "api-list-new"),
    route(r"list/new-with-features", lists.ListNewWithFeaturesView, "api-list-new-with-features"),
    route(r"list/add-features", lists.ListAddFeaturesView, "api-list-add-features"),
    route(r"list/remove", lists.ListRemoveView, "api-list-remove"),
    route(r"list/edit-feature", lists.ListEditFeatureView, "api-list-edit-feature"),
    route(r"list/update", lists.ListUpdateView, "api-list-update"),
    route(r"list/delete", lists.ListDeleteView, "api-list-delete"),
    route(r"list/get", lists.ListGetView, "api-list-get"),
    route(r"list/list", lists.ListListView, "api-list-list"),
    route(r"comment/new", social.CommentNewView, "api-comment-new"),
    route(r"comment/delete", social.CommentDeleteView, "api-comment-delete"),
    route(r"bookmark/add", social.BookmarkAddView, "api-bookmark-add"),
    route(r"bookmark/delete", social.BookmarkDeleteView, "api-bookmark-delete"),
    route(r"user/bookmarks", social.UserBookmarksView, "api-user-bookmarks"),
    route(r"global", catalog.GlobalView, "api-global"),
    route(r"model/get", catalog.ModelGetView, "api-model-get"),
    route(r"model/list", catalog.ModelListView, "api-model-list"),
    route(r"model/new", catalog.ModelNewView, "api-model-new"),
    route(r"source-set/new", catalog.SourceSetNewView, "api-source-set-new"),
    route(rf"source-set/(?P<model_id>{SEGMENT})/(?P<name>{SEGMENT})", catalog.SourceSetDetailView, "api-source-set"),
    route(rf"source/(?P<model_id>{SEGMENT})/(?P<source_id>{SEGMENT})", catalog.SourceDetailView, "api-source"),
    route(rf"evals/(?P<model_id>{SEGMENT})/(?P<source_id>{SEGMENT})", evals.SourceEvalsView, "api-source-evals"),
    route(
        rf"evals/(?P<model_id>{SEGMENT})/(?P<source_id>{SEGMENT})/(?P<type_name>{SEGMENT})",
        evals.SourceEvalView,
        "api-source-eval",
    ),
]
