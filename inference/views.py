"""Pages for live inference: steering (with share URLs), search via inference, top-k by token."""

import json

from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from inference.selectors import inference_models, inference_sources, steer_feature_search, steer_output_get
from memicos_site.embed import embeddable

_SCRIPT_ESCAPES = {ord("<"): "\\u003C", ord(">"): "\\u003E", ord("&"): "\\u0026"}


def _models_json(user) -> str:
    """JSON for a <script> element, escaped as json_script does: a name holding `</script>` cannot end it."""
    models = []
    for m in inference_models(user=user):
        sources = list(inference_sources(user=user, model=m).select_related("source_set"))
        models.append(
            {
                "id": m.id,
                "name": m.display_name or m.id,
                "sources": [s.name for s in sources],
                "sourceSets": sorted({s.source_set.name for s in sources}),
            }
        )
    return json.dumps(models).translate(_SCRIPT_ESCAPES)


def _preselected(request) -> dict | None:
    """`?model=&source=&index=[&strength=]` (the feature page's Steer button, Neuronpedia's steer parameters): the
    steer page opens with that feature chosen, if the user may read it."""
    from django.http import Http404

    from features.selectors import feature_get

    model_id, source_id, index = (request.GET.get(k, "") for k in ("model", "source", "index"))
    if not (model_id and source_id and index.isascii() and index.isdigit() and len(index) <= 10):
        return None
    try:
        feature = feature_get(model_id=model_id, source_id=source_id, index=int(index), user=request.user)
    except (Http404, ValueError):
        return None
    try:
        strength = max(-1000.0, min(1000.0, float(request.GET.get("strength", ""))))
    except ValueError:
        strength = feature.vector_default_steer_strength or 10
    best = feature.explanations.order_by("-score_v1", "created_at").values_list("description", flat=True).first()
    chosen = {"modelId": feature.model_id, "layer": feature.source.name, "index": feature.index, "strength": strength,
              "description": best or ""}  # fmt: skip
    return {"modelId": feature.model_id, "features": [chosen], "inputText": "I think that", "chat": False}


@require_GET
@ensure_csrf_cookie
@embeddable
def steer_page(request, output_id: str | None = None):
    """The steer page; /steer/<id> preloads a saved result (its share URL)."""
    initial = None
    if output_id is not None:
        from inference.api.presenters import steer_load_wire

        initial = steer_load_wire(request, steer_output_get(output_id=output_id, user=request.user))
    else:
        initial = _preselected(request)
    return render(
        request,
        "inference/steer.html",
        {
            "models_json": _models_json(request.user),
            "initial": initial,
            "embed_url": request.build_absolute_uri(request.path) + "?embed=true",
        },
    )


@require_GET
@ensure_csrf_cookie
@embeddable
def search_page(request):
    """Which features fire on a text: the activation test across a source set (embeddable, as the steer page)."""
    return render(
        request,
        "inference/search.html",
        {
            "models_json": _models_json(request.user),
            "embed_url": request.build_absolute_uri(request.path) + "?embed=true",
        },
    )


@require_GET
@ensure_csrf_cookie
def topk_page(request):
    return render(request, "inference/topk.html", {"models_json": _models_json(request.user)})


@require_GET
def feature_search(request):
    """JSON for the steer page's feature picker (`source/index` or words of an explanation)."""
    rows = steer_feature_search(
        user=request.user, model_id=request.GET.get("modelId", ""), query=request.GET.get("q", "")
    )
    return JsonResponse({"results": rows})
