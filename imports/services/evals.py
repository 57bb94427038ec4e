"""SAE benchmarks in the v1 layout: `config/eval_type.jsonl` and each source's SAEBench files.

- `config/eval_type.jsonl`: one EvalType row a line with Neuronpedia's column names (`name`, `displayName`,
  `description`, `longerDescription`, `outputSchema`, `featured`, `url`, `createdAt`, `updatedAt`), upserted by
  name like the other config files.
- `<model>/<source>/evals/<eval_type_id>/<release>_<sae_id>_eval_results.json`: Neuronpedia's v1 export carries no
  evals (they reach it through its admin upload of SAEBench files), so a source's evals travel as the SAEBench
  output files themselves, whole (`eval_result_details` included), in SAEBench's own directory layout and file
  name (`eval_results/<eval_type_id>/<release>_<sae_id>_eval_results.json`), under the source's folder.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from django.db import transaction
from django.utils.dateparse import parse_datetime

from features.models import EvalType, Source
from features.services.evals import eval_output_full, eval_store
from imports.services.loader import LoadError, unknown_columns_note
from imports.services.origin import Origin

EVAL_TYPE_FILE = "config/eval_type.jsonl"
EVAL_TYPE_FIELDS = {
    "displayName": "display_name",
    "description": "description",
    "longerDescription": "longer_description",
    "outputSchema": "output_schema",
    "featured": "featured",
    "url": "url",
}

EVAL_TYPE_KNOWN = frozenset(EVAL_TYPE_FIELDS) | {"name", "createdAt", "updatedAt"}


def eval_type_wire(row: EvalType) -> dict:
    return {
        "name": row.name,
        **{w: getattr(row, a) for w, a in EVAL_TYPE_FIELDS.items()},
        "createdAt": row.created_at.isoformat(),
        "updatedAt": row.updated_at.isoformat(),
    }


def eval_types_import(*, origin: Origin, warnings: list[dict] | None = None) -> int:
    """Upsert config/eval_type.jsonl by name (absent file: nothing). LoadError names a bad line; unknown columns are
    noted in `warnings`."""
    data = origin.read_bytes(EVAL_TYPE_FILE)
    if not data:
        return 0
    n, records = 0, []
    with transaction.atomic():
        for line_no, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise LoadError(f"{EVAL_TYPE_FILE} line {line_no}: malformed JSON: {exc}") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("name"), str) or not rec["name"]:
                raise LoadError(f"{EVAL_TYPE_FILE} line {line_no}: an eval type needs a name")
            fields = {a: rec[w] for w, a in EVAL_TYPE_FIELDS.items() if w in rec and rec[w] is not None}
            if isinstance(fields.get("output_schema"), str):  # a TEXT dump of the JSON column
                fields["output_schema"] = json.loads(fields["output_schema"])
            records.append(rec)
            row, _ = EvalType.objects.update_or_create(name=rec["name"], defaults=fields)
            created = parse_datetime(rec["createdAt"]) if isinstance(rec.get("createdAt"), str) else None
            if created:
                EvalType.objects.filter(pk=row.pk).update(created_at=created)
            n += 1
    unknown_columns_note(warnings, EVAL_TYPE_FILE, records, EVAL_TYPE_KNOWN)
    return n


def _file_stem(text: str) -> str:
    return str(text).replace("/", "_").replace("\\", "_") or "sae"


def eval_file_key(*, model_id: str, source_id: str, output: dict) -> str:
    release = _file_stem(output.get("sae_lens_release_id") or model_id)
    sae_id = _file_stem(output.get("sae_lens_id") or source_id)
    return f"{model_id}/{source_id}/evals/{_file_stem(output['eval_type_id'])}/{release}_{sae_id}_eval_results.json"


def evals_import(*, origin: Origin, model_id: str, source_id: str) -> int:
    """Store each SAEBench file under the source's evals/ folder (one eval per source and type; the newest file of
    a type wins, by `datetime_epoch_millis`)."""
    objects = [o for o in origin.list(f"{model_id}/{source_id}/evals/") if o.key.endswith(".json")]
    if not objects:
        return 0
    source = Source.objects.get(model_id=model_id, name=source_id)
    outputs = []
    for obj in objects:
        try:
            output = json.loads(origin.read_bytes(obj.key) or b"null")
        except ValueError as exc:
            raise LoadError(f"{obj.key}: malformed JSON: {exc}") from None
        if not isinstance(output, dict) or not output.get("eval_type_id"):
            raise LoadError(f"{obj.key}: not a SAEBench output file (no eval_type_id)")
        outputs.append(output)
    outputs.sort(key=lambda o: o.get("datetime_epoch_millis") or 0)
    for output in outputs:
        try:
            eval_store(source=source, output=output)
        except ValueError as exc:
            raise LoadError(f"{model_id}/{source_id}/evals: {exc}") from None
    return len(outputs)


def _put_json(origin: Origin, key: str, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(delete=False, suffix=".part") as tmp:
        tmp.write(data)
        path = Path(tmp.name)
    try:
        origin.put_file(key, path)
    finally:
        path.unlink(missing_ok=True)


def eval_types_export(*, target: Origin, on_file: Callable[[str, int], None] | None = None) -> int:
    rows = [eval_type_wire(t) for t in EvalType.objects.order_by("name")]
    _put_json(target, EVAL_TYPE_FILE, b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    if on_file:
        on_file(EVAL_TYPE_FILE, len(rows))
    return len(rows)


def evals_export(*, source: Source, target: Origin, on_file: Callable[[str, int], None] | None = None) -> int:
    n = 0
    for row in source.evals.order_by("type_id"):
        output = eval_output_full(row)
        key = eval_file_key(model_id=source.model_id, source_id=source.name, output=output)
        _put_json(target, key, json.dumps(output).encode())
        if on_file:
            on_file(key, 1)
        n += 1
    return n
