"""Live-inference routes: activation testing, search via inference, top-k by token, tokenize, cossim, steering.

Each view validates the body, resolves model/source/feature rows (404 if unknown or private to others),
and calls one service that enqueues a task on the model's queue (inference/services.py).
"""

from __future__ import annotations

import contextlib
import json

from django.http import Http404, StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from features.api.base import ApiView, validated
from features.api.common import feature_or_404, source_or_404
from features.models import Feature
from features.selectors import features_get_many, model_get, source_list, source_set_get
from inference import services, tasks
from inference.api import inputs as inp
from inference.api import outputs as out
from inference.api import presenters as pres
from inference.selectors import steer_output_get
from inference.services import InferenceError, SteerRequest

ERRORS = {
    400: out.ErrorOut,
    404: out.ErrorOut,
    503: OpenApiResponse(out.ErrorOut, description="No worker for the model, or its queue is full (Retry-After)."),
    504: OpenApiResponse(out.ErrorOut, description="The worker did not answer in time."),
}


def error_response(exc: InferenceError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return Response({"message": exc.message}, status=exc.status, headers=headers)


class InferenceView(ApiView):
    throttle_scope = "util"  # features/api/throttles.py; subclasses name their own Neuronpedia scope

    def handle_exception(self, exc):
        if isinstance(exc, InferenceError):
            return error_response(exc)
        return super().handle_exception(exc)

    def body(self, serializer_class):
        return validated(serializer_class, inp.canonical(self.request.data))


def _inference_model(model_id: str, user):
    return model_get(model_id=model_id, user=user)


def _exclude_dense(sources, threshold: float) -> dict[str, list[int]]:
    """Density filter: features firing on more than `threshold` of tokens (Feature.frac_nonzero); -1 or 0 is off."""
    if threshold <= 0:
        return {}
    rows = Feature.objects.filter(source__in=sources, frac_nonzero__gt=threshold).values_list("source__name", "index")
    out: dict[str, list[int]] = {}
    for name, index in rows:
        out.setdefault(name, []).append(index)
    return out


class ActivationNewView(InferenceView):
    throttle_scope = "activation"

    @extend_schema(
        operation_id="activation_new",
        tags=["inference"],
        summary="One feature (or vector) on custom text",
        description=(
            "Runs the model to the feature's hook and encodes with its SAE (vector features: dot product with "
            "the vector). The BOS string is prepended when absent; SAE values at BOS are zeroed and the BOS "
            "position dropped. `customText` may be a list → an array of results. Legacy `neuron` accepted."
        ),
        request=inp.ActivationNewIn,
        responses={200: out.ActivationNewOut, **ERRORS},
    )
    def post(self, request):
        data = self.body(inp.ActivationNewIn)
        ref = data["feature"]
        feature = feature_or_404(
            model_id=ref["modelId"], source_id=ref["source"], index=ref["index"], user=request.user
        )
        texts = data["customText"]
        result = services.inference_call(
            model=feature.model,
            task=tasks.activation_single,
            payload={"probe": services.feature_probe(feature), "texts": texts["texts"]},
        )
        rows = [
            pres.activation_new_wire(r, feature=feature, ignore_bos=data["ignoreBos"], user=request.user)
            for r in result["results"]
        ]
        return Response(rows if texts["batch"] else rows[0])


class ActivationSourceView(InferenceView):
    throttle_scope = "activation"

    @extend_schema(
        operation_id="activation_source",
        tags=["inference"],
        summary="All non-zero features of one source for up to 4 texts",
        request=inp.ActivationSourceIn,
        responses={200: out.ActivationSourceOut, **ERRORS},
    )
    def post(self, request):
        data = self.body(inp.ActivationSourceIn)
        source = source_or_404(model_id=data["modelId"], source_id=data["source"], user=request.user)
        result = services.inference_call(
            model=source.model,
            task=tasks.activation_source,
            payload={"sae": services.sae_ref(source), "texts": data["customText"]["texts"]},
        )
        return Response(result)


class SearchAllView(InferenceView):
    throttle_scope = "search-all"

    @extend_schema(
        operation_id="search_all",
        tags=["inference"],
        summary="Top features of a text across a source set",
        description=(
            "One forward pass to the deepest selected hook, every SAE encoded from the same cache. Ranked by max "
            "over tokens, or by the sum at `sortIndexes` (token positions, BOS = 0). `densityThreshold` drops "
            "features whose frac_nonzero exceeds it. Cached (SavedSearch): the same query is answered from the DB."
        ),
        request=inp.SearchAllInferenceIn,
        responses={200: out.SearchAllInferenceOut, **ERRORS},
    )
    def post(self, request):
        data = self.body(inp.SearchAllInferenceIn)
        model = _inference_model(data["modelId"], request.user)
        source_set = source_set_get(model_id=model.id, name=data["sourceSet"], user=request.user)
        sources = [s for s in source_list(user=request.user, source_set=source_set) if s.sae_path or s.saelens_release]
        if data["selectedLayers"]:
            by_name = {s.name: s for s in sources}
            missing = [name for name in data["selectedLayers"] if name not in by_name]
            if missing:
                raise Http404(
                    f"Source(s) {', '.join(missing)} not found in {model.id}/{source_set.name} (or without an SAE)."
                )
            sources = [by_name[name] for name in data["selectedLayers"]]
        if not sources:
            raise ValidationError({"sourceSet": f"{source_set.name} has no source with an SAE for inference."})
        base = {
            "saes": {s.name: services.sae_ref(s) for s in sources},
            "sort_indexes": data["sortIndexes"],
            "ignore_bos": data["ignoreBos"],
            "num_results": data["numResults"],
            "exclude": _exclude_dense(sources, data["densityThreshold"]),
        }
        bodies = []
        for text in data["text"]["texts"]:
            params = {
                "text": text,
                "sourceSet": source_set.name,
                "selectedLayers": sorted(s.name for s in sources),
                "sortIndexes": data["sortIndexes"],
                "ignoreBos": data["ignoreBos"],
                "densityThreshold": data["densityThreshold"],
                "numResults": data["numResults"],
            }
            result = services.saved_search_get_or_run(
                model=model, params=params, payload={**base, "texts": [text]}, user=request.user
            )
            bodies.append(
                pres.search_all_wire(
                    result,
                    model_id=model.id,
                    sort_indexes=data["sortIndexes"],
                    user=request.user,
                    with_neurons=not data["text"]["batch"],
                )  # fmt: skip
            )
        return Response({"results": bodies} if data["text"]["batch"] else bodies[0])


class TopkByTokenView(InferenceView):
    throttle_scope = "topk"

    @extend_schema(
        operation_id="search_topk_by_token",
        tags=["inference"],
        summary="Top-k features per token for one source",
        description="With `ignoreBos`, special tokens are left out. `densityThreshold` (default 0.01; -1 or 0 off).",
        request=inp.TopkByTokenIn,
        responses={200: out.TopkByTokenOut, **ERRORS},
    )
    def post(self, request):
        data = self.body(inp.TopkByTokenIn)
        source = source_or_404(model_id=data["modelId"], source_id=data["source"], user=request.user)
        result = services.inference_call(
            model=source.model,
            task=tasks.topk_by_token,
            payload={
                "sae": services.sae_ref(source),
                "texts": data["text"]["texts"],
                "top_k": data["numResults"],
                "ignore_bos": data["ignoreBos"],
                "exclude": _exclude_dense([source], data["densityThreshold"]).get(source.name, []),
            },
        )
        bodies = [
            pres.topk_wire(r, model_id=source.model_id, source=source.name, user=request.user)
            for r in result["results"]
        ]
        return Response({"results": bodies} if data["text"]["batch"] else bodies[0])


class TokenizeView(InferenceView):
    @extend_schema(
        operation_id="tokenize",
        tags=["inference"],
        summary="Tokenize a prompt with the model's tokenizer",
        request=inp.TokenizeIn,
        responses={200: out.TokenizeOut, **ERRORS},
    )
    def post(self, request):
        data = self.body(inp.TokenizeIn)
        model = _inference_model(data["modelId"], request.user)
        result = services.inference_call(
            model=model, task=tasks.tokenize, payload={"text": data["prompt"], "prepend_bos": data["prependBos"]}
        )
        return Response(result)


class CossimView(InferenceView):
    @extend_schema(
        operation_id="cossim",
        tags=["inference"],
        summary="Nearest features by decoder cosine similarity",
        description="Within the feature's source, or against `targetModelId`/`targetSourceId` (same width).",
        request=inp.CossimIn,
        responses={200: out.CossimOut, **ERRORS},
    )
    def post(self, request):
        data = self.body(inp.CossimIn)
        source = source_or_404(model_id=data["modelId"], source_id=data["source"], user=request.user)
        target = source_or_404(
            model_id=data.get("targetModelId") or source.model_id,
            source_id=data.get("targetSourceId") or source.name,
            user=request.user,
        )
        result = services.inference_call(
            model=source.model,
            task=tasks.cossim,
            payload={
                "sae": services.sae_ref(source),
                "index": data["index"],
                "target_sae": services.sae_ref(target),
                "num_results": data["numResults"],
            },
        )
        return Response(
            {
                "feature": {"modelId": source.model_id, "source": source.name, "index": data["index"]},
                "topkDecoderCossimFeatures": [
                    {
                        "feature": {"modelId": target.model_id, "source": target.name, "index": r["index"]},
                        "cosineSimilarity": r["cosineSimilarity"],
                    }
                    for r in result["results"]
                ],
            }
        )


# --- steering -----------------------------------------------------------------------------------------


def _steer_features(data: dict, user) -> list[tuple[Feature, float]]:
    keys = [(f["modelId"], f["layer"], f["index"]) for f in data["features"]]
    found = features_get_many(keys=keys, user=user)
    for key in keys:
        if key not in found:
            raise Http404(f"Feature {key[0]}/{key[1]}/{key[2]} not found.")
        if key[0] != data["modelId"]:
            raise ValidationError({"features": f"feature {key[0]}/{key[1]}/{key[2]} is not of model {data['modelId']}"})
    pairs = [(found[k], f["strength"]) for k, f in zip(keys, data["features"], strict=True)]
    kinds = {feature.has_vector for feature, _ in pairs}
    if len(kinds) > 1:
        raise ValidationError({"features": "mixing vectors and SAE features in one request is not supported"})
    return pairs


def _settings(data: dict, *, chat: bool) -> dict:
    keys = ("temperature", "n_tokens", "freq_penalty", "seed", "strength_multiplier", "steer_method")
    settings = {k: data[k] for k in keys}
    settings["steer_special_tokens"] = data.get("steer_special_tokens", True) if chat else True
    return settings


def _sse(frame: dict) -> str:
    return f"data: {json.dumps(frame)}\n\n"


class _SteerBase(InferenceView):
    throttle_scope = "steer"
    chat = False

    def request_from(self, data) -> SteerRequest:
        model = _inference_model(data["modelId"], self.request.user)
        req = SteerRequest(
            model=model, features=_steer_features(data, self.request.user), settings=_settings(data, chat=self.chat)
        )
        if self.chat:
            req.default_messages = [dict(m) for m in data["defaultChatMessages"]]
            req.steered_messages = [dict(m) for m in data["steeredChatMessages"]]
        else:
            req.prompt = data["prompt"]
        return req

    def answer(self, req: SteerRequest, stream: bool):
        if not stream:
            rows = services.steer_run(req=req, user=self.request.user)
            return Response(pres.steer_wire(self.request, rows, chat=self.chat))
        services.inference_admit(model=req.model)  # 503 as a status, before the stream starts
        slot = services.inference_slot(
            model=req.model, timeout=services.steer_timeout(), kind="steer", units=int(req.settings["n_tokens"])
        )
        held = slot.__enter__()  # held until the stream ends (frames() exits it), refused here with 503 when full
        response = StreamingHttpResponse(self.frames(req, slot, held), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response

    def frames(self, req: SteerRequest, slot, held):
        try:
            # closing(): a client that hangs up closes this generator, and that must reach steer_stream now
            # (it stops the worker), not whenever the suspended generator is collected
            with contextlib.closing(services.steer_stream(req=req, user=self.request.user, slot=held)) as events:
                for event in events:
                    if "rows" in event:
                        yield _sse(pres.steer_wire(self.request, event["rows"], chat=self.chat))
                    else:
                        yield _sse(self.partial(req, event["partial"]))
        except InferenceError as exc:
            yield _sse({"message": exc.message, "status": exc.status})
        finally:
            slot.__exit__(None, None, None)

    def partial(self, req: SteerRequest, partial: dict) -> dict:
        if not self.chat:
            return {k: (partial[k]["text"] if k in partial else None) for k in ("STEERED", "DEFAULT")}
        body = {}
        for kind in ("STEERED", "DEFAULT"):
            if kind not in partial:
                body[kind] = None
                continue
            messages = req.default_messages if kind == "DEFAULT" else req.steered_messages
            text = partial[kind]["text"]
            body[kind] = {"raw": text, "chatTemplate": [*messages, {"role": "assistant", "content": text}]}
        return body


class SteerView(_SteerBase):
    @extend_schema(
        operation_id="steer",
        tags=["steering"],
        summary="Completion steering: DEFAULT and STEERED outputs",
        description=(
            "Steering vector per feature = its SAE decoder row (or stored vector) × strength × strength_multiplier, "
            "added at the SAE's hook. Methods SIMPLE_ADDITIVE, ORTHOGONAL_DECOMP, PROJECTION_CAP. Same seed ⇒ same "
            "output. `freq_penalty` is applied and logprobs carry the top alternatives. Outputs are cached "
            "(SteerOutput) and shareable at /steer/<id>. `stream: true` → text/event-stream of the cumulative object."
        ),
        request=inp.SteerIn,
        responses={200: out.SteerOut, **ERRORS},
    )
    def post(self, request):
        data = self.body(inp.SteerIn)
        return self.answer(self.request_from(data), data["stream"])


class SteerChatView(_SteerBase):
    chat = True

    @extend_schema(
        operation_id="steer_chat",
        tags=["steering"],
        summary="Chat steering with the model's chat template",
        description="400 if the model has no chat template. `steer_special_tokens=false` leaves template tokens unsteered.",
        request=inp.SteerChatIn,
        responses={200: out.SteerChatOut, **ERRORS},
    )
    def post(self, request):
        data = self.body(inp.SteerChatIn)
        return self.answer(self.request_from(data), data["stream"])


class SteerLoadView(InferenceView):
    @extend_schema(
        operation_id="steer_load",
        tags=["steering"],
        summary="Reload a saved steering result (what /steer/<id> shows)",
        request=inp.SteerLoadIn,
        responses={200: out.SteerLoadOut, 400: out.ErrorOut, 404: out.ErrorOut},
    )
    def post(self, request):
        data = self.body(inp.SteerLoadIn)
        row = steer_output_get(output_id=data["steerOutputId"], user=request.user)
        return Response(pres.steer_load_wire(request, row))
