"""Reads. Every read path (pages, API, search, exports) goes through these, so visibility is decided once.

Visibility: PUBLIC is listed and readable by all; UNLISTED is readable by anyone who has the link but
never listed or searched; PRIVATE is readable by its creator and staff only, and is a 404 for others.
A feature inherits the visibility of its model, source set and source (the strictest wins).
"""

from django.db.models import F, Prefetch, Q, QuerySet, Value
from django.db.models.functions import Concat
from django.http import Http404

from features.models import (
    Activation,
    Explanation,
    ExplanationScore,
    Feature,
    Job,
    List,
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


def readable_q(user, prefix: str = "") -> Q:
    """Rows this user may open by direct link: PUBLIC, UNLISTED, or their own PRIVATE ones."""
    if _owner_or_staff(user):
        return Q()
    q = Q(**{f"{prefix}visibility__in": [Visibility.PUBLIC, Visibility.UNLISTED]})
    if user is not None and user.is_authenticated:
        q |= Q(**{f"{prefix}creator": user})
    return q


def listed_q(user, prefix: str = "") -> Q:
    """Rows that may appear in listings and search results for this user: PUBLIC or their own."""
    if _owner_or_staff(user):
        return Q()
    q = Q(**{f"{prefix}visibility": Visibility.PUBLIC})
    if user is not None and user.is_authenticated:
        q |= Q(**{f"{prefix}creator": user})
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


def feature_activations(*, feature: Feature, limit: int | None = None) -> QuerySet[Activation]:
    qs = Activation.objects.filter(feature=feature).order_by("-max_value", "id")
    return qs[:limit] if limit else qs


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


def feature_explanations(*, feature: Feature) -> QuerySet[Explanation]:
    scores = ExplanationScore.objects.select_related("score_type", "score_model").order_by("-created_at")
    return (
        Explanation.objects.filter(feature=feature)
        .defer(*EXPLANATION_VECTORS)
        .select_related("type", "explanation_model", "triggered_by", "author")
        .prefetch_related(Prefetch("scores", queryset=scores))
        .order_by(F("score_v2").desc(nulls_last=True), "-score_v1", "created_at")
    )


def feature_lists(*, feature: Feature, user) -> QuerySet[List]:
    return (
        List.objects.filter(items__feature=feature)
        .filter(list_readable_q(user))
        .select_related("user")
        .distinct()
        .order_by("-updated_at")
    )


def features_page(*, source: Source, offset: int = 0, limit: int = FEATURES_PAGE_SIZE) -> list[Feature]:
    """Features with dashboards (maxActApprox > 0) in index order; served by feature_browse_idx."""
    return list(Feature.objects.filter(source=source, max_act_approx__gt=0).order_by("index")[offset : offset + limit])


def source_feature_count(*, source: Source) -> int:
    return Feature.objects.filter(source=source).count()


def list_readable_q(user) -> Q:
    q = Q(visibility__in=[Visibility.PUBLIC, Visibility.UNLISTED])
    if user is not None and user.is_authenticated:
        q |= Q(user=user)
    return q


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


def lists_of_user(*, owner, user) -> QuerySet[List]:
    qs = List.objects.filter(user=owner)
    if not (user is not None and user.is_authenticated and (user == owner or user.is_staff)):
        qs = qs.filter(visibility=Visibility.PUBLIC)
    return qs.order_by("-updated_at")


def jobs_recent(*, user, limit: int = 10, kinds: list[str] | None = None) -> QuerySet[Job]:
    """Recent jobs, without those about a source this user may not read (a job names it as `model/source`)."""
    qs = Job.objects.all()
    if kinds:
        qs = qs.filter(kind__in=kinds)
    if not _owner_or_staff(user):
        readable = Source.objects.filter(
            readable_q(user), readable_q(user, "source_set__"), readable_q(user, "model__")
        )
        hidden = (
            Source.objects.exclude(pk__in=readable.values("pk"))
            .annotate(subject=Concat("model_id", Value("/"), "name"))
            .values("subject")
        )
        qs = qs.exclude(subject__in=hidden)
    return qs.order_by("-created_at")[:limit]
