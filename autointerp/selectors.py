"""Reads of autointerp: semantic explanation search and UMAP points, with features.selectors' visibility.

Search = exact-phrase matches first (Postgres full-text `phraseto_tsquery` over the GIN index on
to_tsvector('english', description)), then nearest neighbours of the query embedding over the HNSW
index (`hnsw.ef_search` set per query; pgvector 0.8 iterative scans keep filtered queries (visibility,
scope) from running out of candidates). Only PUBLIC rows (or the user's own) are listed.

A page costs three round trips: the visible source ids, one statement that ranks and returns the page
with its features, and the features' top activations (features.selectors.top_activations_by_feature; bench/search.py: p50 17 ms over 1M explanations
on 2 busy cores, from 45 ms at 200k with an ORM query per part and every embedding read into Python)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, connections, transaction
from pgvector.django import CosineDistance

from autointerp import conf
from features.models import Explanation, Feature, Source, SourceSet
from features.selectors import listed_q

PAGE_SIZE = 20  # Neuronpedia's page
MAX_OFFSET = 10_000  # deepest page of a search (API and page alike): each page asks the index for offset + 21 hits
PHRASE_CAP = 100  # phrase matches ranked first; a phrase this common is not a precise query any more
VECTOR_FIELDS = ("embedding", "embedding_256")  # the HNSW-indexed Explanation columns

# One statement per search, planned so that each part keeps its index:
# - `q`: the query vector, sent once and read through an InitPlan (the HNSW scan takes it as its
#   ORDER BY argument as it takes a literal).
# - `phrase` (MATERIALIZED: planned on its own): the GIN index on the same expression as the migration's
#   `explanation_description_fts` (Django's SearchVector renders COALESCE(description, '')); when the
#   planner expects a common phrase it may walk the HNSW index with the phrase as a filter instead.
#   At most PHRASE_CAP rows either way.
# - `nearest`: `ORDER BY <col> <=> q LIMIT k` over the bare table, so that the HNSW index drives the
#   scan; visibility and scope are a `source_id = ANY(...)` filter on that walk (pgvector's iterative
#   scan goes on past rows the filter drops) rather than joins to model/source/source set, with which
#   Postgres scanned and sorted every row.
# - `page`: the merge sorts only the <= PHRASE_CAP + offset + limit + 1 rows the two return, restoring
#   exact distance order (relaxed_order may return neighbours slightly out of order), and pages.
# - the page (limit + 1 rows, one to tell whether more follow) is then joined to its features, sources
#   and source sets by primary key, so that no further query is needed for them; no embedding (1.5 kB
#   of floats a row) leaves the database.
_SEARCH_SQL = """
WITH q AS (
    SELECT %(vector)s::vector AS v
), phrase AS MATERIALIZED (
    SELECT id, feature_id, {field} <=> (SELECT v FROM q) AS distance
    FROM features_explanation
    WHERE to_tsvector('english'::regconfig, COALESCE(description, ''))
          @@ phraseto_tsquery('english'::regconfig, %(query)s)
      AND source_id = ANY(%(sources)s) AND {field} IS NOT NULL
    ORDER BY distance
    LIMIT %(phrase_cap)s
), nearest AS MATERIALIZED (
    SELECT id, feature_id, {field} <=> (SELECT v FROM q) AS distance
    FROM features_explanation
    WHERE source_id = ANY(%(sources)s) AND {field} IS NOT NULL
    ORDER BY distance
    LIMIT %(wanted)s
), page AS (
    SELECT id, feature_id, distance, true AS phrase_match FROM phrase
    UNION ALL
    SELECT id, feature_id, distance, false FROM nearest WHERE id NOT IN (SELECT id FROM phrase)
    ORDER BY phrase_match DESC, distance, id
    OFFSET %(offset)s
    LIMIT %(page)s
)
SELECT page.distance, page.phrase_match, {explanation}, {feature}, {source}, {source_set}
FROM page
JOIN features_explanation e ON e.id = page.id
JOIN features_feature f ON f.id = page.feature_id
JOIN features_source s ON s.id = f.source_id
JOIN features_sourceset ss ON ss.id = s.source_set_id
ORDER BY page.phrase_match DESC, page.distance, page.id
"""


class _Columns:
    """Some columns of a model in a raw SELECT, and instances built from them as the ORM builds them
    (field converters applied; the fields not selected are deferred)."""

    def __init__(self, model, alias: str, names=None):
        wanted = {model._meta.get_field(n) for n in names} if names else None
        # in the model's order: Model.from_db() matches a partial row to concrete fields in that order
        fields = [f for f in model._meta.concrete_fields if wanted is None or f in wanted]
        self.model, self.alias, self.fields = model, alias, fields
        self.names = tuple(f.attname for f in fields)
        self.sql = ", ".join(f'{alias}."{f.column}"' for f in fields)
        self._converters = None

    def __len__(self) -> int:
        return len(self.fields)

    def build(self, values, conn):
        if self._converters is None:  # once: they depend on the fields and the backend only
            self._converters = [
                (i, convert, field.get_col(self.alias))
                for i, field in enumerate(self.fields)
                for convert in field.get_db_converters(conn)
            ]
        if self._converters:
            values = list(values)
            for i, convert, col in self._converters:
                values[i] = convert(values[i], col, conn)
        return self.model.from_db(conn.alias, self.names, values)


_EXPLANATION = _Columns(
    Explanation, "e", ("id", "feature_id", "model_id", "source_id", "description", "type_id", "explanation_model_id")
)
_FEATURE = _Columns(Feature, "f")
_SOURCE = _Columns(Source, "s", ("id", "name", "source_set_id", "model_id"))
_SOURCE_SET = _Columns(SourceSet, "ss", ("id", "name"))
_IN_ROW = []  # where each model's columns are in a row of _SEARCH_SQL, after distance and phrase_match
for _part in (_EXPLANATION, _FEATURE, _SOURCE, _SOURCE_SET):
    _start = _IN_ROW[-1].stop if _IN_ROW else 2
    _IN_ROW.append(slice(_start, _start + len(_part)))
_SEARCH_SQL_BY_FIELD = {
    field: _SEARCH_SQL.format(
        field=field, explanation=_EXPLANATION.sql, feature=_FEATURE.sql, source=_SOURCE.sql, source_set=_SOURCE_SET.sql
    )
    for field in VECTOR_FIELDS
}


@dataclass
class SearchHit:
    explanation: Explanation
    similarity: float
    phrase_match: bool


def _listed_source_ids(user, *, model_id=None, source_names=None, release_name=None) -> list[int]:
    """The sources whose explanations this user may see in search (and the request's scope).

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
    return list(sources.order_by().values_list("id", flat=True))  # order_by(): no sort for a set of ids


def _scoped(user, *, field: str, **scope):
    return Explanation.objects.filter(source_id__in=_listed_source_ids(user, **scope), **{f"{field}__isnull": False})


def _vector_literal(vector) -> str:
    """pgvector's text form; repr() of a list of floats is one (spaces are allowed)."""
    return repr([float(x) for x in vector])


def _hits(rows) -> list[SearchHit]:
    """SearchHits from rows of _SEARCH_SQL: explanation → feature → source → source set, as model
    instances with the selected fields loaded (one Source instance per source)."""
    conn, sources, hits = connections[connection.alias], {}, []
    for row in rows:
        explanation = _EXPLANATION.build(row[_IN_ROW[0]], conn)
        feature = _FEATURE.build(row[_IN_ROW[1]], conn)
        source_values = row[_IN_ROW[2]]
        if (source := sources.get(source_values[0])) is None:
            source = sources[source_values[0]] = _SOURCE.build(source_values, conn)
            source.source_set = _SOURCE_SET.build(row[_IN_ROW[3]], conn)
        feature.source = source
        explanation.feature = feature
        hits.append(SearchHit(explanation, 1 - row[0], row[1]))
    return hits


def explanation_search(
    *, user, query: str, vector: list[float], field: str = "embedding", model_id: str | None = None,
    source_names: list[str] | None = None, release_name: str | None = None, offset: int = 0,
    limit: int = PAGE_SIZE,
) -> tuple[list[SearchHit], bool]:  # fmt: skip
    """One page of hits (explanation → feature → source → source set loaded) and whether more follow."""
    if field not in VECTOR_FIELDS:
        raise ValueError(f"not an indexed vector column: {field!r}")
    sources = _listed_source_ids(user, model_id=model_id, source_names=source_names, release_name=release_name)
    if not sources:
        return [], False
    wanted = offset + limit + 1
    params = {
        "vector": _vector_literal(vector), "query": query, "sources": sources, "phrase_cap": PHRASE_CAP,
        "wanted": wanted, "offset": offset, "page": limit + 1,
    }  # fmt: skip
    ef_search = max(conf.hnsw_ef_search(), min(wanted, 1000))
    with connection.cursor() as cursor:
        # The settings and the search go in one round trip: outside a transaction block Postgres runs a
        # multi-statement query as one implicit transaction, to which set_config(..., true) is local (in
        # a request-wide transaction they last until its end). This needs Django's default client-side
        # parameter binding. jit off: on a table of millions of rows the estimated cost can cross
        # jit_above_cost, and compiling the plan takes longer than running it.
        cursor.execute(
            f"SELECT set_config('hnsw.ef_search', '{int(ef_search)}', true), "
            "set_config('hnsw.iterative_scan', 'relaxed_order', true), set_config('jit', 'off', true); "
            + _SEARCH_SQL_BY_FIELD[field],
            params,
        )
        cursor.nextset()
        rows = cursor.fetchall()
    return _hits(rows[:limit]), len(rows) > limit


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


UMAP_LABEL_CHARS = 80  # the page's tooltip: the best explanation, cut short (a whole row is ~2.4 KB, 320 MB at 131k)

# One statement for a source's points: per feature only its index, coordinates, cluster, log sparsity and its best
# explanation (one probe per feature on explanation_feature_idx), in index order. No vector, histogram or logit
# column is read: those are what make whole rows ~2.4 KB.
_UMAP_SQL = f"""
SELECT f.index, f.umap_x, f.umap_y, f.umap_cluster, f.umap_log_feature_sparsity, e.label
FROM {Feature._meta.db_table} f
LEFT JOIN LATERAL (
    SELECT {{label}} AS label FROM {Explanation._meta.db_table}
    WHERE feature_id = f.id ORDER BY score_v1 DESC, created_at LIMIT 1
) e ON true
WHERE f.source_id = %s AND f.umap_x IS NOT NULL AND f.umap_y IS NOT NULL
ORDER BY f.index
"""
_UMAP_API_SQL = _UMAP_SQL.format(label="description")
_UMAP_LEAN_SQL = _UMAP_SQL.format(label=f"left(description, {UMAP_LABEL_CHARS})")


def _umap_rows(sql: str, source: Source) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, [source.pk])
        return cursor.fetchall()


def umap_points(*, source: Source) -> list[dict]:
    """Neuronpedia's /api/umap points: features with UMAP coordinates and their best explanation."""
    return [
        {
            "id": f"{source.model_id}@{source.name}@{index}",
            "modelId": source.model_id,
            "layer": source.name,
            "index": str(index),
            "description": label or "",
            "umap_cluster": cluster,
            "umap_x": x,
            "umap_y": y,
            "umap_log_feature_sparsity": log_sparsity,
        }
        for index, x, y, cluster, log_sparsity, label in _umap_rows(_UMAP_API_SQL, source)
    ]


def umap_points_lean(*, source: Source) -> dict[str, list]:
    """The UMAP page's points as columns (`index`, `x`, `y`, `cluster`, `label`): what the scatter draws and its
    tooltip shows, nothing else. Coordinates rounded to 4 decimals (far below a pixel) to keep the JSON small."""
    rows = _umap_rows(_UMAP_LEAN_SQL, source)
    return {
        "index": [r[0] for r in rows],
        "x": [round(r[1], 4) for r in rows],
        "y": [round(r[2], 4) for r in rows],
        "cluster": [r[3] for r in rows],
        "label": [r[5] or "" for r in rows],
    }


# --- a score's breakdown (which examples the scorer judged right or wrong) ---


@dataclass
class BreakdownRow:
    truth: bool  # an activating example (the feature fires on it)
    tokens: list[tuple[str, float]]  # (token, true activation scaled 0–1) for the highlight
    shown: list[tuple[str, bool]]  # the text the scorer saw, (span, highlighted) — fuzzing's <<marks>>
    prediction: int | None = None  # the scorer's 0/1 (detection, fuzzing)
    probability: float | None = None
    correct: bool | None = None
    similarity: float | None = None  # embedding
    simulated: list[tuple[str, float]] | None = None  # simulation: (token, predicted activation scaled 0–1)
    pearson: float | None = None  # simulation: of this example's tokens


@dataclass
class Breakdown:
    score: object  # ExplanationScore
    kind: str  # classifier | embedding | simulation
    summary: dict
    rows: list[BreakdownRow]


def _shown_spans(text: str) -> list[tuple[str, bool]]:
    """Split a fuzzing prompt's <<highlighted>> spans from the rest."""
    import re

    out, pos = [], 0
    for m in re.finditer(r"<<(.*?)>>", text, flags=re.S):
        if m.start() > pos:
            out.append((text[pos : m.start()], False))
        out.append((m.group(1), True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


def score_breakdown(*, score_id: str, user) -> Breakdown:
    """A score with its per-example details parsed; 404 when its feature is not readable by `user`."""
    import json

    from django.http import Http404

    from autointerp.scorers import pearson
    from features.models import ExplanationScore
    from features.selectors import feature_readable_q

    score = (
        ExplanationScore.objects.filter(feature_readable_q(user, "explanation__feature__"), pk=score_id)
        .select_related("explanation__feature__source", "score_type", "score_model")
        .first()
    )
    if score is None:
        raise Http404(f"Score {score_id!r} not found.")
    try:
        details = json.loads(score.json_details or "{}")
    except ValueError:
        details = {}
    if not isinstance(details, dict):
        details = {}
    samples = [s for s in details.get("samples") or [] if isinstance(s, dict)]
    kind = "simulation" if score.score_type_id == "oai_simulation" else (
        "embedding" if score.score_type_id == "eleuther_embedding" else "classifier"
    )  # fmt: skip
    rows = []
    for s in samples:
        tokens = [str(t) for t in s.get("str_tokens") or []]
        acts = [float(v or 0) for v in s.get("activations") or []][: len(tokens)]
        acts += [0.0] * (len(tokens) - len(acts))
        top = max(acts, default=0.0) or 1.0
        simulated = s.get("simulated")
        row = BreakdownRow(
            truth=bool(s.get("ground_truth")),
            tokens=[(t, max(0.0, a / top)) for t, a in zip(tokens, acts, strict=True)],
            shown=_shown_spans(str(s.get("text") or "")) if s.get("highlighted") else [],
            prediction=s.get("prediction"), probability=s.get("probability"), correct=s.get("correct"),
            similarity=s.get("similarity"),
        )  # fmt: skip
        if kind == "simulation" and simulated and len(simulated) == len(acts):
            row.pearson = pearson(acts, [float(v) for v in simulated])
            row.simulated = [(t, max(0.0, min(1.0, float(v) / 10))) for t, v in zip(tokens, simulated, strict=True)]
        rows.append(row)
    # the examples the scorer got wrong first, then by truth: what a reader opens the breakdown for
    rows.sort(key=lambda r: (r.correct is not False, not r.truth))
    return Breakdown(score=score, kind=kind, summary=details.get("summary") or {}, rows=rows)


# --- the feature dashboard's controls for a signed-in user ---


def dashboard_work(*, user, explanations: list) -> dict | None:
    """What the dashboard needs to let `user` explain, score and vote; None for anonymous readers (no queries).
    Two or three small statements: their votes among these explanations, their provider key, known explainers."""
    from autointerp.models import ProviderKey
    from autointerp.services import EXPLANATION_TYPES, HUMAN, SCORE_TYPES
    from features.models import ExplanationModelType, Vote

    if user is None or not user.is_authenticated:
        return None
    voted = set()
    if explanations:
        voted = set(
            Vote.objects.filter(voter_id=user.pk, explanation_id__in=[e.id for e in explanations]).values_list(
                "explanation_id", flat=True
            )
        )
    key = ProviderKey.objects.filter(user_id=user.pk).order_by("-updated_at").only("provider", "last4").first()
    types = [(name, label) for name, (label, _) in EXPLANATION_TYPES.items() if name != HUMAN]
    # the models this user can run: the endpoint's, and with their own key also those explanations were written by
    models = set(conf.explainer_models(name for name, _ in types))
    if key is not None:
        models |= set(ExplanationModelType.objects.order_by("name").values_list("name", flat=True)[:50])
    return {
        "voted": voted,
        "key": key,
        "explain_types": types,
        "default_type": "np_max-act",
        "default_model": conf.model_for("np_max-act", role="explainer"),
        "models": sorted(models),
        "scorers": [(name, label) for name, (label, _) in SCORE_TYPES.items()],
    }


def account_provider_keys(*, user) -> dict:
    """The account page's provider-key card: the user's keys (masked fields only) and the providers to add."""
    from autointerp.models import ProviderKey

    keys = user.provider_keys.order_by("provider").only("id", "provider", "base_url", "last4", "updated_at")
    return {"provider_keys": keys, "providers": ProviderKey.Provider.choices}
