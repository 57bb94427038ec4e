"""Pages of the seed systems: composite retrieval, a feature's genre spread, toy-model interventions."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET
from rest_framework.exceptions import ValidationError

from features.api.errors import _flatten
from features.selectors import feature_get, source_get
from retrieval import selectors


def parse_terms(raw: str, field: str) -> list[dict]:
    """'12:2, 40, 7:0.5' → [{index: 12, weight: 2.0}, {index: 40}, {index: 7, weight: 0.5}]."""
    terms = []
    for part in (raw or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        index, _, weight = part.partition(":")
        try:
            term = {"index": int(index)}
            if weight.strip():
                term["weight"] = float(weight)
        except ValueError:
            raise ValidationError({field: f"{part!r} is not index or index:weight."}) from None
        terms.append(term)
    return terms


@require_GET
def retrieve_page(request):
    from retrieval.api import RetrieveIn

    sources = list(selectors.passage_sources(user=request.user))
    raw = {k: request.GET.get(k, "") for k in ("source", "positive", "negative", "k")}
    context = {"sources": sources, "raw": raw, "results": None, "error": "", "form": {}}
    if raw["source"] and raw["positive"]:
        model_id, _, source_id = raw["source"].partition("/")
        try:
            body = {
                "modelId": model_id,
                "source": source_id,
                "positive": parse_terms(raw["positive"], "positive"),
                "negative": parse_terms(raw["negative"], "negative"),
            }
            if raw["k"]:
                body["k"] = raw["k"]
            serializer = RetrieveIn(data=body)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            source = source_get(model_id=model_id, source_id=source_id, user=request.user)
            context["form"] = {"modelId": source.model_id, "source": source.name}
            context["n_passages"] = selectors.passage_count(source=source)
            context["results"] = selectors.retrieve(
                source=source,
                positive=[selectors.Term(t["index"], t["weight"]) for t in data["positive"]],
                negative=[selectors.Term(t["index"], t["weight"]) for t in data["negative"]],
                k=data["k"],
            )
        except ValidationError as exc:
            context["error"] = "; ".join(_flatten(exc.detail))
        except Http404 as exc:
            context["error"] = str(exc)
    elif sources:
        context["form"] = {"modelId": sources[0].model_id, "source": sources[0].name}
    return render(request, "retrieval/retrieve.html", context)


@require_GET
def genre_spread_page(request, model_id: str, source_id: str, index: int):
    feature = feature_get(model_id=model_id, source_id=source_id, index=int(index), user=request.user)
    return render(
        request,
        "retrieval/genre_spread_page.html",
        {"feature": feature, "spread": selectors.genre_spread(feature=feature)},
    )


@require_GET
def intervene_page(request):
    from inference.services import InferenceError
    from retrieval.api import InterveneIn, intervene_run

    sources = list(selectors.toy_sources(user=request.user))
    keys = ("source", "index", "prompt", "positions", "mode", "value")
    raw = {k: request.GET.get(k, "") for k in keys}
    context = {"sources": sources, "raw": raw, "result": None, "error": "", "selected": None}
    model_id, _, source_id = raw["source"].partition("/")
    context["selected"] = next(
        (s for s in sources if (s.model_id, s.name) == (model_id, source_id)), sources[0] if sources else None
    )
    if raw["source"] and raw["prompt"]:
        try:
            positions = [int(x) for x in raw["positions"].replace(",", " ").split()]
        except ValueError:
            positions = None
        body = {
            "modelId": model_id,
            "source": source_id,
            "index": raw["index"],
            "prompt": raw["prompt"],
            "positions": positions,
            "mode": raw["mode"] or "clamp",
        }
        if raw["value"]:
            body["value"] = raw["value"]
        serializer = InterveneIn(data=body)
        try:
            serializer.is_valid(raise_exception=True)
            context["result"] = intervene_run(user=request.user, data=serializer.validated_data)
        except ValidationError as exc:
            context["error"] = "; ".join(_flatten(exc.detail))
        except (Http404, InferenceError) as exc:
            context["error"] = str(exc)
    return render(request, "retrieval/intervene.html", context)
