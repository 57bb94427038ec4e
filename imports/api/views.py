"""Upload API (Neuronpedia-compatible): /api/feature/upload-batch, /api/activation/upload-batch, /api/vector/*."""

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from features.api.base import AuthedApiView, validated
from features.api.common import feature_or_404, source_or_404
from features.models import Feature
from features.selectors import model_get
from imports.api import serializers as s
from imports.services.uploads import activations_upload, features_upload, vector_create, vector_delete

ERRORS = {400: s.MessageOut, 401: s.MessageOut, 403: s.MessageOut, 404: s.MessageOut}


def vector_wire(f: Feature) -> dict:
    return {
        "modelId": f.model_id, "layer": f.source.name, "source": f.source.name, "index": f.index,
        "label": f.vector_label, "vectorLabel": f.vector_label, "hookName": f.hook_name,
        "vector": f.vector, "values": f.vector, "defaultSteerStrength": f.vector_default_steer_strength,
        "vectorDefaultSteerStrength": f.vector_default_steer_strength, "createdAt": f.created_at.isoformat(),
    }  # fmt: skip


class FeatureUploadBatchView(AuthedApiView):
    throttle_scope = "upload"
    large_body = True  # up to DATA_UPLOAD_MAX_MEMORY_SIZE (features/api/parsers.py)

    @extend_schema(
        operation_id="feature_upload_batch", tags=["uploads"], summary="Upload dashboards to your source",
        description="1–128 features; owner of the source set only. Re-uploading an index updates the feature.",
        request=s.FeatureUploadBatchIn, responses={200: s.UploadCountsOut, **ERRORS},
    )  # fmt: skip
    def post(self, request):
        data = validated(s.FeatureUploadBatchIn, request.data)
        source = source_or_404(model_id=data["modelId"], source_id=data["source"], user=request.user)
        counts = features_upload(user=request.user, source=source, features=data["features"])
        return Response({"message": f"Uploaded {len(data['features'])} feature(s).", **counts})


class ActivationUploadBatchView(AuthedApiView):
    throttle_scope = "upload"
    large_body = True  # up to DATA_UPLOAD_MAX_MEMORY_SIZE (features/api/parsers.py)

    @extend_schema(
        operation_id="activation_upload_batch", tags=["uploads"], summary="Add activations to your feature or vector",
        request=s.ActivationUploadBatchIn, responses={200: s.MessageOut, **ERRORS},
    )  # fmt: skip
    def post(self, request):
        data = validated(s.ActivationUploadBatchIn, request.data)
        feature = feature_or_404(
            model_id=data["modelId"], source_id=data["source"], index=data["index"], user=request.user
        )
        n = activations_upload(user=request.user, feature=feature, activations=data["activations"])
        return Response({"message": f"Uploaded {n} activation(s)."})


class VectorNewView(AuthedApiView):
    throttle_scope = "upload"
    large_body = True  # up to DATA_UPLOAD_MAX_MEMORY_SIZE (features/api/parsers.py)

    @extend_schema(
        operation_id="vector_new", tags=["vectors"], summary="Store a steering vector as a feature",
        request=s.VectorNewIn, responses={200: s.VectorNewOut, **ERRORS},
    )  # fmt: skip
    def post(self, request):
        data = validated(s.VectorNewIn, request.data)
        model = model_get(model_id=data["modelId"], user=request.user)
        f = vector_create(
            user=request.user, model=model, layer=data["layerNumber"], hook_type=data["hookType"],
            vector=data["vector"], label=data["vectorLabel"], strength=data["vectorDefaultSteerStrength"],
        )  # fmt: skip
        url = request.build_absolute_uri(f"/{f.model_id}/{f.source.name}/{f.index}")
        return Response({"message": "Vector created.", "url": url, "vector": vector_wire(f)})


def _vector(request, data) -> Feature:
    f = feature_or_404(model_id=data["modelId"], source_id=data["source"], index=data["index"], user=request.user)
    if not f.has_vector:
        raise Http404(f"No vector stored for {data['modelId']}/{data['source']}/{data['index']}.")
    return f


class VectorGetView(AuthedApiView):
    @extend_schema(
        operation_id="vector_get", tags=["vectors"], summary="A stored vector",
        request=s.VectorKeyIn, responses={200: s.VectorGetOut, **ERRORS},
    )  # fmt: skip
    def post(self, request):
        return Response({"vector": vector_wire(_vector(request, validated(s.VectorKeyIn, request.data)))})


class VectorDeleteView(AuthedApiView):
    @extend_schema(
        operation_id="vector_delete", tags=["vectors"], summary="Delete your vector",
        request=s.VectorKeyIn, responses={200: s.MessageOut, **ERRORS},
    )  # fmt: skip
    def post(self, request):
        vector_delete(user=request.user, feature=_vector(request, validated(s.VectorKeyIn, request.data)))
        return Response({"message": "Vector deleted."})


class VectorListOwnedView(AuthedApiView):
    @extend_schema(
        operation_id="vector_list_owned", tags=["vectors"], summary="Your vectors",
        request=None, responses={200: s.VectorListOut, 401: s.MessageOut},
    )  # fmt: skip
    def post(self, request):
        qs = (
            Feature.objects.filter(creator=request.user, has_vector=True)
            .select_related("source")
            .order_by("-created_at")
        )
        return Response({"vectors": [vector_wire(f) for f in qs]})
