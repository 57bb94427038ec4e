"""Page routes of this app (fixed prefixes: features.urls' `/<model>/...` would catch anything else)."""

from django.urls import path, re_path

from retrieval import views

app_name = "retrieval"

urlpatterns = [
    path("retrieve", views.retrieve_page, name="retrieve"),
    path("intervene", views.intervene_page, name="intervene"),
    re_path(
        r"^retrieve/genres/(?P<model_id>[-\w]+)/(?P<source_id>[^/\x00]+)/(?P<index>[0-9]+)/?$",
        views.genre_spread_page,
        name="genre-spread",
    ),
]
