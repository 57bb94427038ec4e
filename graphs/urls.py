"""Page routes of graphs: Neuronpedia's `/<model>/graph?slug=…` and the lists."""

from django.urls import path

from graphs import views

urlpatterns = [
    path("graphs/", views.graph_list_page, name="graph-list"),
    path("<slug:model_id>/graph", views.graph_page, name="graph"),
]
