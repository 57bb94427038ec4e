"""Neuronpedia-compatible uploads (dashboards, activations, steering vectors), written through the loader."""

import random

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from features.ids import new_id
from features.models import ExplanationModelType, ExplanationType, Feature, Model, Source, SourceSet, Visibility
from imports.services.loader import LoadError, records_load

VECTOR_MAX_LEN = 24576  # Neuronpedia's cap on a vector's length


def _owner_check(*, user, source: Source):
    if not (user.is_staff or source.source_set.creator_id == user.pk or source.creator_id == user.pk):
        raise PermissionDenied("Only the owner of this source set can upload to it.")


def _activation_wire(a: dict) -> dict:
    values = a["values"]
    peak = max(range(len(values)), key=values.__getitem__) if values else 0
    return {
        "id": new_id(),
        "tokens": a["tokens"],
        "values": values,
        "maxValue": values[peak] if values else 0,
        "minValue": min(values) if values else 0,
        "maxValueTokenIndex": peak,
        "binMax": a.get("quantileMax"),
        "binMin": a.get("quantileMin"),
        "binContains": a.get("quantileFraction"),
    }


def _load(kind, source, records, user):
    try:
        return records_load(
            kind=kind, model_id=source.model_id, source_id=source.name, records=records, creator_id=user.pk
        )
    except LoadError as exc:
        raise ValidationError({kind: exc.reason}) from None


def features_upload(*, user, source: Source, features: list[dict]) -> dict:
    _owner_check(user=user, source=source)
    names = {e.get("methodName") for f in features for e in f.get("explanations") or []} - {None}
    models = {e.get("modelName") for f in features for e in f.get("explanations") or []} - {None}
    unknown = names - set(ExplanationType.objects.filter(name__in=names).values_list("name", flat=True))
    if unknown:
        raise ValidationError({"features.explanations.methodName": f"unknown explanation type(s): {sorted(unknown)}"})
    unknown = models - set(ExplanationModelType.objects.filter(name__in=models).values_list("name", flat=True))
    if unknown:
        raise ValidationError({"features.explanations.modelName": f"unknown explanation model(s): {sorted(unknown)}"})
    feats, acts, exps = [], [], []
    for f in features:
        f_acts = [dict(_activation_wire(a), index=f["index"]) for a in f["activations"]]
        top, bottom = f.get("topLogits") or [], f.get("bottomLogits") or []
        feats.append({
            "index": f["index"], "frac_nonzero": f.get("density"),
            "maxActApprox": max((a["maxValue"] for a in f_acts), default=0),
            "pos_str": [t["token"] for t in top], "pos_values": [t["value"] for t in top],
            "neg_str": [t["token"] for t in bottom], "neg_values": [t["value"] for t in bottom],
        })  # fmt: skip
        acts.extend(f_acts)
        exps.extend(
            {"id": new_id(), "index": f["index"], "description": e["text"], "typeName": e.get("methodName"),
             "explanationModelName": e.get("modelName")}
            for e in f.get("explanations") or []
        )  # fmt: skip
    with transaction.atomic():
        counts = {"features": _load("features", source, feats, user).rows_loaded}
        counts["activations"] = _load("activations", source, acts, user).rows_loaded
        counts["explanations"] = _load("explanations", source, exps, user).rows_loaded if exps else 0
    return counts


def activations_upload(*, user, feature: Feature, activations: list[dict]) -> int:
    if not (user.is_staff or feature.creator_id == user.pk or feature.source.source_set.creator_id == user.pk):
        raise PermissionDenied("Only the owner of this feature can add activations to it.")
    records = [dict(_activation_wire(a), index=feature.index) for a in activations]
    with transaction.atomic():
        loaded = _load("activations", feature.source, records, user).rows_loaded
        best = max((r["maxValue"] for r in records), default=None)
        if best is not None and (feature.max_act_approx or 0) < best:
            Feature.objects.filter(pk=feature.pk).update(max_act_approx=best)
    return loaded


def vector_create(
    *, user, model: Model, layer: int, hook_type: str, vector: list[float], label: str, strength: float
) -> Feature:
    if model.dimension and len(vector) != model.dimension:
        raise ValidationError(
            {"vector": f"must have {model.dimension} values (the model's dimension), got {len(vector)}."}
        )
    if model.layers and not 0 <= layer < model.layers:
        raise ValidationError({"layerNumber": f"must be between 0 and {model.layers - 1}."})
    set_name = "neuronpedia-" + hook_type.removeprefix("hook_").replace("_", "-")  # neuronpedia-resid-pre|post
    with transaction.atomic():
        source_set, _ = SourceSet.objects.get_or_create(
            model=model, name=set_name, defaults={"visibility": Visibility.UNLISTED, "description": "Uploaded vectors"}
        )
        source, _ = Source.objects.get_or_create(
            model=model,
            name=f"{layer}-{set_name}",
            defaults={"source_set": source_set, "visibility": Visibility.UNLISTED},
        )
        taken = set(Feature.objects.filter(source=source).values_list("index", flat=True))
        index = random.randrange(10_000_000, 100_000_000)
        while index in taken:
            index = random.randrange(10_000_000, 100_000_000)
        return Feature.objects.create(
            model=model, source=source, index=index, creator=user, has_vector=True, vector=vector,
            vector_label=label, vector_default_steer_strength=strength, hook_name=f"blocks.{layer}.{hook_type}",
        )  # fmt: skip


def vector_delete(*, user, feature: Feature):
    if not feature.has_vector:
        raise ValidationError({"index": "this feature is not a vector."})
    if not (user.is_staff or feature.creator_id == user.pk):
        raise PermissionDenied("Only the owner of this vector can delete it.")
    feature.delete()
