"""Worker results and SteerOutput rows → Neuronpedia-shaped response bodies."""

from __future__ import annotations

import json

from django.utils import timezone

from features.api.common import with_source_sets
from features.api.presenters import explanations_by_feature, feature_summary_wire
from features.models import SteerOutput, SteerOutputFeature
from features.selectors import features_get_many


def recompute_max(values: list[float]) -> dict:
    if not values:
        return {"maxValue": 0.0, "maxValueTokenIndex": 0, "minValue": 0.0}
    i = max(range(len(values)), key=values.__getitem__)
    return {"maxValue": values[i], "maxValueTokenIndex": i, "minValue": min(values)}


def activation_new_wire(result: dict, *, feature, ignore_bos: bool, user) -> dict:
    tokens, special, values = result["tokens"], result["tokensIsSpecial"], result["activation"]["values"]
    if ignore_bos and special and special[0]:
        tokens, special, values = tokens[1:], special[1:], values[1:]
    return {
        "tokens": tokens,
        "tokensIsSpecial": special,
        "values": values,
        **recompute_max(values),
        "modelId": feature.model_id,
        "layer": feature.source.name,
        "index": str(feature.index),
        "creatorId": user.pk if getattr(user, "is_authenticated", False) else None,
        "dataSource": "inference",
        "dataIndex": None,
        "createdAt": timezone.now().isoformat(),
    }


def feature_summaries(*, model_id: str, pairs: list[tuple[str, int]], user) -> dict[tuple[str, int], dict]:
    """Dashboard summaries (with the best explanation) of the features that exist, readable by user."""
    found = features_get_many(keys=[(model_id, s, i) for s, i in set(pairs)], user=user)
    features = with_source_sets(list(found.values()))
    explanations = explanations_by_feature(features)
    return {(f.source.name, f.index): feature_summary_wire(f, explanations=explanations[f.pk][:1]) for f in features}


def search_all_wire(result: dict, *, model_id: str, sort_indexes: list[int], user, with_neurons: bool = True) -> dict:
    rows = result["activations"]
    neurons = (
        feature_summaries(model_id=model_id, pairs=[(r["source"], r["index"]) for r in rows], user=user)
        if with_neurons
        else {}
    )
    return {
        "tokens": result["tokens"],
        "tokensIsSpecial": result.get("tokensIsSpecial", []),
        "result": [
            {
                "modelId": model_id,
                "layer": r["source"],
                "index": str(r["index"]),
                "values": r["values"],
                "maxValue": r["maxValue"],
                "maxValueIndex": r["maxValueIndex"],
                "sumValues": r["sumValues"],
                **({"neuron": neurons.get((r["source"], r["index"]))} if with_neurons else {}),
            }
            for r in rows
        ],
        "sortIndexes": sort_indexes,
        "counts": result.get("counts"),
    }


def topk_wire(result: dict, *, model_id: str, source: str, user) -> dict:
    pairs = [(source, f["featureIndex"]) for r in result["results"] for f in r["topFeatures"]]
    summaries = feature_summaries(model_id=model_id, pairs=pairs, user=user)
    return {
        "source": source,
        "results": [
            {
                **r,
                "topFeatures": [{**f, "feature": summaries.get((source, f["featureIndex"]))} for f in r["topFeatures"]],
            }
            for r in result["results"]
        ],
    }


# --- steering -----------------------------------------------------------------------------------------


def share_url(request, output_id: str) -> str:
    return request.build_absolute_uri(f"/steer/{output_id}")


def _logprobs(row: SteerOutput | None) -> list:
    return json.loads(row.logprobs) if row is not None and row.logprobs else []


def _chat_part(row: SteerOutput | None) -> dict | None:
    if row is None:
        return None
    return {
        "raw": row.output_text,
        "chatTemplate": json.loads(row.output_text_chat_template or "[]"),
        "logprobs": _logprobs(row),
    }


def settings_wire(row: SteerOutput) -> dict:
    return {
        "temperature": row.temperature,
        "n_tokens": row.num_tokens,
        "freq_penalty": row.freq_penalty,
        "seed": row.seed,
        "strength_multiplier": row.strength_multiplier,
        "steer_special_tokens": row.steer_special_tokens,
        "steer_method": row.steer_method,
    }


def features_wire(row: SteerOutput | None) -> list[dict]:
    if row is None:
        return []
    items = SteerOutputFeature.objects.filter(steer_output=row).select_related("feature", "feature__source")
    return [
        {
            "modelId": i.feature.model_id,
            "layer": i.feature.source.name,
            "index": i.feature.index,
            "strength": i.strength,
        }
        for i in items.order_by("id")
    ]


def steer_wire(request, rows: dict[str, SteerOutput], *, chat: bool) -> dict:
    steered, default = rows.get("STEERED"), rows.get("DEFAULT")
    main = steered or default
    body = {"id": main.id, "shareUrl": share_url(request, main.id), "limit": None}
    if chat:
        body.update(
            STEERED=_chat_part(steered),
            DEFAULT=_chat_part(default),
            settings=settings_wire(main),
            features=features_wire(steered),
        )
    else:
        body.update(
            STEERED=steered.output_text if steered else None,
            DEFAULT=default.output_text if default else None,
            steeredLogProbs=_logprobs(steered),
            defaultLogProbs=_logprobs(default),
        )
    return body


def steer_load_wire(request, row: SteerOutput) -> dict:
    if row.type == SteerOutput.Type.STEERED:
        rows = {"STEERED": row}
        if row.connected_default_output_id:
            rows["DEFAULT"] = row.connected_default_output
    else:
        rows = {"DEFAULT": row}
    chat = bool(row.input_text_chat_template)
    body = steer_wire(request, rows, chat=chat)
    if not chat:
        body.update(settings=settings_wire(row), features=features_wire(rows.get("STEERED")))
    input_text = json.loads(row.input_text) if chat else row.input_text
    if chat and "DEFAULT" in rows:
        body["defaultChatMessages"] = json.loads(rows["DEFAULT"].input_text)
    body.update(modelId=row.model_id, chat=chat, inputText=input_text)
    return body
