"""The graph API, as Neuronpedia's client 1.2.1 (`GraphRequest`) and webapp call it (reference/graphs.md §3):
signed-put → PUT → save-to-db, get, list-owned, delete, generate; plus list and the JSON for anonymous readers of
PUBLIC graphs, tokenize, labels, and saved subgraphs."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from features.api import outputs as out
from features.api.base import ApiView, AuthedApiView, validated
from features.selectors import model_get
from graphs import selectors
from graphs.models import Graph, Subgraph
from graphs.services import graphs as services
from graphs.services.transcoders import transcoder_set_path
from inference.api.views import ERRORS as INFERENCE_ERRORS
from inference.api.views import InferenceView

TAG = ["graphs"]
ERR = {400: out.ErrorOut, 401: out.ErrorOut, 403: out.ErrorOut, 404: out.ErrorOut}
# a plain string checked by the services: a ChoiceField here would add a second "visibility" enum to the schema
VIS = serializers.CharField(default="PUBLIC", required=False, help_text="PUBLIC (default), UNLISTED or PRIVATE")


# --- wire -------------------------------------------------------------------------------------------------


class GraphUserOut(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()


class GraphOut(serializers.Serializer):
    id = serializers.CharField()
    modelId = serializers.CharField()
    slug = serializers.CharField()
    prompt = serializers.CharField(allow_blank=True)
    promptTokens = serializers.ListField(child=serializers.CharField(allow_blank=True))
    titlePrefix = serializers.CharField(allow_blank=True)
    sourceSetName = serializers.CharField(allow_blank=True)
    isFeatured = serializers.BooleanField()
    url = serializers.URLField(help_text="the graph JSON (gzip); readable by whoever may read the graph")
    pageUrl = serializers.URLField()
    userId = serializers.CharField(allow_null=True)
    user = GraphUserOut(allow_null=True)
    visibility = serializers.CharField()
    status = serializers.ChoiceField(choices=["PENDING", "READY", "FAILED"])
    jobId = serializers.IntegerField(allow_null=True, help_text="the generate job (GET /api/job/<id>)")
    numNodes = serializers.IntegerField()
    numLinks = serializers.IntegerField()
    replacementScore = serializers.FloatField(allow_null=True)
    completenessScore = serializers.FloatField(allow_null=True)
    settings = serializers.JSONField()
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()


def graph_wire(request, graph: Graph) -> dict:
    # the JSON is cached for a minute: an edit (labels, a re-upload) must change its URL, or a reload shows the old
    json_url = request.build_absolute_uri(
        reverse("api-graph-json", kwargs={"model_id": graph.model_id, "slug": graph.slug})
        + f"?v={int(graph.updated_at.timestamp() * 1000)}"
    )
    page = request.build_absolute_uri(f"/{graph.model_id}/graph?slug={graph.slug}")
    user = graph.creator
    return {
        "id": str(graph.pk), "modelId": graph.model_id, "slug": graph.slug, "prompt": graph.prompt,
        "promptTokens": graph.prompt_tokens, "titlePrefix": graph.title_prefix,
        "sourceSetName": graph.source_set_name, "isFeatured": False, "url": json_url, "pageUrl": page,
        "userId": str(user.pk) if user else None, "user": {"id": str(user.pk), "name": user.get_username()} if user else None,
        "visibility": graph.visibility, "status": graph.status, "jobId": graph.job_id,
        "numNodes": graph.n_nodes, "numLinks": graph.n_links, "replacementScore": graph.replacement_score,
        "completenessScore": graph.completeness_score, "settings": graph.params,
        "createdAt": graph.created_at, "updatedAt": graph.updated_at,
    }  # fmt: skip


class SubgraphOut(serializers.Serializer):
    id = serializers.CharField()
    modelId = serializers.CharField()
    slug = serializers.CharField()
    displayName = serializers.CharField(allow_blank=True)
    pinnedIds = serializers.ListField(child=serializers.CharField())
    supernodes = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))
    clerps = serializers.JSONField()
    pruningThreshold = serializers.FloatField(allow_null=True)
    densityThreshold = serializers.FloatField(allow_null=True)
    userId = serializers.CharField()
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()


def subgraph_wire(sub: Subgraph) -> dict:
    return {
        "id": str(sub.pk), "modelId": sub.graph.model_id, "slug": sub.graph.slug, "displayName": sub.display_name,
        "pinnedIds": sub.pinned_ids, "supernodes": sub.supernodes, "clerps": sub.clerps,
        "pruningThreshold": sub.pruning_threshold, "densityThreshold": sub.density_threshold,
        "userId": str(sub.user_id), "createdAt": sub.created_at, "updatedAt": sub.updated_at,
    }  # fmt: skip


# --- inputs -----------------------------------------------------------------------------------------------


class SignedPutIn(serializers.Serializer):
    filename = serializers.CharField(max_length=200)
    contentLength = serializers.IntegerField(help_text="the gzipped size: 1024 bytes to 100 MiB")
    contentType = serializers.CharField(required=False, allow_blank=True)


class SignedPutOut(serializers.Serializer):
    url = serializers.URLField(help_text="PUT the gzip body here (Content-Encoding: gzip) within an hour")
    key = serializers.CharField()
    putRequestId = serializers.CharField()


class SaveToDbIn(serializers.Serializer):
    putRequestId = serializers.CharField(max_length=64)
    visibility = VIS


class GraphMessageUrlOut(serializers.Serializer):
    message = serializers.CharField()
    url = serializers.URLField()


class GraphModelSlugIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    slug = serializers.CharField(max_length=128)


class GraphMessageOut(serializers.Serializer):
    message = serializers.CharField()


def _limit_text(name):
    lo, hi, default = services.GENERATE_LIMITS[name]
    return f"{lo}–{hi}, default {default}"


class GraphGenerateIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    prompt = serializers.CharField(
        max_length=services.MAX_PROMPT_CHARS, trim_whitespace=False,
        help_text=f"at most {services.MAX_PROMPT_TOKENS} tokens (BOS included) and {services.MAX_PROMPT_CHARS} characters",
    )  # fmt: skip
    slug = serializers.CharField(
        max_length=128, required=False, allow_blank=True, help_text="made up when shorter than 2"
    )
    maxNLogits = serializers.IntegerField(required=False, help_text=_limit_text("maxNLogits"))
    desiredLogitProb = serializers.FloatField(required=False, help_text=_limit_text("desiredLogitProb"))
    nodeThreshold = serializers.FloatField(required=False, help_text=_limit_text("nodeThreshold"))
    edgeThreshold = serializers.FloatField(required=False, help_text=_limit_text("edgeThreshold"))
    maxFeatureNodes = serializers.IntegerField(
        required=False, help_text=_limit_text("maxFeatureNodes") + " feature nodes"
    )
    sourceSetName = serializers.CharField(
        required=False, allow_blank=True, help_text="a transcoder set you may read; default the newest you may list"
    )
    visibility = VIS
    wait = serializers.BooleanField(
        default=True, help_text="wait for the graph (as Neuronpedia does), at most the server's "
        "MEMICOS_GRAPH_GENERATE_WAIT_S; false: answer 202 at once and let the caller follow jobId",
    )  # fmt: skip


class GraphGenerateOut(serializers.Serializer):
    message = serializers.CharField()
    url = serializers.URLField(help_text="the graph's page")
    s3url = serializers.URLField(help_text="the graph JSON")
    numNodes = serializers.IntegerField(allow_null=True, help_text="null while the job runs")
    numLinks = serializers.IntegerField(allow_null=True)
    jobId = serializers.IntegerField()
    status = serializers.CharField(help_text="the graph's: READY (200), PENDING (202) or FAILED (422)")


class GraphGenerateFailedOut(serializers.Serializer):
    message = serializers.CharField()
    jobId = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()


class GraphTokenizeIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    prompt = serializers.CharField(max_length=services.MAX_PROMPT_CHARS, trim_whitespace=False)
    maxNLogits = serializers.IntegerField(required=False, help_text=_limit_text("maxNLogits"))
    desiredLogitProb = serializers.FloatField(required=False, help_text=_limit_text("desiredLogitProb"))


class SalientLogitOut(serializers.Serializer):
    token = serializers.CharField(allow_blank=True)
    token_id = serializers.IntegerField()
    probability = serializers.FloatField()


class GraphTokenizeOut(serializers.Serializer):
    prompt = serializers.CharField()
    input_tokens = serializers.ListField(child=serializers.CharField(allow_blank=True))
    input_token_ids = serializers.ListField(child=serializers.IntegerField())
    salient_logits = SalientLogitOut(
        many=True, help_text="the next-token candidates a graph gets logit nodes for: the most probable first, until "
        "their probabilities reach desiredLogitProb, at most maxNLogits (empty when the prompt is too long)",
    )  # fmt: skip
    total_salient_tokens = serializers.IntegerField()
    cumulative_probability = serializers.FloatField()
    max_prompt_tokens = serializers.IntegerField()
    too_long = serializers.BooleanField()


class ClerpsIn(GraphModelSlugIn):
    clerps = serializers.JSONField(help_text="[[nodeId or layer_feature_ctx, label], ...]")


class SubgraphSaveIn(GraphModelSlugIn):
    displayName = serializers.CharField(required=False, allow_blank=True, max_length=255)
    pinnedIds = serializers.JSONField()
    supernodes = serializers.JSONField(required=False, default=list)
    clerps = serializers.JSONField(required=False, default=list)
    pruningThreshold = serializers.FloatField(required=False, allow_null=True)
    densityThreshold = serializers.FloatField(required=False, allow_null=True)
    overwriteId = serializers.CharField(required=False, allow_blank=True, allow_null=True)


class SubgraphSaveOut(serializers.Serializer):
    success = serializers.BooleanField()
    subgraphId = serializers.CharField()


class SubgraphListOut(serializers.Serializer):
    success = serializers.BooleanField()
    subgraphs = SubgraphOut(many=True)


class SubgraphDeleteIn(serializers.Serializer):
    subgraphId = serializers.CharField(max_length=32)


class GraphSuccessOut(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField()


# --- views ------------------------------------------------------------------------------------------------


def _ip(request) -> str:
    return request.META.get("REMOTE_ADDR", "")


class SignedPutView(AuthedApiView):
    throttle_scope = "graph-upload"

    @extend_schema(
        operation_id="graph_signed_put", tags=TAG, summary="Start a graph upload: a URL to PUT the gzip JSON at",
        request=SignedPutIn, responses={200: SignedPutOut, **ERR},
    )  # fmt: skip
    def post(self, request):
        data = validated(SignedPutIn, request.data)
        ticket = services.graph_put_request_create(
            user=request.user, filename=data["filename"], content_length=data["contentLength"], ip_address=_ip(request)
        )
        url = request.build_absolute_uri(reverse("api-graph-put", kwargs={"put_request_id": str(ticket.pk)}))
        return Response({"url": url, "key": ticket.storage_key, "putRequestId": str(ticket.pk)})


class PutView(ApiView):
    """The upload target. Its secret is the ticket id in the URL (as a presigned S3 URL's signature is)."""

    authentication_classes: list = []
    parser_classes: list = []
    throttle_classes: list = []

    @extend_schema(
        operation_id="graph_put", tags=TAG, summary="Upload the gzip graph JSON (the URL signed-put returned)",
        description=f"Body: the graph JSON, gzip-encoded, at most {services.MAX_UPLOAD_BYTES:,} bytes.",
        request={"application/octet-stream": OpenApiTypes.BINARY}, responses={200: GraphMessageOut, **ERR},
    )  # fmt: skip
    def put(self, request, put_request_id: str):
        size = services.graph_put_receive(put_request_id=put_request_id, stream=request._request)
        return Response({"message": f"received {size} bytes"})


class SaveToDbView(AuthedApiView):
    @extend_schema(
        operation_id="graph_save_to_db", tags=TAG, summary="Finish an upload: validate the graph and save it",
        description="The JSON is checked against the graph schema (required keys, node ids unique, links naming "
        "nodes); a problem is a 400 that names it. metadata.scan must name a model here.",
        request=SaveToDbIn, responses={200: GraphMessageUrlOut, **ERR},
    )  # fmt: skip
    def post(self, request):
        data = validated(SaveToDbIn, request.data)
        graph = services.graph_save_uploaded(
            user=request.user, put_request_id=data["putRequestId"], visibility=data["visibility"]
        )
        return Response({"message": "Graph saved.", "url": graph_wire(request, graph)["pageUrl"]})


class GraphDetailView(ApiView):
    @extend_schema(
        operation_id="graph_get", tags=TAG, summary="A graph's metadata",
        description="PUBLIC and UNLISTED graphs for anyone; PRIVATE ones for their owner only (404 to others).",
        responses={200: GraphOut, 404: out.ErrorOut},
    )  # fmt: skip
    def get(self, request, model_id: str, slug: str):
        return Response(graph_wire(request, selectors.graph_get(model_id=model_id, slug=slug, user=request.user)))


class GraphJsonView(ApiView):
    @extend_schema(
        operation_id="graph_json", tags=TAG, summary="A graph's JSON (Neuronpedia's graph schema)",
        description="Sent gzip-encoded to clients that accept gzip. Visibility as for the metadata.",
        responses={(200, "application/json"): OpenApiTypes.OBJECT, 404: out.ErrorOut},
    )  # fmt: skip
    def get(self, request, model_id: str, slug: str):
        import gzip

        graph = selectors.graph_get(model_id=model_id, slug=slug, user=request.user)
        body = services.graph_json_bytes(graph=graph)
        if "gzip" in request.META.get("HTTP_ACCEPT_ENCODING", ""):
            response = HttpResponse(body, content_type="application/json")
            response["Content-Encoding"] = "gzip"
        else:
            response = HttpResponse(gzip.decompress(body), content_type="application/json")
        response["Vary"] = "Accept-Encoding, Cookie, X-Api-Key"
        response["Cache-Control"] = "private, max-age=60" if graph.visibility != "PUBLIC" else "public, max-age=60"
        return response


class ListOwnedView(AuthedApiView):
    @extend_schema(
        operation_id="graph_list_owned", tags=TAG, summary="The caller's graphs",
        request=None, responses={200: GraphOut(many=True), 401: out.ErrorOut},
    )  # fmt: skip
    def post(self, request):
        return Response([graph_wire(request, g) for g in selectors.graph_list_owned(user=request.user)[:1000]])


class GraphListView(ApiView):
    @extend_schema(
        operation_id="graph_list", tags=TAG, summary="Listed graphs: PUBLIC ones (and the caller's own)",
        parameters=[
            OpenApiParameter("modelId", str, required=False),
            OpenApiParameter("user", str, required=False, description="an owner's username"),
        ],
        responses={200: GraphOut(many=True)},
    )  # fmt: skip
    def get(self, request):
        model_id, owner = request.GET.get("modelId") or None, request.GET.get("user") or None
        if "\x00" in (model_id or "") + (owner or ""):
            return Response([])  # Postgres text cannot hold NUL: nothing can match
        qs = selectors.graph_list(user=request.user, model_id=model_id, owner_username=owner)
        return Response([graph_wire(request, g) for g in qs[:500]])


class DeleteView(AuthedApiView):
    @extend_schema(
        operation_id="graph_delete", tags=TAG, summary="Delete a graph (its owner only)",
        request=GraphModelSlugIn, responses={200: GraphMessageOut, **ERR},
    )  # fmt: skip
    def post(self, request):
        data = validated(GraphModelSlugIn, request.data)
        services.graph_delete(user=request.user, model_id=data["modelId"], slug=data["slug"])
        return Response({"message": "Graph deleted."})


class GenerateView(ApiView):
    throttle_scope = "graph-generate"

    @extend_schema(
        operation_id="graph_generate", tags=TAG, summary="Generate an attribution graph with the model's transcoders",
        description="Queues a `graph_generate` job and, like Neuronpedia, answers once the graph exists (200, "
        "status READY). It waits at most the server's MEMICOS_GRAPH_GENERATE_WAIT_S (default 100 s); after that, "
        "or at once with `wait: false`, it answers 202 with `jobId` to follow at GET /api/job/<id> (or the graph's "
        "`status`). A failed generation answers 422 with the job's error. Limits: "
        + "; ".join(f"{k} {_limit_text(k)}" for k in services.GENERATE_LIMITS)
        + f"; prompt at most {services.MAX_PROMPT_TOKENS} tokens (BOS included). Anonymous graphs are PUBLIC.",
        request=GraphGenerateIn, responses={200: GraphGenerateOut, 202: GraphGenerateOut, 422: GraphGenerateFailedOut, **ERR},
    )  # fmt: skip
    def post(self, request):
        from django.conf import settings as django_settings

        data = validated(GraphGenerateIn, request.data)
        model = model_get(model_id=data["modelId"], user=request.user)
        settings = {k: data[k] for k in services.GENERATE_LIMITS if k in data}
        graph = services.graph_generate_start(
            model=model, prompt=data["prompt"], slug=data.get("slug", ""), settings=settings, user=request.user,
            source_set_name=data.get("sourceSetName", ""),
            visibility=data["visibility"] if request.user.is_authenticated else "PUBLIC",
        )  # fmt: skip
        wait_s = django_settings.GRAPH_GENERATE_WAIT_S if data["wait"] else 0
        graph = services.graph_generate_wait(graph=graph, timeout_s=wait_s)
        failure = services.graph_generate_failure(graph)
        if failure:
            return Response({"message": failure, "jobId": graph.job_id, "status": Graph.Status.FAILED}, status=422)
        wire = graph_wire(request, graph)
        ready = graph.status == Graph.Status.READY
        message = "Graph generated." if ready else f"Graph {graph.status.lower()}: follow job {graph.job_id}."
        return Response({
            "message": message, "url": wire["pageUrl"], "s3url": wire["url"], "numNodes": graph.n_nodes if ready else None,
            "numLinks": graph.n_links if ready else None, "jobId": graph.job_id, "status": graph.status,
        }, status=200 if ready else 202)  # fmt: skip


class TokenizeView(InferenceView):
    throttle_scope = "util"

    @extend_schema(
        operation_id="graph_tokenize", tags=TAG, summary="Tokenize a prompt as graph generation will",
        request=GraphTokenizeIn, responses={200: GraphTokenizeOut, **ERR, **INFERENCE_ERRORS},
    )  # fmt: skip
    def post(self, request):
        from inference import services as inference_services
        from inference import tasks

        data = validated(GraphTokenizeIn, request.data)
        model = model_get(model_id=data["modelId"], user=request.user)
        logit_params = services.salient_logit_params(data)
        payload = {
            "text": data["prompt"], "prepend_bos": True, "salient_logits": logit_params,
            "salient_max_tokens": services.MAX_PROMPT_TOKENS,
        }  # fmt: skip
        result = inference_services.inference_call(model=model, task=tasks.tokenize, payload=payload)
        salient = result.get("salientLogits") or {
            "salient_logits": [], "total_salient_tokens": 0, "cumulative_probability": 0.0
        }  # fmt: skip
        return Response({
            "prompt": data["prompt"], "input_tokens": result["tokenStrings"], "input_token_ids": result["tokens"],
            **salient, "max_prompt_tokens": services.MAX_PROMPT_TOKENS,
            "too_long": len(result["tokens"]) > services.MAX_PROMPT_TOKENS,
        })  # fmt: skip


class ClerpsView(AuthedApiView):
    @extend_schema(
        operation_id="graph_clerps", tags=TAG, summary="Edit node labels (the graph's owner)",
        request=ClerpsIn, responses={200: GraphOut, **ERR},
    )  # fmt: skip
    def post(self, request):
        data = validated(ClerpsIn, request.data)
        graph = selectors.graph_get(model_id=data["modelId"], slug=data["slug"], user=request.user)
        graph = services.graph_clerps_set(user=request.user, graph=graph, clerps=data["clerps"])
        return Response(graph_wire(request, graph))


class SubgraphSaveView(AuthedApiView):
    @extend_schema(
        operation_id="graph_subgraph_save", tags=TAG, summary="Save pins, supernodes, labels and thresholds",
        request=SubgraphSaveIn, responses={200: SubgraphSaveOut, **ERR},
    )  # fmt: skip
    def post(self, request):
        data = validated(SubgraphSaveIn, request.data)
        graph = selectors.graph_get(model_id=data["modelId"], slug=data["slug"], user=request.user)
        sub = services.subgraph_save(
            user=request.user, graph=graph, display_name=data.get("displayName", ""), pinned_ids=data["pinnedIds"],
            supernodes=data["supernodes"], clerps=data["clerps"], pruning_threshold=data.get("pruningThreshold"),
            density_threshold=data.get("densityThreshold"), overwrite_id=data.get("overwriteId"),
        )  # fmt: skip
        return Response({"success": True, "subgraphId": str(sub.pk)})


class SubgraphListView(AuthedApiView):
    @extend_schema(
        operation_id="graph_subgraph_list", tags=TAG, summary="The caller's saved subgraphs of a graph",
        request=GraphModelSlugIn, responses={200: SubgraphListOut, **ERR},
    )  # fmt: skip
    def post(self, request):
        data = validated(GraphModelSlugIn, request.data)
        graph = selectors.graph_get(model_id=data["modelId"], slug=data["slug"], user=request.user)
        subs = selectors.subgraph_list(graph=graph, user=request.user)
        return Response({"success": True, "subgraphs": [subgraph_wire(s) for s in subs]})


class SubgraphDetailView(ApiView):
    @extend_schema(
        operation_id="graph_subgraph_get", tags=TAG, summary="A saved subgraph (readable with its graph)",
        responses={200: SubgraphOut, 404: out.ErrorOut},
    )  # fmt: skip
    def get(self, request, subgraph_id: str):
        return Response(subgraph_wire(selectors.subgraph_get(subgraph_id=subgraph_id, user=request.user)))


class SubgraphDeleteView(AuthedApiView):
    @extend_schema(
        operation_id="graph_subgraph_delete", tags=TAG, summary="Delete a saved subgraph (its owner)",
        request=SubgraphDeleteIn, responses={200: GraphSuccessOut, **ERR},
    )  # fmt: skip
    def post(self, request):
        data = validated(SubgraphDeleteIn, request.data)
        services.subgraph_delete(user=request.user, subgraph_id=data["subgraphId"])
        return Response({"success": True, "message": "Subgraph deleted."})


# --- steer-logits (reference/graphs.md §6) -------------------------------------------------------------


class SteerLogitsFeatureIn(serializers.Serializer):
    layer = serializers.IntegerField(min_value=0)
    index = serializers.IntegerField(min_value=0)
    token_active_position = serializers.IntegerField(min_value=0)
    steer_position = serializers.IntegerField(min_value=0, required=False, allow_null=True, default=None)
    steer_generated_tokens = serializers.BooleanField(required=False, default=False)
    delta = serializers.FloatField(required=False, allow_null=True, default=None)
    ablate = serializers.BooleanField(required=False, default=False)
    value = serializers.FloatField(
        required=False, allow_null=True, default=None,
        help_text="memicos: clamp to this activation (absolute), instead of ablate or delta",
    )  # fmt: skip


class SteerLogitsIn(serializers.Serializer):
    modelId = serializers.CharField(max_length=128)
    sourceSetName = serializers.CharField(
        max_length=255, required=False, allow_blank=True, help_text="default: the newest transcoder set you may list"
    )
    prompt = serializers.CharField(max_length=services.MAX_PROMPT_CHARS, trim_whitespace=False)
    features = SteerLogitsFeatureIn(many=True, allow_empty=False, max_length=64)
    nTokens = serializers.IntegerField(min_value=1, max_value=256, default=10)
    topK = serializers.IntegerField(min_value=1, max_value=10, default=5)
    freezeAttention = serializers.BooleanField(default=True)
    temperature = serializers.FloatField(min_value=0, max_value=2, default=0.0)
    freqPenalty = serializers.FloatField(min_value=-2, max_value=2, default=0.0)
    seed = serializers.IntegerField(default=16, min_value=0, max_value=2**31 - 1)


class TopLogitOut(serializers.Serializer):
    token = serializers.CharField(allow_blank=True)
    prob = serializers.FloatField()


class TokenLogitsOut(serializers.Serializer):
    token = serializers.CharField(allow_blank=True)
    top_logits = TopLogitOut(many=True)


class SteerLogitsOut(serializers.Serializer):
    DEFAULT_GENERATION = serializers.CharField(allow_blank=True)
    STEERED_GENERATION = serializers.CharField(allow_blank=True)
    DEFAULT_LOGITS_BY_TOKEN = TokenLogitsOut(many=True)
    STEERED_LOGITS_BY_TOKEN = TokenLogitsOut(many=True)


class SteerLogitsView(InferenceView):
    throttle_scope = "steer"

    @extend_schema(
        operation_id="steer_logits", tags=TAG, summary="Intervene on transcoder features (from a graph)",
        description="Clamp features to 0 (`ablate`), to their activation at `token_active_position` plus `delta`, "
        "or to an absolute `value`, at `steer_position` or on every generated token (`steer_generated_tokens`); "
        "the default and steered continuations with the top next-token probabilities per step. A feature at "
        "position 0 (BOS) is dropped, as Neuronpedia's graph server does. Runs on the model's inference worker.",
        request=SteerLogitsIn, responses={200: SteerLogitsOut, **ERR, **INFERENCE_ERRORS},
    )  # fmt: skip
    def post(self, request):
        from inference import services as inference_services
        from inference import tasks

        model_id = request.data.get("modelId") if isinstance(request.data, dict) else None
        if isinstance(model_id, str) and 0 < len(model_id) <= 128 and "\x00" not in model_id:
            model_get(model_id=request.data["modelId"], user=request.user)  # an unreadable model: 404 before all else
        data = validated(SteerLogitsIn, request.data)
        model = model_get(model_id=data["modelId"], user=request.user)
        features = [dict(f) for f in data["features"]]
        for i, f in enumerate(features):
            if [f["ablate"], f["delta"] is not None, f["value"] is not None].count(True) != 1:
                raise DjangoValidationError(f"features[{i}]: give exactly one of ablate: true, a delta or a value")
            if f["steer_generated_tokens"] == (f["steer_position"] is not None):
                raise DjangoValidationError(
                    f"features[{i}]: give either a steer_position or steer_generated_tokens: true"
                )
        source_set = services.graph_source_set(model=model, name=data.get("sourceSetName", ""), user=request.user)
        try:
            set_path = transcoder_set_path(source_set=source_set)
        except ValueError as exc:
            raise DjangoValidationError(str(exc)) from exc
        payload = {
            "transcoder_set_path": str(set_path), "prompt": data["prompt"],
            "features": features, "n_tokens": data["nTokens"], "top_k": data["topK"],
            "freeze_attention": data["freezeAttention"], "temperature": data["temperature"],
            "freq_penalty": data["freqPenalty"], "seed": data["seed"],
        }  # fmt: skip
        return Response(inference_services.inference_call(model=model, task=tasks.steer_logits, payload=payload))
