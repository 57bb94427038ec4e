"""Page routes of this app."""

from django.urls import path

from imports import views

urlpatterns = [
    path("imports/", views.import_panel, name="imports-panel"),
    path("imports/start", views.import_start, name="imports-start"),
    path("imports/progress/<int:run_id>.json", views.import_progress, name="imports-progress"),
]
