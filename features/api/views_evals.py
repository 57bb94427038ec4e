"""SAE benchmark reads: a source's evals in SAEBench's output format.

Neuronpedia's API has no public read of evals (its pages read the database, and evals enter through an admin
upload), so these routes are memicos's own: each eval is Neuronpedia's Eval row (`typeName`, `modelId`,
`sourceId`, `output`, `detailedMetrics` on request) whose `output` is the SAEBench output JSON without its
`eval_result_details`. Visibility is the source's.
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from features.api import outputs as out
from features.api.base import ApiView
from features.api.common import source_or_404
from features.selectors import eval_list_for_source

ERRORS = {400: out.ErrorOut, 401: out.ErrorOut, 404: out.ErrorOut}
TAGS = ["benchmarks"]
SOURCE_PARAMS = [
    OpenApiParameter("model_id", str, OpenApiParameter.PATH, description="modelId"),
    OpenApiParameter("source_id", str, OpenApiParameter.PATH, description="source id, e.g. `6-res-jb`"),
    OpenApiParameter(
        "details", bool, OpenApiParameter.QUERY, required=False,
        description="`true` adds `detailedMetrics` (SAEBench's `eval_result_details`: per latent for core)",
    ),
]  # fmt: skip

EvalOut = out.make_serializer(
    "MemicosEval",
    {
        "id": serializers.CharField(read_only=True),
        "typeName": serializers.CharField(
            read_only=True, help_text="SAEBench's eval_type_id: `core`, `sparse_probing`…"
        ),
        "modelId": serializers.CharField(read_only=True),
        "sourceId": serializers.CharField(read_only=True),
        "output": serializers.JSONField(
            read_only=True,
            help_text="SAEBench's output JSON (eval_type_id, eval_config, eval_id, datetime_epoch_millis, "
            "eval_result_metrics, sae_bench_commit_hash, sae_lens_id, sae_lens_release_id, sae_lens_version, "
            "sae_cfg_dict, eval_result_unstructured) without eval_result_details",
        ),
        "detailedMetrics": serializers.JSONField(read_only=True, required=False, help_text="with ?details=true"),
        "createdAt": serializers.DateTimeField(read_only=True),
        "updatedAt": serializers.DateTimeField(read_only=True),
    },
    doc="One SAE benchmark result of a source, as Neuronpedia's Eval row.",
)


def eval_wire(row, *, details: bool) -> dict:
    data = {
        "id": row.id,
        "typeName": row.type_id,
        "modelId": row.model_id,
        "sourceId": row.source.name,
        "output": row.output,
        "createdAt": row.created_at.isoformat(),
        "updatedAt": row.updated_at.isoformat(),
    }
    if details:
        data["detailedMetrics"] = row.detailed_metrics or []
    return data


def _details(request) -> bool:
    return request.query_params.get("details", "").lower() in ("1", "true", "yes")


class SourceEvalsView(ApiView):
    @extend_schema(
        operation_id="source_evals",
        tags=TAGS,
        summary="A source's SAE benchmark results (memicos extra)",
        description="Every eval of the source, core first. Not in Neuronpedia's API; the source's visibility rules.",
        parameters=SOURCE_PARAMS,
        responses={200: EvalOut(many=True), **ERRORS},
    )
    def get(self, request, model_id: str, source_id: str):
        source = source_or_404(model_id=model_id, source_id=source_id, user=request.user)
        rows = eval_list_for_source(source=source)
        return Response([eval_wire(r, details=_details(request)) for r in rows])


class SourceEvalView(ApiView):
    @extend_schema(
        operation_id="source_eval",
        tags=TAGS,
        summary="One SAE benchmark result of a source, by eval type (memicos extra)",
        parameters=[
            *SOURCE_PARAMS,
            OpenApiParameter("type_name", str, OpenApiParameter.PATH, description="eval type, e.g. `core`"),
        ],
        responses={200: EvalOut, **ERRORS},
    )
    def get(self, request, model_id: str, source_id: str, type_name: str):
        source = source_or_404(model_id=model_id, source_id=source_id, user=request.user)
        row = next((r for r in eval_list_for_source(source=source) if r.type_id == type_name), None)
        if row is None:
            return Response({"message": f"{model_id}/{source_id} has no {type_name!r} eval."}, status=404)
        return Response(eval_wire(row, details=_details(request)))
