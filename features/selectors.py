"""Reads. Every read path (pages, API, search, exports) goes through these, so visibility is decided once.

Visibility: PUBLIC is listed and readable by all; UNLISTED is readable by anyone who has the link but
never listed or searched; PRIVATE is readable by its creator and staff only, and is a 404 for others.
A feature inherits the visibility of its model, source set and source (the strictest wins).
"""

import functools
import inspect
import re
from dataclasses import dataclass
from functools import cached_property

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.backends.postgresql.base import ServerBindingCursor
from django.db.backends.utils import CursorDebugWrapper
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Value, prefetch_related_objects, signals
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.functions import StrIndex, Substr
from django.db.models.query_utils import DeferredAttribute
from django.http import Http404
from psycopg import pq
from psycopg.types.numeric import Int4, Int8

from features.models import (
    Activation,
    Comment,
    Eval,
    EvalType,
    Explanation,
    ExplanationModelType,
    ExplanationScore,
    ExplanationType,
    Feature,
    Job,
    List,
    ListComment,
    ListItem,
    Model,
    Source,
    SourceRelease,
    SourceSet,
    Visibility,
)

FEATURES_PAGE_SIZE = 25  # Neuronpedia's /api/features-offset page
# Search vectors no page or API answer shows: 640 floats an explanation, decoded into numpy arrays if selected.
EXPLANATION_VECTORS = ("embedding", "embedding_256")


def _owner_or_staff(user) -> bool:
    return bool(user and user.is_authenticated and user.is_staff)


def readable_q(user, prefix: str = "", owner: str = "creator") -> Q:
    """Rows this user may open by direct link: PUBLIC, UNLISTED, or their own PRIVATE ones (`owner` names the
    owning user's field)."""
    if _owner_or_staff(user):
        return Q()
    q = Q(**{f"{prefix}visibility__in": [Visibility.PUBLIC, Visibility.UNLISTED]})
    if user is not None and user.is_authenticated:
        q |= Q(**{f"{prefix}{owner}": user})
    return q


def listed_q(user, prefix: str = "", owner: str = "creator") -> Q:
    """Rows that may appear in listings and search results for this user: PUBLIC or their own."""
    if _owner_or_staff(user):
        return Q()
    q = Q(**{f"{prefix}visibility": Visibility.PUBLIC})
    if user is not None and user.is_authenticated:
        q |= Q(**{f"{prefix}{owner}": user})
    return q


def feature_readable_q(user, prefix: str = "") -> Q:
    return (
        readable_q(user, f"{prefix}model__")
        & readable_q(user, f"{prefix}source__")
        & readable_q(user, f"{prefix}source__source_set__")
    )


def feature_listed_q(user, prefix: str = "") -> Q:
    return (
        listed_q(user, f"{prefix}model__")
        & listed_q(user, f"{prefix}source__")
        & listed_q(user, f"{prefix}source__source_set__")
    )


def model_list(*, user) -> QuerySet[Model]:
    return Model.objects.filter(listed_q(user)).order_by("id")


def model_get(*, model_id: str, user) -> Model:
    model = Model.objects.filter(readable_q(user), id=model_id).first()
    if model is None:
        raise Http404(f"Model {model_id!r} not found.")
    return model


def release_list(*, user) -> QuerySet[SourceRelease]:
    return SourceRelease.objects.filter(listed_q(user)).order_by("-featured", "name")


def release_get(*, name: str, user) -> SourceRelease:
    release = SourceRelease.objects.filter(readable_q(user), name=name).first()
    if release is None:
        raise Http404(f"Release {name!r} not found.")
    return release


def source_set_list(*, user, model: Model | None = None, release: SourceRelease | None = None):
    qs = SourceSet.objects.filter(listed_q(user), listed_q(user, "model__")).select_related("model", "release")
    if model is not None:
        qs = qs.filter(model=model)
    if release is not None:
        qs = qs.filter(release=release)
    return qs.order_by("model_id", "name")


def source_set_get(*, model_id: str, name: str, user) -> SourceSet:
    source_set = (
        SourceSet.objects.filter(readable_q(user), readable_q(user, "model__"), model_id=model_id, name=name)
        .select_related("model", "release")
        .first()
    )
    if source_set is None:
        raise Http404(f"Source set {model_id}/{name} not found.")
    return source_set


def source_list(*, user, source_set: SourceSet | None = None, model: Model | None = None) -> QuerySet[Source]:
    qs = Source.objects.filter(listed_q(user), listed_q(user, "source_set__"), listed_q(user, "model__"))
    if source_set is not None:
        qs = qs.filter(source_set=source_set)
    if model is not None:
        qs = qs.filter(model=model)
    return qs.select_related("source_set", "model")


# A sitemap is a public document: it lists what an anonymous visitor finds by browsing (PUBLIC, under PUBLIC parents),
# whoever asks for it, so it never depends on the session and never names an UNLISTED or PRIVATE object.
SITEMAP_PAGE_SIZE = 50_000  # sitemaps.org's limit of URLs in one file


def sitemap_sources() -> list[tuple[Source, int]]:
    """The sources a sitemap lists, each with how many of its features have dashboards (one grouped count, over
    feature_browse_idx), in (model, name) order."""
    sources = list(source_list(user=None).order_by("model_id", "name"))
    counts = dict(
        Feature.objects.filter(source__in=[s.pk for s in sources], max_act_approx__gt=0)
        .values_list("source_id")
        .annotate(n=Count("*"))  # COUNT(*): nothing but the index is read
        .values_list("source_id", "n")
    )
    return [(s, counts.get(s.pk, 0)) for s in sources]


def sitemap_source(*, model_id: str, source_id: str) -> Source:
    source = source_list(user=None).filter(model_id=model_id, name=source_id).first()
    if source is None:
        raise Http404(f"No sitemap for {model_id}/{source_id}.")
    return source


def sitemap_feature_indexes(*, source: Source, page: int) -> list[int]:
    """Page `page` (from 1) of the source's features with dashboards, by index: the source pager's features, read
    from feature_browse_idx alone (an index-only scan, not 50,000 rows of arrays)."""
    start = (page - 1) * SITEMAP_PAGE_SIZE
    qs = Feature.objects.filter(source=source, max_act_approx__gt=0).order_by("index")
    return list(qs.values_list("index", flat=True)[start : start + SITEMAP_PAGE_SIZE])


def sitemap_lists() -> QuerySet[List]:
    return List.objects.filter(list_listed_q(None)).order_by("created_at", "id").only("id")


def sources_sorted(sources) -> list[Source]:
    """Sources by layer number, then name (Neuronpedia's ordering: `2-res` before `10-res`)."""
    return sorted(sources, key=lambda s: (s.layer_number is None, s.layer_number or 0, s.name))


def source_get(*, model_id: str, source_id: str, user) -> Source:
    source = (
        Source.objects.filter(
            readable_q(user),
            readable_q(user, "source_set__"),
            readable_q(user, "model__"),
            model_id=model_id,
            name=source_id,
        )
        .select_related("source_set", "model", "source_set__release")
        .first()
    )
    if source is None:
        raise Http404(f"Source {model_id}/{source_id} not found.")
    return source


def feature_get(*, model_id: str, source_id: str, index: int, user) -> Feature:
    feature = (
        Feature.objects.filter(feature_readable_q(user), model_id=model_id, source__name=source_id, index=index)
        .select_related("model", "source", "source__source_set", "creator")
        .first()
    )
    if feature is None:
        raise Http404(f"Feature {model_id}/{source_id}/{index} not found.")
    return feature


def features_get_many(*, keys: list[tuple[str, str, int]], user) -> dict[tuple[str, str, int], Feature]:
    """Batch lookup by (modelId, layer, index); missing or unreadable keys are absent from the result."""
    if not keys:
        return {}
    q = Q()
    for model_id, source_id, index in keys:
        q |= Q(model_id=model_id, source__name=source_id, index=index)
    rows = Feature.objects.filter(q).filter(feature_readable_q(user)).select_related("source", "model")
    return {(f.model_id, f.source.name, f.index): f for f in rows}


# The strongest activations of each feature: one index probe per feature on activation_feature_max_idx
# (feature, -max_value), reading `limit` rows each rather than all of every feature's activations.
_TOP_ACTIVATIONS_SQL = """
SELECT a.*
FROM unnest(%s::bigint[]) AS f(id)
CROSS JOIN LATERAL (
    SELECT * FROM features_activation
    WHERE feature_id = f.id
    ORDER BY max_value DESC, id
    LIMIT %s
) a
"""


def top_activations_by_feature(*, feature_ids, limit: int) -> dict[int, list[Activation]]:
    """The `limit` strongest activations of each feature (strongest first), in one query."""
    out: dict[int, list[Activation]] = {pk: [] for pk in feature_ids}
    if not out or limit <= 0:
        return out
    for activation in Activation.objects.raw(_TOP_ACTIVATIONS_SQL, [list(out), limit]):
        out[activation.feature_id].append(activation)
    return out


def feature_lists(*, feature: Feature, user) -> QuerySet[List]:
    """The lists holding a feature, as its dashboard lists them: an UNLISTED list is shared by its link only."""
    return (
        List.objects.filter(items__feature=feature)
        .filter(list_listed_q(user))
        .select_related("user")
        .distinct()
        .order_by("-updated_at")
    )


# --- the dashboard read ------------------------------------------------------------------------------------------
# The feature page and GET /api/feature are the busiest reads. Through the ORM each cost six queries whose ~100
# columns of joins Django compiled in Python and Postgres planned anew on every request: ~8 of the API's 12 ms
# (bench/load.py). Here they are three fixed statements on a server-binding cursor, which psycopg prepares after
# DB_PREPARE_THRESHOLD uses on a connection, so each is parsed and planned once per connection. Rows come back as
# model instances (Model.from_db), so presenters and templates read them as they read ORM results. Lists and
# comments, which few features have, go through the ORM, and only when the feature row says there are some.


@dataclass(frozen=True)
class _Part:
    """One table of a hand-written SELECT: its model, its alias, and the to-one field of `parent` it fills."""

    model: type
    alias: str
    parent: str | None = None
    field: str | None = None
    skip: tuple[str, ...] = ()  # columns left out; the instance has them deferred

    @cached_property
    def fields(self) -> list:
        return [f for f in self.model._meta.concrete_fields if f.attname not in self.skip]

    @cached_property
    def attnames(self) -> list[str]:
        return [f.attname for f in self.fields]

    @cached_property
    def pk_at(self) -> int:
        return self.attnames.index(self.model._meta.pk.attname)

    @cached_property
    def plain(self) -> bool:
        """Whether an instance may be built by filling its __dict__: no pre/post_init receivers (read once the apps
        are ready, as receivers connect at import) and only plain column attributes, whose setters would do
        nothing more on a new instance."""
        plain_types = (DeferredAttribute, ForeignKeyDeferredAttribute)
        return not (signals.pre_init.has_listeners(self.model) or signals.post_init.has_listeners(self.model)) and all(
            type(inspect.getattr_static(self.model, a, None)) in plain_types for a in self.attnames
        )

    def build(self, values: list, db):
        """The instance Model.from_db would return (left-out columns deferred), without Model.__init__: 2.9 µs instead
        of 6.8 for an activation row. A dashboard builds ~16 instances."""
        if not self.plain:
            return self.model.from_db(db.alias, self.attnames, values)
        instance = self.model.__new__(self.model)
        instance.__dict__.update(zip(self.attnames, values, strict=True))
        state = instance._state = ModelState()
        state.adding, state.db = False, db.alias
        return instance

    @cached_property
    def converters(self) -> list[tuple[int, list, object]]:
        # JSONField decodes in from_db_value; psycopg gives every other type as the model expects it.
        out = []
        for i, f in enumerate(self.fields):
            if funcs := f.get_db_converters(connection):
                out.append((i, funcs, f.get_col(self.alias)))
        return out


class _Select:
    """SELECT of parts joined along their to-one fields (LEFT JOINs), built once; rows → linked instances."""

    def __init__(self, *parts: _Part, extra: tuple[str, ...] = ()):  # extra: computed columns, returned as they are
        self.parts = parts
        by_alias = {p.alias: p for p in parts}
        columns, joins = [], [f"{parts[0].model._meta.db_table} {parts[0].alias}"]
        for p in parts:
            columns += [f'{p.alias}."{f.column}"' for f in p.fields]
            if p.parent:
                fk = by_alias[p.parent].model._meta.get_field(p.field)
                joins.append(
                    f'LEFT JOIN {p.model._meta.db_table} {p.alias} ON {p.alias}."{fk.target_field.column}" = '
                    f'{p.parent}."{fk.column}"'
                )
        self.sql = f"SELECT {', '.join(columns + list(extra))} FROM {' '.join(joins)}"

    def instances(self, row, db) -> tuple[dict[str, object], tuple]:
        """`db`: the cursor's connection (`django.db.connection` is a thread-local proxy, ~4 µs a lookup)."""
        out, at = {}, 0
        for p in self.parts:
            values = list(row[at : at + len(p.fields)])
            at += len(p.fields)
            if p.parent and values[p.pk_at] is None:  # a null to-one field: the LEFT JOIN found nothing
                instance = None
            else:
                for i, funcs, col in p.converters:
                    for func in funcs:
                        values[i] = func(values[i], col, db)
                instance = p.build(values, db)
            out[p.alias] = instance
            if p.parent and out[p.parent] is not None:
                setattr(out[p.parent], p.field, instance)
        return out, tuple(row[at:])


_USER_SKIP = ("password", "last_login", "date_joined", "email")  # only the name is shown
_FEATURE = _Select(
    _Part(Feature, "f"),
    _Part(Model, "m", "f", "model"),
    _Part(Source, "s", "f", "source"),
    _Part(SourceSet, "ss", "s", "source_set"),
    _Part(get_user_model(), "u", "f", "creator", skip=_USER_SKIP),
    extra=(
        f"EXISTS (SELECT 1 FROM {ListItem._meta.db_table} li WHERE li.feature_id = f.id)",
        f"EXISTS (SELECT 1 FROM {Comment._meta.db_table} c WHERE c.feature_id = f.id)",
    ),
)
# readable_q for model, source and source set (PUBLIC/UNLISTED, or the user's own; staff read everything)
_READABLE = " AND ".join(f"({a}.visibility = ANY(%(open)s) OR {a}.creator_id = %(uid)s)" for a in ("m", "s", "ss"))
_FEATURE_SQL = (
    f"{_FEATURE.sql} WHERE s.model_id = %(model)s AND s.name = %(source)s AND f.model_id = %(model)s "
    f"AND f.index = %(index)s AND (%(staff)s OR ({_READABLE}))"
)
_ACTIVATIONS = _Select(_Part(Activation, "a"))
_ACTIVATIONS_SQL = f"{_ACTIVATIONS.sql} WHERE a.feature_id = %s ORDER BY a.max_value DESC, a.id LIMIT %s"
_EXPLANATIONS = _Select(
    _Part(Explanation, "e", skip=EXPLANATION_VECTORS),
    _Part(ExplanationType, "et", "e", "type"),
    _Part(ExplanationModelType, "em", "e", "explanation_model"),
    _Part(get_user_model(), "tb", "e", "triggered_by", skip=_USER_SKIP),
    _Part(get_user_model(), "au", "e", "author", skip=_USER_SKIP),
    extra=(f"EXISTS (SELECT 1 FROM {ExplanationScore._meta.db_table} sc WHERE sc.explanation_id = e.id)",),
)
_EXPLANATIONS_SQL = (
    f"{_EXPLANATIONS.sql} WHERE e.feature_id = %s ORDER BY e.score_v2 DESC NULLS LAST, e.score_v1 DESC, e.created_at"
)


@dataclass
class Dashboard:
    feature: Feature  # with model, source, source.source_set and creator loaded
    activations: list[Activation]  # strongest first
    explanations: list[Explanation]  # best first, type/model/users loaded, scores prefetched
    lists: list[List]  # readable by the user
    comments: list[Comment]  # oldest first, users loaded


class _DebugCursor(CursorDebugWrapper):
    """Django's query log (DEBUG, tests) with each statement's text: psycopg forgets it once it is prepared."""

    def debug_sql(self, sql=None, params=None, use_last_executed_query=False, many=False):
        return super().debug_sql(sql, params, use_last_executed_query=False, many=many)


def _prepared_cursor():
    """A Django cursor over psycopg's server-binding cursor, whose statements psycopg prepares after the
    connection's prepare_threshold uses (ORM queries stay on client-side binding, which never prepares), with
    binary results."""
    connection.close_if_health_check_failed()  # as connection.cursor() does (CONN_HEALTH_CHECKS)
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        cursor = ServerBindingCursor(connection.connection)
    # Binary results: a dashboard's ~500 activation values and tokens load in a third of the time text takes, and
    # Postgres skips printing each float (memicos_site/db/base.py loads them as Django's text loaders would).
    cursor.format = pq.Format.BINARY
    return _DebugCursor(cursor, connection) if connection.queries_logged else connection.make_cursor(cursor)


def _no_scores() -> QuerySet:
    """An evaluated empty queryset, as prefetch_related leaves one (a bare .none() still compiles when read)."""
    empty = ExplanationScore.objects.none()
    empty._result_cache, empty._prefetch_done = [], True
    return empty


def feature_dashboard(*, model_id: str, source_id: str, index: int, user, limit: int | None = None) -> Dashboard:
    """Everything a feature's dashboard shows, in three statements; 404 as feature_get when unreadable."""
    staff = _owner_or_staff(user)
    uid = user.pk if user is not None and user.is_authenticated else None
    # Integers typed as their columns: psycopg sends a Python int as int2, int4 or int8 by its value, so each
    # statement was prepared two or three times per connection and compared across types (pages/s 6–12 % lower
    # in interleaved runs than with the index sent as text, which Postgres types itself).
    params = {"model": model_id, "source": source_id, "index": Int4(index), "staff": staff, "uid": uid,
              "open": [Visibility.PUBLIC.value, Visibility.UNLISTED.value]}  # fmt: skip
    with _prepared_cursor() as cur:
        cur.execute(_FEATURE_SQL, params)
        row = cur.fetchone()
        if row is None:
            raise Http404(f"Feature {model_id}/{source_id}/{index} not found.")
        parts, (has_lists, has_comments) = _FEATURE.instances(row, cur.db)
        feature = parts["f"]
        cur.execute(_ACTIVATIONS_SQL, [Int8(feature.pk), None if limit is None else Int8(limit)])
        activations = [_ACTIVATIONS.instances(r, cur.db)[0]["a"] for r in cur.fetchall()]
        cur.execute(_EXPLANATIONS_SQL, [Int8(feature.pk)])
        explanations, scored = [], []
        for r in cur.fetchall():
            found, (has_scores,) = _EXPLANATIONS.instances(r, cur.db)
            explanation = found["e"]
            explanations.append(explanation)
            if has_scores:
                scored.append(explanation)
            else:  # `explanation.scores.all()` answers from this empty prefetch, without compiling a query
                explanation._prefetched_objects_cache = {"scores": _no_scores()}
    if scored:
        scores = ExplanationScore.objects.select_related("score_type", "score_model").order_by("-created_at")
        prefetch_related_objects(scored, Prefetch("scores", queryset=scores))
    return Dashboard(
        feature=feature,
        activations=activations,
        explanations=explanations,
        lists=list(feature_lists(feature=feature, user=user)) if has_lists else [],
        comments=list(feature.comments.select_related("user").order_by("created_at")) if has_comments else [],
    )


def features_page(*, source: Source, offset: int = 0, limit: int = FEATURES_PAGE_SIZE) -> list[Feature]:
    """Features with dashboards (maxActApprox > 0) in index order; served by feature_browse_idx."""
    return list(Feature.objects.filter(source=source, max_act_approx__gt=0).order_by("index")[offset : offset + limit])


def features_page_count(*, source: Source) -> int:
    """How many features features_page pages through."""
    return Feature.objects.filter(source=source, max_act_approx__gt=0).count()


# Lists follow the rules of models and sources (a list's owner is its `user`), staff included: they read every
# list, as a profile page showed them, so its links open.
def list_readable_q(user) -> Q:
    return readable_q(user, owner="user")


def list_listed_q(user) -> Q:
    """Lists shown on a dashboard or a profile: PUBLIC, or the viewer's own; UNLISTED ones are shared by link."""
    return listed_q(user, owner="user")


def list_get(*, list_id: str, user) -> List:
    feature_list = List.objects.filter(list_readable_q(user), id=list_id).select_related("user").first()
    if feature_list is None:
        raise Http404(f"List {list_id!r} not found.")
    return feature_list


def list_items(*, feature_list: List, user) -> QuerySet[ListItem]:
    return (
        ListItem.objects.filter(list=feature_list)
        .filter(feature_readable_q(user, "feature__"))
        .select_related("feature", "feature__source", "feature__model")
        .order_by("added_at")
    )


def list_comments(*, feature_list: List) -> QuerySet[ListComment]:
    """The comments of a list (whoever may read the list reads its comments)."""
    return ListComment.objects.filter(list=feature_list).select_related("user").order_by("created_at")


def lists_of_user(*, owner, user) -> QuerySet[List]:
    return List.objects.filter(list_listed_q(user), user=owner).order_by("-updated_at")


def lists_with_counts(*, owner, user) -> QuerySet[List]:
    """lists_of_user, each with `n_items`: how many of its features `user` may read (the others are not shown)."""
    readable = feature_readable_q(user, "items__feature__")
    return lists_of_user(owner=owner, user=user).annotate(
        n_items=Count("items", filter=readable or None, distinct=True)
    )


def releases_with_set_counts(*, user) -> QuerySet[SourceRelease]:
    """release_list, each with `n_sets`: how many of its source sets source_set_list would list to `user`."""
    listed = listed_q(user, "source_sets__") & listed_q(user, "source_sets__model__")
    return release_list(user=user).annotate(n_sets=Count("source_sets", filter=listed or None, distinct=True))


def job_visible_q(user, *, listed: bool = False) -> Q:
    """Jobs this user may see: their own, and those about a model (and source) the pages would show them, joined by
    key. `listed` applies the listing rule (PUBLIC or own) instead of the direct-link one (PUBLIC, UNLISTED or own).
    A source that does not exist yet (an import or a training starting) leaves the model and its set to decide."""
    if _owner_or_staff(user):
        return Q()
    rule = listed_q if listed else readable_q
    model_shown = Exists(Model.objects.filter(rule(user), pk=OuterRef("model_id")))
    source_hidden = Exists(
        Source.objects.filter(model_id=OuterRef("model_id"), name=OuterRef("source_name")).exclude(
            rule(user) & rule(user, "source_set__") & rule(user, "model__")
        )
    )
    # before its source exists, the set its name ends with decides (Neuronpedia's `<layer>-<set>`)
    set_name = Substr(OuterRef("source_name"), StrIndex(OuterRef("source_name"), Value("-")) + 1)
    set_hidden = Exists(
        SourceSet.objects.filter(model_id=OuterRef("model_id"), name=set_name).exclude(
            rule(user) & rule(user, "model__")
        )
    )
    q = model_shown & ~source_hidden & ~set_hidden
    if user is not None and user.is_authenticated:
        q |= Q(created_by=user)
    return q


def job_get(*, job_id: int, user) -> Job | None:
    """The job, or None when it does not exist or this user may not see it."""
    return Job.objects.filter(job_visible_q(user), pk=job_id).first()


def jobs_recent(*, user, limit: int = 10, kinds: list[str] | None = None) -> QuerySet[Job]:
    """Recent jobs this user may see in a listing."""
    qs = Job.objects.filter(job_visible_q(user, listed=True))
    if kinds:
        qs = qs.filter(kind__in=kinds)
    return qs.order_by("-created_at")[:limit]


@functools.cache
def site_top_level_paths() -> frozenset[str]:
    """The fixed first path segments of the site's routes (`steer`, `list`, `api`, ...). A model with such an id
    would have its pages shadowed (pages live at `/<model>/...`), so model/new refuses them. Read from the URLconf,
    so routes added later are covered."""
    from django.urls import URLResolver, get_resolver

    def walk(patterns, prefix: str) -> set[str]:
        out = set()
        for pattern in patterns:
            text = prefix + str(pattern.pattern).lstrip("^")
            first = re.split(r"[/(<$?\[\\]", text)[0]
            if isinstance(pattern, URLResolver) and not first:
                out |= walk(pattern.url_patterns, text)
            elif first:
                out.add(first)
        return out

    return frozenset(walk(get_resolver().url_patterns, ""))


# --- SAE benchmarks (Eval rows in SAEBench's format) -------------------------------------------------------------


def eval_list_for_source(*, source: Source) -> list[Eval]:
    """A readable source's evals, core first (the caller got `source` through source_get: visibility decided)."""
    rows = list(Eval.objects.filter(source=source).select_related("type"))
    return sorted(rows, key=lambda e: (e.type_id != "core", e.type_id))


def _schema_resolve(node, defs: dict, depth: int = 0):
    if isinstance(node, dict) and "$ref" in node and depth < 20:
        target = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
        return _schema_resolve({**target, **{k: v for k, v in node.items() if k != "$ref"}}, defs, depth + 1)
    if isinstance(node, dict) and "allOf" in node and len(node["allOf"]) == 1:
        return _schema_resolve({**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}, defs, depth + 1)
    return node


@dataclass(frozen=True)
class EvalMetric:
    key: str  # `type||category||metric`, Neuronpedia's column id
    type_name: str
    category: str
    metric: str
    title: str
    description: str
    default_display: bool


def eval_type_metrics(eval_type: EvalType) -> list[EvalMetric]:
    """The metrics an eval type's SAEBench schema names (`$ref`s followed), in schema order."""
    schema = eval_type.output_schema or {}
    defs = schema.get("$defs") or schema.get("definitions") or {}
    root = _schema_resolve(((schema.get("properties") or {}).get("eval_result_metrics")) or {}, defs)
    out = []
    for category, cat_node in (root.get("properties") or {}).items():
        cat_node = _schema_resolve(cat_node, defs)
        for metric, node in (cat_node.get("properties") or {}).items():
            node = _schema_resolve(node, defs)
            out.append(
                EvalMetric(
                    key=f"{eval_type.name}||{category}||{metric}",
                    type_name=eval_type.name,
                    category=category,
                    metric=metric,
                    title=node.get("title") or metric,
                    description=node.get("description") or "",
                    default_display=bool(node.get("ui_default_display")),
                )
            )
    return out


def eval_metric_value(output: dict, metric: EvalMetric):
    value = ((output.get("eval_result_metrics") or {}).get(metric.category) or {}).get(metric.metric)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class SaeBenchRow:
    source: Source
    architecture: str
    width: int | None
    values: dict  # metric key → number


def eval_sae_kind(output: dict) -> str | None:
    """`transcoder` or `sae` for an eval computed here (it says so in `eval_result_unstructured`, as SAEBench has no
    field for it); None for another producer's file, whose unstructured part may be anything."""
    extra = output.get("eval_result_unstructured")
    return extra.get("sae_kind") if isinstance(extra, dict) else None


def _architecture(source: Source, outputs: list[dict]) -> str:
    """The SAE's class on /sae-bench; every transcoder (MLP in → out, JumpReLU or skip alike) is one class,
    `transcoder`, as its numbers compare with each other rather than with an SAE's of the same activation."""
    if source.source_set.type == "transcoder" or any(eval_sae_kind(o) == "transcoder" for o in outputs):
        return "transcoder"
    for cfg in [source.saelens_config or {}] + [o.get("sae_cfg_dict") or {} for o in outputs]:
        if cfg.get("architecture"):
            return str(cfg["architecture"])
    return "unknown"


def _width(source: Source, outputs: list[dict]) -> int | None:
    for cfg in [source.saelens_config or {}] + [o.get("sae_cfg_dict") or {} for o in outputs]:
        if isinstance(cfg.get("d_sae"), int):
            return cfg["d_sae"]
    return None


def sae_bench_table(
    *, user, model_ids: list[str] | None = None, architectures: list[str] | None = None, widths: list[int] | None = None
) -> dict:
    """/sae-bench's data: one row per listed source with evals (PRIVATE ones only for their owner and staff), the
    featured eval types' metrics as columns, and the filter choices over all rows before filtering."""
    evals = (
        Eval.objects.filter(
            listed_q(user, "source__"), listed_q(user, "source__source_set__"), listed_q(user, "model__")
        )
        .select_related("source", "source__source_set", "type")
        .defer("detailed_metrics")
        .order_by("model_id", "source__name", "type_id")
    )
    by_source: dict[int, list[Eval]] = {}
    for e in evals:
        by_source.setdefault(e.source_id, []).append(e)
    types = {e.type_id: e.type for group in by_source.values() for e in group}
    metrics = [
        m for t in sorted(types.values(), key=lambda t: (t.name != "core", t.name)) for m in eval_type_metrics(t)
    ]
    rows = []
    for group in by_source.values():
        source = group[0].source
        outputs = [e.output for e in group]
        values = {}
        for e in group:
            for m in metrics:
                if m.type_name == e.type_id and (v := eval_metric_value(e.output, m)) is not None:
                    values[m.key] = v
        rows.append(
            SaeBenchRow(
                source=source, architecture=_architecture(source, outputs), width=_width(source, outputs), values=values
            )
        )
    choices = {
        "models": sorted({r.source.model_id for r in rows}),
        "architectures": sorted({r.architecture for r in rows}),
        "widths": sorted({r.width for r in rows if r.width is not None}),
    }
    if model_ids:
        rows = [r for r in rows if r.source.model_id in model_ids]
    if architectures:
        rows = [r for r in rows if r.architecture in architectures]
    if widths:
        rows = [r for r in rows if r.width in widths]
    rows = sources_sorted_rows(rows)
    shown = [m for m in metrics if m.default_display and any(m.key in r.values for r in rows)]
    return {"rows": rows, "metrics": metrics, "columns": shown, "choices": choices}


def sources_sorted_rows(rows: list[SaeBenchRow]) -> list[SaeBenchRow]:
    order = {id(s): i for i, s in enumerate(sources_sorted([r.source for r in rows]))}
    return sorted(rows, key=lambda r: (r.source.model_id, order[id(r.source)]))
