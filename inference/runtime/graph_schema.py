"""Validation of Neuronpedia's attribution-graph JSON (reference/graphs.md §2), with no torch import, so the web
process can check uploads with the same rules the generator's output is tested against.

`graph_problems(data)` returns readable problems (empty = valid): the JSON-schema rules (required keys and
types; extra keys allowed, as Neuronpedia's schema allows them) plus what a schema cannot say — node ids unique
within the graph and every link's ends naming a node.
"""

from __future__ import annotations

from functools import lru_cache

_STR_OR_INT = {"type": ["string", "integer"]}

GRAPH_SCHEMA: dict = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["metadata", "qParams", "nodes", "links"],
    "properties": {
        "metadata": {
            "type": "object",
            "required": ["slug", "scan", "prompt_tokens", "prompt"],
            "properties": {
                "slug": {"type": "string"},
                "scan": {"type": "string"},
                "prompt_tokens": {"type": "array", "items": {"type": "string"}},
                "prompt": {"type": "string"},
                "node_threshold": {"type": ["number", "null"]},
                "schema_version": {"type": ["integer", "null"]},
                "feature_details": {
                    "type": "object",
                    "properties": {
                        "feature_json_base_url": {"type": "string"},
                        "neuronpedia_source_set": {"type": "string"},
                        "neuronpedia_lorsa_source_set": {"type": "string"},
                    },
                },
                "info": {"type": "object"},
                "generation_settings": {"type": "object"},
                "pruning_settings": {"type": "object"},
            },
        },
        "qParams": {
            "type": "object",
            "properties": {
                "pinnedIds": {"type": "array", "items": {"type": "string"}},
                "supernodes": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
                "linkType": {"type": "string"},
                "clickedId": {"type": "string"},
                "sg_pos": {"type": "string"},
            },
        },
        "nodes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["node_id", "feature", "layer", "ctx_idx", "feature_type", "jsNodeId", "clerp"],
                "properties": {
                    "node_id": {"type": "string"},
                    "feature": {"type": ["integer", "null"]},
                    "layer": _STR_OR_INT,
                    "ctx_idx": {"type": "integer"},
                    "feature_type": {"type": "string"},
                    "jsNodeId": {"type": "string"},
                    "clerp": {"type": "string"},
                    "influence": {"type": ["number", "null"]},
                    "activation": {"type": ["number", "null"]},
                },
            },
        },
        "links": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["source", "target", "weight"],
                "properties": {
                    "source": {"type": "string"},
                    "target": {"type": "string"},
                    "weight": {"type": "number"},
                },
            },
        },
        "qk_only_nodes": {"type": "array"},
    },
}


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft7Validator

    return Draft7Validator(GRAPH_SCHEMA)


def graph_problems(data, *, limit: int = 20) -> list[str]:
    """Problems with a graph JSON (already parsed), at most `limit`; [] when it is valid."""
    problems = []
    for err in _validator().iter_errors(data):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        problems.append(f"{where}: {err.message}")
        if len(problems) >= limit:
            return problems
    if problems:
        return problems
    seen: dict[str, dict] = {}
    for node in data["nodes"]:
        first = seen.get(node["node_id"])
        if first is not None:
            why = ""
            if "mlp reconstruction error" in (first.get("feature_type"), node.get("feature_type")):
                # circuit-tracer 0.5.0 names error nodes 0_<layer>_<pos>, the id of a layer-0 feature too
                why = (
                    " (an error node and a layer-0 feature share it, as circuit-tracer 0.5.0 names them; the links"
                    " cannot tell them apart: give the error nodes other ids, e.g. err_<layer>_<pos>, or trace here)"
                )
            problems.append(f"nodes: node_id {node['node_id']!r} is not unique{why}")
        seen[node["node_id"]] = node
    for i, link in enumerate(data["links"]):
        for end in ("source", "target"):
            if link[end] not in seen:
                problems.append(f"links/{i}/{end}: {link[end]!r} names no node")
        if len(problems) >= limit:
            break
    return problems[:limit]
