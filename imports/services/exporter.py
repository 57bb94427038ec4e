"""Export of one source in the v1 layout (the importer's inverse): ids preserved, gzip JSONL, 1024 rows a batch.

Features and explanations: 1024 rows per file in index order. Activations: file N holds every
activation of the features with index N·1024 … N·1024+1023 (Neuronpedia's rule). Rows stream from
the database through a gzip file on disk to the target; nothing holds a whole source in memory.
"""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson

from features import fields as wire
from features.models import (
    Activation,
    Explanation,
    ExplanationModelType,
    ExplanationScoreModel,
    ExplanationScoreType,
    ExplanationType,
    Feature,
    Source,
)
from imports.services import evals
from imports.services.origin import Origin

BATCH_SIZE = 1024  # Neuronpedia's FEATURES_EXPLANATIONS_BATCH_SIZE = ACTIVATIONS_BATCH_SIZE
CONFIG_MODELS = {
    "explanation_type.jsonl": (ExplanationType, wire.EXPLANATION_TYPE_FIELDS),
    "explanation_model_type.jsonl": (ExplanationModelType, wire.EXPLANATION_MODEL_TYPE_FIELDS),
    "explanation_score_model.jsonl": (ExplanationScoreModel, wire.EXPLANATION_SCORE_MODEL_FIELDS),
    "explanation_score_type.jsonl": (ExplanationScoreType, wire.EXPLANATION_SCORE_TYPE_FIELDS),
}


def _dumps(row: dict) -> bytes:
    return orjson.dumps(row, default=str) + b"\n"


def _put(origin: Origin, key: str, lines: Iterable[bytes], *, gz: bool) -> int:
    n = 0
    with tempfile.NamedTemporaryFile(delete=False, suffix=".part") as tmp:
        path = Path(tmp.name)
        out = gzip.GzipFile(fileobj=tmp, mode="wb", compresslevel=5, mtime=0) if gz else tmp
        for line in lines:
            out.write(line)
            n += 1
        if gz:
            out.close()
    try:
        origin.put_file(key, path)
    finally:
        path.unlink(missing_ok=True)
    return n


def _iso(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


def source_export(
    *, model_id: str, source_id: str, target: Origin, on_file: Callable[[str, int], None] | None = None
) -> dict:
    source = Source.objects.select_related("model", "source_set", "source_set__release").get(
        model_id=model_id, name=source_id
    )
    base = f"{model_id}/{source_id}/"
    counts = {"features": 0, "activations": 0, "explanations": 0, "files": 0}

    def put(key, lines, gz=True):
        n = _put(target, key, lines, gz=gz)
        counts["files"] += 1
        if on_file:
            on_file(key, n)
        return n

    for name, (model, fmap) in CONFIG_MODELS.items():
        put(f"config/{name}", (_dumps(wire.to_wire(o, fmap)) for o in model.objects.order_by("name")), gz=False)
    evals.eval_types_export(target=target, on_file=on_file)
    counts["files"] += 1
    m, ss = source.model, source.source_set
    put(base + "model.jsonl", [_dumps({"id": m.id, **wire.to_wire(m, wire.MODEL_FIELDS)})], gz=False)
    if ss.release is not None:
        put(
            base + "release.jsonl",
            [_dumps({"name": ss.release.name, **wire.to_wire(ss.release, wire.RELEASE_FIELDS)})],
            gz=False,
        )
    set_row = {
        "modelId": m.id,
        "name": ss.name,
        "releaseName": ss.release_id,
        **wire.to_wire(ss, wire.SOURCE_SET_FIELDS),
    }
    put(base + "sourceset.jsonl", [_dumps(set_row)], gz=False)
    put(
        base + "source.jsonl",
        [_dumps({"modelId": m.id, "id": source.name, "setName": ss.name, **wire.to_wire(source, wire.SOURCE_FIELDS)})],
        gz=False,
    )

    counts["evals"] = evals.evals_export(source=source, target=target, on_file=on_file)
    counts["files"] += counts["evals"]

    head = {"modelId": model_id, "layer": source_id}
    fcols = list(wire.FEATURE_FIELDS.values())
    features = Feature.objects.filter(source=source).order_by("index").values_list("index", *fcols)
    batch: list[bytes] = []
    n = 0
    for row in features.iterator(chunk_size=BATCH_SIZE):
        rec = {**head, "index": str(row[0]), "creatorId": None, "sourceSetName": ss.name}
        rec.update({w: _iso(v) for w, v in zip(wire.FEATURE_FIELDS, row[1:], strict=True)})
        batch.append(_dumps(rec))
        if len(batch) == BATCH_SIZE:
            counts["features"] += put(f"{base}features/batch-{n}.jsonl.gz", batch)
            batch, n = [], n + 1
    if batch:
        counts["features"] += put(f"{base}features/batch-{n}.jsonl.gz", batch)

    max_index = Feature.objects.filter(source=source).order_by("-index").values_list("index", flat=True).first()
    acols = list(wire.ACTIVATION_FIELDS.values())
    for b in range(0, (max_index // BATCH_SIZE + 1) if max_index is not None else 0):
        qs = (
            Activation.objects.filter(
                feature__source=source, feature__index__gte=b * BATCH_SIZE, feature__index__lt=(b + 1) * BATCH_SIZE
            )
            .order_by("feature__index", "-max_value", "id")
            .values_list("feature__index", *acols)
        )
        lines = (
            _dumps(
                {
                    **head,
                    "index": str(r[0]),
                    "creatorId": None,
                    **{w: _iso(v) for w, v in zip(wire.ACTIVATION_FIELDS, r[1:], strict=True)},
                }
            )
            for r in qs.iterator(chunk_size=2000)
        )
        if qs.exists():
            counts["activations"] += put(f"{base}activations/batch-{b}.jsonl.gz", lines)

    ecols = list(wire.EXPLANATION_FIELDS.values())
    explanations = (
        Explanation.objects.filter(source=source)
        .order_by("feature__index", "id")
        .extra(select={"emb": "embedding_256::text"})
        .values_list("feature__index", "emb", *ecols)
    )
    batch, n = [], 0
    for r in explanations.iterator(chunk_size=BATCH_SIZE):
        rec = {**head, "index": str(r[0]), "authorId": None, "embedding": r[1]}
        rec.update({w: _iso(v) for w, v in zip(wire.EXPLANATION_FIELDS, r[2:], strict=True)})
        batch.append(_dumps(rec))
        if len(batch) == BATCH_SIZE:
            counts["explanations"] += put(f"{base}explanations/batch-{n}.jsonl.gz", batch)
            batch, n = [], n + 1
    if batch:
        counts["explanations"] += put(f"{base}explanations/batch-{n}.jsonl.gz", batch)
    return counts
