"""Page routes of this app (mounted before features.urls, whose `/<model>/` catches everything else)."""

from django.urls import path

from autointerp import views

app_name = "autointerp"

urlpatterns = [
    path("explanations/search/", views.search_page, name="search"),
    path("explanations/scores/<str:score_id>/", views.score_breakdown_page, name="score-breakdown"),
    path("account/provider-keys/", views.provider_key_add, name="provider-key-add"),
    path("account/provider-keys/<int:key_id>/delete/", views.provider_key_remove, name="provider-key-delete"),
    path("umap/<slug:model_id>/<str:source_id>/", views.umap_page, name="umap"),
    path("umap/<slug:model_id>/<str:source_id>/points.json", views.umap_points, name="umap-points"),
]
