"""API routes of graphs, mounted under /api/ (paths accept an optional trailing slash). Fixed names first:
`graph/<model>/<slug>` catches the rest."""

from django.urls import re_path

from graphs.api import views


def route(pattern: str, view, name: str):
    return re_path(rf"^{pattern}(?:/)?$", view.as_view(), name=name)


SEG = r"[A-Za-z0-9_.\-]+"

urlpatterns = [
    route(r"steer-logits", views.SteerLogitsView, "api-steer-logits"),
    route(r"graph/signed-put", views.SignedPutView, "api-graph-signed-put"),
    route(r"graph/put/(?P<put_request_id>[^/]+)", views.PutView, "api-graph-put"),
    route(r"graph/save-to-db", views.SaveToDbView, "api-graph-save-to-db"),
    route(r"graph/list-owned", views.ListOwnedView, "api-graph-list-owned"),
    route(r"graph/list", views.GraphListView, "api-graph-list"),
    route(r"graph/delete", views.DeleteView, "api-graph-delete"),
    route(r"graph/generate", views.GenerateView, "api-graph-generate"),
    route(r"graph/tokenize", views.TokenizeView, "api-graph-tokenize"),
    route(r"graph/clerps", views.ClerpsView, "api-graph-clerps"),
    route(r"graph/subgraph/save", views.SubgraphSaveView, "api-graph-subgraph-save"),
    route(r"graph/subgraph/list", views.SubgraphListView, "api-graph-subgraph-list"),
    route(r"graph/subgraph/delete", views.SubgraphDeleteView, "api-graph-subgraph-delete"),
    route(r"graph/subgraph/(?P<subgraph_id>[0-9]+)", views.SubgraphDetailView, "api-graph-subgraph"),
    route(rf"graph/(?P<model_id>{SEG})/(?P<slug>{SEG})/json", views.GraphJsonView, "api-graph-json"),
    route(rf"graph/(?P<model_id>{SEG})/(?P<slug>{SEG})", views.GraphDetailView, "api-graph-get"),
]
