"""API routes of this app, mounted under /api/ (paths accept an optional trailing slash)."""

from django.urls import re_path

from retrieval import api

urlpatterns = [
    re_path(r"^retrieve/?$", api.RetrieveView.as_view(), name="api-retrieve"),
    re_path(r"^intervene/?$", api.InterveneView.as_view(), name="api-intervene"),
    re_path(
        r"^genre-spread/(?P<model_id>[^/\x00]+)/(?P<source_id>[^/\x00]+)/(?P<index>\d+)/?$",
        api.GenreSpreadView.as_view(),
        name="api-genre-spread",
    ),
]
