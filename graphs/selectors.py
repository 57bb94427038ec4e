"""Reads of graphs and subgraphs; every one honours visibility (features.selectors' readable/listed rules)."""

from django.db.models import QuerySet
from django.http import Http404

from features.selectors import listed_q, readable_q
from graphs.models import Graph, Subgraph


def graph_get(*, model_id: str, slug: str, user) -> Graph:
    """A graph this user may read (PUBLIC, UNLISTED, or their own; its model readable too)."""
    graph = (
        Graph.objects.select_related("model", "creator", "job")
        .filter(readable_q(user), readable_q(user, "model__"), model_id=model_id, slug=slug)
        .first()
    )
    if graph is None:
        raise Http404(f"No graph {model_id}/{slug}.")
    return graph


def graph_list(*, user, model_id: str | None = None, owner_username: str | None = None) -> QuerySet[Graph]:
    """Listed graphs: PUBLIC ones and the user's own (UNLISTED and PRIVATE ones of others never appear)."""
    qs = Graph.objects.select_related("model", "creator").filter(listed_q(user), listed_q(user, "model__"))
    if model_id:
        qs = qs.filter(model_id=model_id)
    if owner_username:
        qs = qs.filter(creator__username=owner_username)
    return qs.order_by("-created_at", "-pk")


def graph_list_owned(*, user) -> QuerySet[Graph]:
    return Graph.objects.select_related("model", "creator").filter(creator=user).order_by("-created_at", "-pk")


def subgraph_list(*, graph: Graph, user) -> QuerySet[Subgraph]:
    """The caller's saved subgraphs of a graph they may read."""
    if not getattr(user, "is_authenticated", False):
        return Subgraph.objects.none()
    return Subgraph.objects.filter(graph=graph, user=user).order_by("-updated_at", "-pk")


def subgraph_get(*, subgraph_id, user) -> Subgraph:
    """A saved subgraph, readable by whoever may read its graph (that is how it is shared)."""
    sub = (
        Subgraph.objects.select_related("graph", "graph__model")
        .filter(
            readable_q(user, "graph__"),
            readable_q(user, "graph__model__"),
            pk=subgraph_id if str(subgraph_id).isdigit() else -1,
        )
        .first()
    )
    if sub is None:
        raise Http404(f"No subgraph {subgraph_id}.")
    return sub
