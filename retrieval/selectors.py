"""Reads of the retrieval app: composite retrieval over passage codes, genre spread of a feature.

Visibility is decided by features.selectors (a source PRIVATE to someone else is a 404 before we get here).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Exists, OuterRef

from features.models import Feature, Source
from features.selectors import listed_q
from retrieval.models import Passage, PassageCode


@dataclass(frozen=True)
class Term:
    index: int
    weight: float  # > 0; negative terms subtract


def retrieve(*, source: Source, positive: list[Term], negative: list[Term], k: int = 10) -> list[dict]:
    """Passages ranked by Σ_pos w·v/max − Σ_neg w·v/max over the requested features.

    v is the passage's code for a feature and max the feature's largest code over the source's passages, so a
    weight means the same for a feature that fires at 0.3 and one that fires at 30 ("strongly on A" = weight
    on A's own scale). Candidates are passages where at least one positive feature is active; a missing code
    counts as 0. Ties break on data_index. One query, served by passagecode_source_feat_idx.
    """
    terms = [(t.index, float(t.weight)) for t in positive] + [(t.index, -float(t.weight)) for t in negative]
    pos = [t.index for t in positive]
    values_sql = ", ".join(["(%s::integer, %s::double precision)"] * len(terms))
    table, ptable = PassageCode._meta.db_table, Passage._meta.db_table
    sql = f"""
        WITH w(feature_index, weight) AS (VALUES {values_sql}),
        norm AS (
            SELECT c.feature_index, MAX(c.value) AS m FROM {table} c
            WHERE c.source_id = %s AND c.feature_index = ANY(%s) GROUP BY c.feature_index
        ),
        cand AS (
            SELECT DISTINCT c.passage_id FROM {table} c
            WHERE c.source_id = %s AND c.feature_index = ANY(%s) AND c.value > 0
        ),
        parts AS (
            SELECT c.passage_id, c.feature_index, c.value, w.weight,
                   w.weight * c.value / NULLIF(norm.m, 0) AS contribution
            FROM {table} c JOIN cand USING (passage_id) JOIN w USING (feature_index) JOIN norm USING (feature_index)
            WHERE c.source_id = %s
        ),
        scored AS (
            SELECT passage_id, SUM(COALESCE(contribution, 0)) AS score,
                   json_agg(json_build_array(feature_index, value, weight, contribution) ORDER BY feature_index) AS parts
            FROM parts GROUP BY passage_id
        )
        SELECT p.id, p.data_index, p.data_source, p.genre, p.text, p.planted, s.score, s.parts
        FROM scored s JOIN {ptable} p ON p.id = s.passage_id
        ORDER BY s.score DESC, p.data_index
        LIMIT %s
    """
    params: list = [x for t in terms for x in t]
    all_idx = [t[0] for t in terms]
    params += [source.pk, all_idx, source.pk, pos, source.pk, k]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    maxima = feature_code_max(source=source, indexes=all_idx)
    out = []
    for rank, (pid, data_index, data_source, genre, text, planted, score, parts) in enumerate(rows, 1):
        by_index = {int(f): (v, wt, c) for f, v, wt, c in parts}
        contributions = []
        for index, weight in terms:
            v, _, c = by_index.get(index, (0.0, weight, 0.0))
            contributions.append(
                {
                    "index": index,
                    "weight": abs(weight),
                    "sign": "positive" if weight > 0 else "negative",
                    "value": float(v),
                    "max": maxima.get(index),
                    "contribution": float(c or 0.0),
                }
            )
        out.append(
            {
                "rank": rank,
                "passageId": pid,
                "dataIndex": data_index,
                "dataSource": data_source,
                "genre": genre,
                "text": text,
                "planted": planted,
                "score": float(score),
                "contributions": contributions,
            }
        )
    return out


def feature_code_max(*, source: Source, indexes: list[int]) -> dict[int, float]:
    from django.db.models import Max

    rows = (
        PassageCode.objects.filter(source=source, feature_index__in=indexes)
        .values("feature_index")
        .annotate(m=Max("value"))
        .values_list("feature_index", "m")
    )
    return dict(rows)


def source_has_passages(*, source: Source) -> bool:
    return Passage.objects.filter(source=source).exists()


def passage_sources(*, user):
    """Sources with stored passages that this user may list (for the retrieval page)."""
    has = Exists(Passage.objects.filter(source=OuterRef("pk")))
    return (
        Source.objects.filter(listed_q(user), listed_q(user, "source_set__"), listed_q(user, "model__"))
        .filter(has)
        .select_related("model", "source_set")
        .order_by("model_id", "name")
    )


def passage_count(*, source: Source) -> int:
    return Passage.objects.filter(source=source).count()


def genre_spread(*, feature: Feature, top: int = 20) -> dict | None:
    """How a feature's passages spread over genres: of all passages where it fires, and of its top `top`.

    Each genre row: passages in the genre, how many the feature fires on (share of the feature's passages),
    the genre's share of all passages (base rate), lift = share / base rate, and its count among the top ones.
    None when the feature's source has no passages.
    """
    source_id = feature.source_id
    totals = dict(
        Passage.objects.filter(source_id=source_id).values("genre").annotate(n=Count("id")).values_list("genre", "n")
    )
    if not totals:
        return None
    codes = PassageCode.objects.filter(source_id=source_id, feature_index=feature.index, value__gt=0)
    firing = dict(codes.values("passage__genre").annotate(n=Count("id")).values_list("passage__genre", "n"))
    top_rows = list(codes.order_by("-value", "passage__data_index").values_list("passage__genre", flat=True)[:top])
    n_all, n_fire = sum(totals.values()), sum(firing.values())
    rows = []
    for genre, n in totals.items():
        fires = firing.get(genre, 0)
        share = fires / n_fire if n_fire else 0.0
        base = n / n_all
        rows.append(
            {
                "genre": genre or "(none)",
                "passages": n,
                "firing": fires,
                "share": share,
                "base": base,
                "lift": share / base if base else 0.0,
                "top": top_rows.count(genre),
                "firing_rate": fires / n if n else 0.0,
            }
        )
    rows.sort(key=lambda r: (-r["firing"], r["genre"]))
    return {"rows": rows, "n_passages": n_all, "n_firing": n_fire, "n_top": len(top_rows), "top": top}


def toy_sources(*, user):
    """Listed sources of toy models (loader kind toy-cyclic), for the intervention page."""
    return (
        Source.objects.filter(listed_q(user), listed_q(user, "source_set__"), listed_q(user, "model__"))
        .filter(model__loader__kind="toy-cyclic")
        .select_related("model")
        .order_by("model_id", "name")
    )
