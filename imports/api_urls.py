"""API routes of this app, mounted under /api/ (paths accept an optional trailing slash)."""

from django.urls import re_path

from imports.api import views


def route(pattern: str, view, name: str):
    return re_path(rf"^{pattern}(?:/)?$", view.as_view(), name=name)


urlpatterns = [
    route(r"feature/upload-batch", views.FeatureUploadBatchView, "api-feature-upload-batch"),
    route(r"activation/upload-batch", views.ActivationUploadBatchView, "api-activation-upload-batch"),
    route(r"vector/new", views.VectorNewView, "api-vector-new"),
    route(r"vector/get", views.VectorGetView, "api-vector-get"),
    route(r"vector/delete", views.VectorDeleteView, "api-vector-delete"),
    route(r"vector/list-owned", views.VectorListOwnedView, "api-vector-list-owned"),
]
