"""What an instance holds: /api/global, /api/model/get|list, /api/source-set/{modelId}/{name},
/api/source/{modelId}/{sourceId} (memicos extra)."""

from collections import defaultdict

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from features.api import inputs as i
from features.api import outputs as out
from features.api.base import ApiView, AuthedApiView, validated
from features.api.common import source_or_404
from features.api.presenters import (
    lookup_types_wire,
    model_wire,
    release_wire,
    source_set_wire,
    source_wire,
)
from features.models import ExplanationModelType, ExplanationScoreModel, ExplanationScoreType, ExplanationType
from features.selectors import (
    model_get,
    model_list,
    release_list,
    source_list,
    source_set_get,
    source_set_list,
    sources_sorted,
)
from features.services.catalog import model_create, source_set_create

ERRORS = {400: out.ErrorOut, 401: out.ErrorOut, 404: out.ErrorOut}
TAGS = ["models and sources"]


def _source_sets_with_sources(source_sets, *, user) -> list[dict]:
    """Source sets with their listed sources (layer order): two queries for any number of sets."""
    source_sets = list(source_sets)
    by_set = defaultdict(list)
    if source_sets:
        for source in source_list(user=user).filter(source_set__in=source_sets):
            by_set[source.source_set_id].append(source)
    return [
        {
            **source_set_wire(ss),
            "sources": [source_wire(s, set_name=ss.name) for s in sources_sorted(by_set[ss.pk])],
        }
        for ss in source_sets
    ]


class GlobalView(ApiView):
    @extend_schema(
        operation_id="global",
        tags=TAGS,
        summary="Bootstrap payload",
        description=(
            "Models, releases (with their source sets and sources) and the explanation/score type tables. "
            "Only listed items: PUBLIC ones, plus your own."
        ),
        request=None,
        responses={200: out.GlobalOut, 401: out.ErrorOut},
    )
    def post(self, request):
        user = request.user
        releases = list(release_list(user=user))
        sets = _source_sets_with_sources(source_set_list(user=user).filter(release__in=releases), user=user)
        sets_by_release = defaultdict(list)
        for ss in sets:
            sets_by_release[ss["releaseName"]].append(ss)
        return Response(
            {
                "models": [model_wire(x) for x in model_list(user=user)],
                "releases": [{**release_wire(r), "sourceSets": sets_by_release[r.name]} for r in releases],
                **lookup_types_wire(
                    types=ExplanationType.objects.order_by("name"),
                    models=ExplanationModelType.objects.order_by("name"),
                    score_types=ExplanationScoreType.objects.order_by("name"),
                    score_models=ExplanationScoreModel.objects.order_by("name"),
                ),
            }
        )

    @extend_schema(operation_id="global_get", tags=TAGS, summary="Bootstrap payload (GET form)", request=None,
                   responses={200: out.GlobalOut, 401: out.ErrorOut})  # fmt: skip
    def get(self, request):
        return self.post(request)


class ModelGetView(ApiView):
    @extend_schema(
        operation_id="model_get",
        tags=TAGS,
        summary="A model with its source sets and sources",
        request=i.ModelGetIn,
        responses={200: out.ModelWithSourceSetsOut, **ERRORS},
    )
    def post(self, request):
        data = validated(i.ModelGetIn, request.data)
        model = model_get(model_id=data["id"], user=request.user)
        sets = _source_sets_with_sources(source_set_list(user=request.user, model=model), user=request.user)
        return Response({**model_wire(model), "sourceSets": sets})


class ModelListView(ApiView):
    @extend_schema(
        operation_id="model_list",
        tags=TAGS,
        summary="Listed models",
        request=None,
        responses={200: out.ModelOut(many=True), 401: out.ErrorOut},
    )
    def post(self, request):
        return Response([model_wire(x) for x in model_list(user=request.user)])

    @extend_schema(operation_id="model_list_get", tags=TAGS, summary="Listed models (GET form)", request=None,
                   responses={200: out.ModelOut(many=True), 401: out.ErrorOut})  # fmt: skip
    def get(self, request):
        return self.post(request)


class ModelNewView(AuthedApiView):
    throttle_scope = "model-new"

    @extend_schema(
        operation_id="model_new",
        tags=TAGS,
        summary="Create a model (to upload your SAEs' features into)",
        description=(
            "The model is UNLISTED: anyone with its id can open it; it is listed only to you. `id`: 2–32 of "
            "a-z, 0-9, '-', starting with a letter, not a page of the site (`steer`, `list`, ...); `layers` 1–127; `displayName` (≤64) may be null, the id "
            "is shown then. An id in use → 400. Then create a source set on it (source-set/new)."
        ),
        request=i.ModelNewIn,
        responses={200: out.ModelOut, 403: out.ErrorOut, 429: out.ErrorOut, **ERRORS},
    )
    def post(self, request):
        data = validated(i.ModelNewIn, request.data)
        model = model_create(
            user=request.user, model_id=data["id"], layers=data["layers"], display_name=data["displayName"],
            url=data["url"],
        )  # fmt: skip
        return Response(model_wire(model))


class SourceSetNewView(AuthedApiView):
    throttle_scope = "source-set-new"

    @extend_schema(
        operation_id="source_set_new",
        tags=TAGS,
        summary="Create a source set, with one source per layer of its model",
        description=(
            "Sources are named `<layer>-<name>` for layers 0 … layers−1 (Neuronpedia's convention). The set and "
            "its sources are UNLISTED and yours: only you (and staff) upload into them (feature/upload-batch). "
            "`name`: 1–64 of a-z, 0-9, '-' (not `neurons` or the vector sets' names); `description` ≤128. The "
            "model must be one you can open. A name in use → 400."
        ),
        request=i.SourceSetNewIn,
        responses={200: out.SourceSetWithSourcesAndModelOut, 403: out.ErrorOut, 429: out.ErrorOut, **ERRORS},
    )
    def post(self, request):
        data = validated(i.SourceSetNewIn, request.data)
        model = model_get(model_id=data["modelId"], user=request.user)
        source_set = source_set_create(
            user=request.user, model=model, name=data["name"], description=data["description"], url=data["url"]
        )
        body = _source_sets_with_sources([source_set], user=request.user)[0]
        return Response({**body, "model": model_wire(model)})


class SourceSetDetailView(ApiView):
    @extend_schema(
        operation_id="source_set_get",
        tags=TAGS,
        summary="A source set with its sources",
        description=(
            "Sources listed to you: PUBLIC ones and your own. An unknown (or PRIVATE, not yours) set → 404 "
            "(Neuronpedia answers 200 null)."
        ),
        parameters=[
            OpenApiParameter("model_id", str, OpenApiParameter.PATH, description="modelId"),
            OpenApiParameter("name", str, OpenApiParameter.PATH, description="source set name, e.g. `res-jb`"),
        ],
        responses={200: out.SourceSetWithSourcesOut, **ERRORS},
    )
    def get(self, request, model_id: str, name: str):
        try:
            source_set = source_set_get(model_id=model_id, name=name, user=request.user)
        except Http404:
            model_get(model_id=model_id, user=request.user)  # name the unknown model when that is the cause
            raise
        return Response(_source_sets_with_sources([source_set], user=request.user)[0])


class SourceDetailView(ApiView):
    @extend_schema(
        operation_id="source_get",
        tags=TAGS,
        summary="A source (one SAE) with its source set and model (memicos extra)",
        description="Not in Neuronpedia's API; the same visibility rules as the other reads.",
        parameters=[
            OpenApiParameter("model_id", str, OpenApiParameter.PATH, description="modelId"),
            OpenApiParameter("source_id", str, OpenApiParameter.PATH, description="source id, e.g. `6-res-jb`"),
        ],
        responses={200: out.SourceDetailOut, **ERRORS},
    )
    def get(self, request, model_id: str, source_id: str):
        source = source_or_404(model_id=model_id, source_id=source_id, user=request.user)
        return Response(
            {
                **source_wire(source, set_name=source.source_set.name),
                "sourceSet": source_set_wire(source.source_set),
                "model": model_wire(source.model),
            }
        )
