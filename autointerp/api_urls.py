"""API routes of this app, mounted under /api/ (paths accept an optional trailing slash)."""

from django.urls import re_path

from autointerp.api import views

ID = r"(?P<explanation_id>[^/\x00]+)"  # a NUL cannot reach Postgres (a 500); such paths are 404


def route(pattern: str, view, name: str):
    return re_path(rf"^{pattern}(?:/)?$", view.as_view(), name=name)


urlpatterns = [
    route(r"explanation/generate", views.ExplanationGenerateView, "api-explanation-generate"),
    route(r"explanation/generate-batch", views.ExplanationGenerateBatchView, "api-explanation-generate-batch"),
    route(r"explanation/generate-job", views.ExplanationGenerateJobView, "api-explanation-generate-job"),
    route(r"explanation/score-job", views.ExplanationScoreJobView, "api-explanation-score-job"),
    route(r"explanation/new", views.ExplanationNewView, "api-explanation-new"),
    route(r"explanation/score", views.ExplanationScoreView, "api-explanation-score"),
    route(r"explanation/search-all", views.SearchAllView, "api-explanation-search-all"),
    route(r"explanation/search", views.SearchSourcesView, "api-explanation-search"),
    route(r"explanation/search-model", views.SearchModelView, "api-explanation-search-model"),
    route(r"explanation/search-release", views.SearchReleaseView, "api-explanation-search-release"),
    route(rf"explanation/{ID}/vote", views.ExplanationVoteView, "api-explanation-vote"),
    route(rf"explanation/{ID}/unvote", views.ExplanationUnvoteView, "api-explanation-unvote"),
    route(rf"explanation/{ID}/delete", views.ExplanationDeleteView, "api-explanation-delete"),
    route(rf"explanation/{ID}", views.ExplanationDetailView, "api-explanation"),
    route(r"umap", views.UmapView, "api-umap"),
    route(r"umap/generate", views.UmapGenerateView, "api-umap-generate"),
]
