"""Graph node labels from the features' explanations.

A graph's `clerp` labels are taken from explanations when it is generated; features explained later (the
demo explains its graphs' most influential features after tracing them, and anyone can explain a node from its
dashboard) reach a stored graph through `graph_labels_refresh`, which fills only labels that are still empty, so
an owner's own labels are never overwritten.
"""

from __future__ import annotations

import gzip
import json

from features.models import Feature, Source, SourceSet
from graphs.models import Graph
from graphs.services.graphs import graph_json_bytes, graph_labels_write, set_explanations

FEATURE_NODE = "cross layer transcoder"


def _feature_key(node: dict) -> tuple[int, int] | None:
    if node.get("feature_type") != FEATURE_NODE:
        return None
    layer, index, _ = node["node_id"].split("_")
    return int(layer), int(index)


def graph_top_features(*, graph: Graph, count: int) -> list[tuple[int, int]]:
    """The `count` distinct (layer, feature index) pairs of the graph's feature nodes, most influential first
    (Neuronpedia's `influence` is a cumulative share: smaller is more influential)."""
    data = json.loads(gzip.decompress(graph_json_bytes(graph=graph)))
    nodes = sorted((n for n in data["nodes"] if _feature_key(n) is not None), key=lambda n: n.get("influence") or 1.0)
    out: list[tuple[int, int]] = []
    for node in nodes:
        key = _feature_key(node)
        if key not in out:
            out.append(key)
        if len(out) == count:
            break
    return out


def graph_features(*, graph: Graph, keys: list[tuple[int, int]]) -> list[Feature]:
    """The Feature rows of (layer, index) pairs in the graph's transcoder set (its sources are `<layer>-<set>`)."""
    sources = {
        int(name.split("-", 1)[0]): pk
        for pk, name in Source.objects.filter(
            model_id=graph.model_id, source_set__name=graph.source_set_name
        ).values_list("pk", "name")
        if name.split("-", 1)[0].isdigit()
    }
    wanted = [(sources[layer], index) for layer, index in keys if layer in sources]
    rows = {(f.source_id, f.index): f for f in Feature.objects.filter(source_id__in={s for s, _ in wanted})}
    return [rows[k] for k in wanted if k in rows]


def graph_labels_refresh(*, graph: Graph) -> int:
    """Fill the graph's empty feature labels from the newest explanations; returns how many were filled."""
    source_set = SourceSet.objects.filter(model_id=graph.model_id, name=graph.source_set_name).first()
    newest = set_explanations(source_set) if source_set else {}
    filled = 0

    def label(node: dict) -> str | None:
        nonlocal filled
        key = _feature_key(node)
        if key is None or node.get("clerp") or key not in newest:
            return None
        filled += 1
        return newest[key]

    graph_labels_write(graph=graph, label=label)
    return filled
