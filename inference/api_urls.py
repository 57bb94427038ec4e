"""API routes of this app, mounted under /api/ (paths accept an optional trailing slash)."""

from django.urls import re_path

from inference.api import views


def route(pattern: str, view, name: str):
    return re_path(rf"^{pattern}(?:/)?$", view.as_view(), name=name)


urlpatterns = [
    route(r"activation/new", views.ActivationNewView, "api-activation-new"),
    route(r"activation/source", views.ActivationSourceView, "api-activation-source"),
    route(r"search-all", views.SearchAllView, "api-search-all"),
    route(r"search-topk-by-token", views.TopkByTokenView, "api-search-topk-by-token"),
    route(r"tokenize", views.TokenizeView, "api-tokenize"),
    route(r"cossim", views.CossimView, "api-cossim"),
    route(r"steer", views.SteerView, "api-steer"),
    route(r"steer-chat", views.SteerChatView, "api-steer-chat"),
    route(r"steer-load", views.SteerLoadView, "api-steer-load"),
]
