"""Reads of autointerp: semantic explanation search and UMAP points, with features.selectors' visibility.

Search = exact-phrase matches first (Postgres full-text `phraseto_tsquery` over the GIN index on
to_tsvector('english', description)), then nearest neighbours of the query embedding over the HNSW
index (`hnsw.ef_search` set per transaction; pgvector 0.8 iterative scans keep filtered queries
(visibility, scope) from running out of candidates). Only PUBLIC rows (or the user's own) are listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection, transaction
from pgvector.django import CosineDistance

from autointerp import conf
from features.models import Explanation, Feature, Source
from features.selectors import listed_q

PAGE_SIZE = 20  # Neuronpedia's page
PHRASE_CAP = 100  # phrase matches ranked first; a phrase this common is not a precise query any more


@dataclass
class SearchHit:
    explanation: Explanation
    similarity: float
    phrase_match: bool


def _scoped(user, *, field: str, model_id=None, source_names=None, release_name=None):
    """Explanations of the sources this user may list, as `source_id IN (...)`.

    Visibility is decided on the (small) source table first: a join to model/source/source set in the
    vector query makes Postgres scan every explanation instead of walking the HNSW index.
    """
    sources = Source.objects.filter(listed_q(user), listed_q(user, "model__"), listed_q(user, "source_set__"))
    if model_id:
        sources = sources.filter(model_id=model_id)
    if source_names:
        sources = sources.filter(name__in=source_names)
    if release_name:
        sources = sources.filter(source_set__release_id=release_name)
    source_ids = list(sources.values_list("id", flat=True))
    return Explanation.objects.filter(source_id__in=source_ids, **{f"{field}__isnull": False})


def explanation_search(
    *, user, query: str, vector: list[float], field: str = "embedding", model_id: str | None = None,
    source_names: list[str] | None = None, release_name: str | None = None, offset: int = 0,
    limit: int = PAGE_SIZE,
) -> tuple[list[SearchHit], bool]:  # fmt: skip
    """One page of hits and whether more follow."""
    qs = _scoped(user, field=field, model_id=model_id, source_names=source_names, release_name=release_name)
    wanted = offset + limit + 1
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.ef_search = %s", [max(conf.hnsw_ef_search(), min(wanted, 1000))])
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        phrase = list(
            qs.annotate(fts=SearchVector("description", config="english"), distance=CosineDistance(field, vector))
            .filter(fts=SearchQuery(query, search_type="phrase", config="english"))
            .order_by("distance")[:PHRASE_CAP]
        )
        nearest = list(qs.annotate(distance=CosineDistance(field, vector)).order_by("distance")[:wanted])
    nearest.sort(key=lambda e: e.distance)  # relaxed_order may return neighbours slightly out of order
    seen = {e.id for e in phrase}
    ranked = [SearchHit(e, 1 - e.distance, True) for e in phrase]
    ranked += [SearchHit(e, 1 - e.distance, False) for e in nearest if e.id not in seen]
    page = ranked[offset : offset + limit]
    _load_features([h.explanation for h in page])
    return page, len(ranked) > offset + limit


def _load_features(explanations: list[Explanation]) -> None:
    features = Feature.objects.filter(id__in={e.feature_id for e in explanations}).select_related(
        "source", "source__source_set", "model"
    )
    by_id = {f.id: f for f in features}
    for e in explanations:
        e.feature = by_id[e.feature_id]


def explanation_search_exact(*, user, vector: list[float], field: str = "embedding", limit: int = PAGE_SIZE, **scope):
    """Exact nearest neighbours (sequential scan, no index) — the bench's ground truth for recall."""
    qs = _scoped(user, field=field, **scope)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")
        return list(
            qs.annotate(distance=CosineDistance(field, vector))
            .order_by("distance")
            .values_list("id", flat=True)[:limit]
        )


def umap_sources(*, user, model_id: str, source_names: list[str]) -> list[Source]:
    return list(
        Source.objects.filter(
            listed_q(user), listed_q(user, "model__"), listed_q(user, "source_set__"),
            model_id=model_id, name__in=source_names,
        ).order_by("name")
    )  # fmt: skip


def umap_points(*, source: Source) -> list[dict]:
    """Neuronpedia's /api/umap points: features with UMAP coordinates and their best explanation."""
    features = Feature.objects.filter(source=source, umap_x__isnull=False).order_by("index")
    best = {}
    for feature_id, description in (
        Explanation.objects.filter(source=source)
        .order_by("feature_id", "-score_v1", "created_at")
        .values_list("feature_id", "description")
    ):
        best.setdefault(feature_id, description)
    return [
        {
            "id": f"{source.model_id}@{source.name}@{f.index}",
            "modelId": source.model_id,
            "layer": source.name,
            "index": str(f.index),
            "description": best.get(f.id, ""),
            "umap_cluster": f.umap_cluster,
            "umap_x": f.umap_x,
            "umap_y": f.umap_y,
            "umap_log_feature_sparsity": f.umap_log_feature_sparsity,
        }
        for f in features
    ]
