"""Page routes of this app."""

from django.urls import path

from inference import views

app_name = "inference"

urlpatterns = [
    path("steer", views.steer_page, name="steer"),
    path("steer/<str:output_id>", views.steer_page, name="steer-share"),
    path("steer-features", views.feature_search, name="steer-features"),
    path("search-inference", views.search_page, name="search"),
    path("search-topk", views.topk_page, name="topk"),
]
