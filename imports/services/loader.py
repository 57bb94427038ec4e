"""The one loader of dashboard rows: v1 wire records → COPY into a temp staging table → upsert.

Both the S3/directory importer and dashboard generation write rows through `records_load`, so there is
one place that maps Neuronpedia's names (features/fields.py) onto our tables, validates rows and
decides what an update means.

Why this shape:
- Each validated record's JSON text is COPYed into a TEMP table (no WAL, no indexes) and decomposed by
  Postgres (`json_to_record`, C) in one `INSERT … SELECT … ON CONFLICT DO UPDATE`: bound by Postgres'
  bulk paths, not per-row round trips nor Python-side array formatting (psycopg's per-element array
  dumping made the first version 2.6× slower on 64-token activations). The exception is activations'
  tokens and values: their orjson text becomes an array literal with two byte edits, staged in typed
  columns, because json_to_record's parse of them was half of Postgres' time per file (0.48 of 0.88 s
  for 30k rows; typed staging takes the file to 0.63 s). An upsert on natural keys makes a re-run of the
  same rows a no-op and a changed upstream row an update (Neuronpedia's `ON CONFLICT DO NOTHING` never
  updates). The `WHERE … IS DISTINCT FROM` clause keeps unchanged rows untouched (no dead tuples, and
  `rows_loaded` counts exactly the inserted or changed rows).
- Everything runs inside `transaction.atomic()`, a savepoint when the caller already holds a
  transaction: a failed batch leaves nothing behind, and the caller decides when rows become visible.
- Row problems (malformed line, wrong vector dimension, unknown feature, duplicate key) skip the row and
  are reported with its line; batch problems (unknown column, unknown source, bad value for a column)
  raise LoadError and nothing is written.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import orjson
from django.db import DataError, IntegrityError, connection, transaction

from features import fields as wire
from features.ids import new_id
from features.models import (
    EMBEDDING_DIM_NEURONPEDIA,
    Activation,
    Explanation,
    ExplanationModelType,
    ExplanationType,
    Feature,
    Model,
    Source,
)

Kind = Literal["features", "activations", "explanations"]
KINDS: tuple[str, ...] = ("features", "activations", "explanations")
MAX_REPORTED_ERRORS = 200  # a file with 30k bad rows needs a few examples, not 30k entries
COPY_CHUNK = 1 << 18  # bytes per COPY message
REPORT_EVERY = 2000  # progress callback cadence (rows); one Redis write per call in the importer

# Relational wire names: resolved to foreign keys by the loader, or ignored (Neuronpedia rewrites
# creatorId/authorId to one default creator; our rows carry the uploader as creator instead).
_RELATIONAL = {"modelId", "layer", "index", "creatorId"}
ALLOWED_KEYS = {
    "features": frozenset(wire.FEATURE_FIELDS) | _RELATIONAL | {"sourceSetName"},
    "activations": frozenset(wire.ACTIVATION_FIELDS) | _RELATIONAL | {"zIndices"},
    "explanations": frozenset(wire.EXPLANATION_FIELDS) | _RELATIONAL | {"authorId", "triggeredByUserId", "embedding"},
}


@dataclass
class LoadResult:
    rows_read: int = 0
    rows_loaded: int = 0  # inserted or changed
    rows_skipped: int = 0  # bad rows, not written
    rows_unchanged: int = 0  # already present with identical values
    errors: list[dict] = field(default_factory=list)  # [{"line": int, "reason": str}]
    notes: int = 0  # rows kept after a repair (\u0000 stripped); listed in errors too

    def add_error(self, line: int | None, reason: str):
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": line, "reason": reason})


class LoadError(Exception):
    """The whole batch is refused; nothing of it was written."""

    def __init__(self, reason: str, line: int | None = None):
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.reason = reason
        self.line = line


@dataclass(frozen=True)
class BadRecord:
    """A line that could not be parsed; the importer passes it through so line numbers stay exact."""

    reason: str


@dataclass
class _Column:
    wire: str
    column: str
    db_type: str
    default_sql: str | None  # used when the record omits the value and the column is NOT NULL


def _columns(model, field_map: dict[str, str], extra: dict[str, str] | None = None) -> list[_Column]:
    out = []
    for wire_name, attr in {**field_map, **(extra or {})}.items():
        f = model._meta.get_field(attr.removesuffix("_id") if attr in ("type_id", "explanation_model_id") else attr)
        db_type = f.db_type(connection)
        default_sql = None
        if attr in ("created_at", "updated_at"):
            default_sql = "now()"
        elif f.has_default() and not callable(f.default):
            value = f.default
            if isinstance(value, bool):
                default_sql = "TRUE" if value else "FALSE"
            elif isinstance(value, (int, float)):
                default_sql = repr(value)
            elif isinstance(value, str):
                default_sql = "''"
        elif getattr(f, "default", None) is list:
            default_sql = f"'{{}}'::{db_type}"
        elif not f.null and f.get_internal_type() in ("CharField", "TextField"):
            default_sql = "''"
        out.append(_Column(wire_name, f.column, db_type, default_sql))
    return out


@dataclass
class _Spec:
    kind: str
    table: str
    columns: list[_Column]
    key: str  # conflict target
    # wire arrays staged as typed columns (formatted here, parsed once by array_in) instead of inside the JSON
    typed: tuple[str, ...] = ()
    # kept on update: when a row was first made and by whom
    immutable: tuple[str, ...] = ("created_at", "creator_id", "author_id", "prompt_version")


_SPECS: dict[str, _Spec] = {}


def _spec(kind: str) -> _Spec:
    # Built lazily: db_type() needs the connection's vendor, not available at import time in every process.
    if kind not in _SPECS:
        if kind == "features":
            cols = _columns(Feature, wire.FEATURE_FIELDS)
            spec = _Spec(kind, Feature._meta.db_table, cols, "source_id, index")
        elif kind == "activations":
            cols = _columns(Activation, wire.ACTIVATION_FIELDS)
            spec = _Spec(kind, Activation._meta.db_table, cols, "id", typed=("tokens", "values"))
        else:
            cols = _columns(Explanation, wire.EXPLANATION_FIELDS, {"embedding": "embedding_256"})
            spec = _Spec(kind, Explanation._meta.db_table, cols, "id")
        _SPECS[kind] = spec
    return _SPECS[kind]


# ---------------------------------------------------------------------------------------------- public


def records_load(
    *,
    kind: Kind,
    model_id: str,
    source_id: str,
    records: Iterable[dict],
    report: Callable[[int], None] | None = None,
    creator_id: int | None = None,
) -> LoadResult:
    """Upsert v1 wire records (Neuronpedia names, one dict per JSON line) of one source.

    `records` are the JSON lines of the v1 layout for `kind`; `report(rows_read)` is called every
    REPORT_EVERY rows. Runs in the caller's transaction (as a savepoint). Features are keyed by
    (source, index); activations and explanations by their `id` (a fresh id is made when absent, so
    such rows cannot be upserted again). The source (and for activations/explanations the features)
    must exist. Raises LoadError when the batch as a whole is unusable.
    """
    return rows_load(
        kind=kind,
        model_id=model_id,
        source_id=source_id,
        numbered=enumerate(records, 1),
        report=report,
        creator_id=creator_id,
        check_nul=True,
    )


def rows_load(
    *,
    kind: str,
    model_id: str,
    source_id: str,
    numbered: Iterable[tuple[int, dict | BadRecord]],
    report: Callable[[int], None] | None = None,
    creator_id: int | None = None,
    check_nul: bool = True,
    nul_lines: set | None = None,
    result: LoadResult | None = None,
) -> LoadResult:
    """records_load over (line number, record) pairs: the importer's entry point. With check_nul=False only
    the lines in `nul_lines` (raw lines that contained the \\u0000 escape) are scanned for NUL."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    source = Source.objects.filter(model_id=model_id, name=source_id).select_related("model").first()
    if source is None:
        raise LoadError(f"source {model_id}/{source_id} does not exist (load its metadata first)")
    spec = _spec(kind)
    result = result if result is not None else LoadResult()
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Safe: the file's rows and its checkpoint commit together, so a lost commit loses both.
            cursor.execute("SET LOCAL synchronous_commit = off")
            stage = _stage_create(cursor, spec)
            feature_ids = _feature_ids(source.pk) if kind != "features" else {}
            state = _RowState(
                kind=kind,
                source=source,
                spec=spec,
                result=result,
                check_nul=check_nul,
                nul_lines=nul_lines if nul_lines is not None else set(),
                feature_ids=feature_ids,
            )
            lines = array("l")
            try:
                # Django wraps errors of execute() but not of the raw cursor's COPY: wrapped, a server restart
                # mid-COPY is Django's OperationalError (the import tasks retry it, the web answers 503)
                with connection.wrap_database_errors, cursor.copy(f"COPY {stage} FROM STDIN") as copy:
                    # psycopg sends each write() as its own message and waits on the socket: one write per
                    # ~256 KB instead of per row took that wait from two thirds of the import's time to noise
                    buf, size = [], 0
                    for data in _rows(numbered, state, report):
                        lines.append(int(data[: data.index(b"\t")]))
                        buf.append(data)
                        size += len(data)
                        if size >= COPY_CHUNK:
                            copy.write(b"".join(buf))
                            buf, size = [], 0
                    if buf:
                        copy.write(b"".join(buf))
            except DataError as exc:
                raise LoadError(f"bad value: {_pg_message(exc, lines)}") from None
            if state.type_names or state.model_names:
                _ensure_explanation_types(cursor, state.type_names, state.model_names)
            staged = len(lines)
            try:
                with transaction.atomic():
                    loaded = _upsert(cursor, spec, stage, source, creator_id)
            except IntegrityError as exc:
                raise LoadError(f"integrity error: {exc}".splitlines()[0]) from None
            except DataError as exc:
                raise LoadError(f"bad value: {str(exc).splitlines()[0]}") from None
            result.rows_loaded = loaded
            result.rows_unchanged = staged - loaded
            cursor.execute(f"DROP TABLE {stage}")
    return result


# ---------------------------------------------------------------------------------------------- rows


@dataclass
class _RowState:
    kind: str
    source: Source
    spec: _Spec
    result: LoadResult
    check_nul: bool
    nul_lines: set
    seen_keys: set = field(default_factory=set)
    type_names: set = field(default_factory=set)
    model_names: set = field(default_factory=set)
    feature_ids: dict = field(default_factory=dict)


def _rows(numbered, state: _RowState, report) -> Iterator[bytes]:
    """Validate each record and yield its COPY line: `line \t ref \t json`. The JSON text goes to
    Postgres as sent (json_to_record decomposes it in C); a record is re-serialized only when it had to
    be changed (repairs, generated ids, a line parsed by the NaN-tolerant fallback)."""
    result, kind = state.result, state.kind
    allowed = ALLOWED_KEYS[kind]
    text_keys = _TEXT_KEYS[kind]
    source_name, model_id = state.source.name, state.source.model_id
    dimension = state.source.model.dimension
    fix = _FIXERS[kind]
    typed = state.spec.typed
    for item in numbered:
        line, rec = item[0], item[1]
        raw = item[2] if len(item) > 2 else None
        result.rows_read += 1
        if report is not None and result.rows_read % REPORT_EVERY == 0:
            report(result.rows_read)
        if isinstance(rec, BadRecord):
            result.rows_skipped += 1
            result.add_error(line, rec.reason)
            continue
        if not isinstance(rec, dict):
            result.rows_skipped += 1
            result.add_error(line, "record is not a JSON object")
            continue
        if not rec.keys() <= allowed:
            unknown = sorted(set(rec) - allowed)
            raise LoadError(f"unknown column(s) {', '.join(unknown)} for {kind}", line)
        layer = rec.get("layer")
        if (layer is not None and layer != source_name) or rec.get("modelId", model_id) != model_id:
            result.rows_skipped += 1
            result.add_error(line, f"row belongs to {rec.get('modelId')}/{layer}, not {model_id}/{source_name}")
            continue
        try:
            index = int(rec["index"])
        except (KeyError, TypeError, ValueError):
            result.rows_skipped += 1
            result.add_error(line, f"missing or non-integer index: {rec.get('index')!r}")
            continue
        problem, dirty = fix(rec, state)
        vec = rec.get("vector")
        if problem is None and vec and dimension and len(vec) != dimension:
            problem = f"vector has {len(vec)} values, model dimension is {dimension}"
        if problem is None:
            if kind == "features":
                key = ref = index
            else:
                if rec.get("id") is None:
                    rec["id"], dirty = new_id(), True
                key = rec["id"]
                ref = state.feature_ids.get(index)
                if ref is None:
                    problem = f"feature {index} does not exist in {model_id}/{source_name}"
            if problem is None and key in state.seen_keys:
                problem = f"duplicate {'index' if kind == 'features' else 'id'} {key!r} in this batch (first kept)"
            state.seen_keys.add(key)
        if problem is not None:
            result.rows_skipped += 1
            result.add_error(line, problem)
            continue
        if (state.check_nul or line in state.nul_lines) and _strip_nul(rec, text_keys):
            dirty = True
            result.notes += 1
            result.add_error(line, "\\u0000 stripped from text (row kept)")
        if typed:
            try:
                arrays = [_copy_array(name, rec.get(name)) for name in typed]
            except ValueError as exc:
                result.rows_skipped += 1
                result.add_error(line, str(exc))
                continue
            rec, raw = {k: v for k, v in rec.items() if k not in typed}, None  # the caller's dict stays whole
        if dirty or raw is None or b"\t" in raw or b"\r" in raw:
            raw = orjson.dumps(rec, option=orjson.OPT_SERIALIZE_NUMPY, default=str)
        # COPY text format: backslash is its escape character; JSON has no raw tabs/newlines in strings
        raw = raw.replace(b"\\", b"\\\\").strip()
        if typed:
            yield b"%d\t%d\t%s\t%s\n" % (line, ref, b"\t".join(arrays), raw)
        else:
            yield b"%d\t%d\t%s\n" % (line, ref, raw)
    if report is not None:
        report(result.rows_read)


def _feature_fix(rec, state):
    return None, False


def _activation_fix(rec, state):
    dirty = False
    z = rec.pop("zIndices", None)
    if z is not None:
        if not (isinstance(z, list) and len(z) == 2):
            return "zIndices must be [zKIndices, zQIndices]", True
        rec["zKIndices"], rec["zQIndices"], dirty = z[0], z[1], True
    di = rec.get("dataIndex")
    if di is not None and not isinstance(di, int):
        try:
            rec["dataIndex"] = int(di)
        except (TypeError, ValueError):
            rec["dataIndex"] = None
        dirty = True
    lc = rec.get("logitContributions")
    if lc is not None and not isinstance(lc, str):
        rec["logitContributions"], dirty = orjson.dumps(lc).decode(), True
    return None, dirty


def _explanation_fix(rec, state):
    if not isinstance(rec.get("description"), str):
        return "description is missing", False
    dirty = False
    if (emb := rec.get("embedding")) is not None:
        text, problem = _embedding(emb)
        if problem:
            return problem, False
        if text is not emb:
            rec["embedding"], dirty = text, True
    if (t := rec.get("typeName")) is not None:
        state.type_names.add(t)
    if (m := rec.get("explanationModelName")) is not None:
        state.model_names.add(m)
    return None, dirty


_FIXERS = {"features": _feature_fix, "activations": _activation_fix, "explanations": _explanation_fix}
_TEXT_KEYS = {
    "features": ("neg_str", "pos_str", "vectorLabel", "hookName"),
    "activations": ("tokens", "dataSource", "logitContributions"),
    "explanations": ("description", "notes"),
}


def _embedding(value) -> tuple[str | None, str | None]:
    """A pgvector text literal (as in the dataset) or a list of floats → literal; checks the dimension."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.startswith("[") and text.endswith("]")):
            return None, "embedding is not a pgvector literal"
        n = text.count(",") + 1 if len(text) > 2 else 0
        text = value if text == value else text
    elif isinstance(value, list):
        n = len(value)
        text = "[" + ",".join(repr(float(v)) for v in value) + "]"
    else:
        return None, "embedding is not a vector"
    if n != EMBEDDING_DIM_NEURONPEDIA:
        return None, f"embedding has {n} dimensions, expected {EMBEDDING_DIM_NEURONPEDIA}"
    return text, None


def _strip_nul(rec: dict, keys) -> bool:
    """Postgres text cannot hold NUL; Neuronpedia replaces it, we strip it and say so."""
    found = False
    for k in keys:
        v = rec.get(k)
        if isinstance(v, str):
            if "\x00" in v:
                rec[k] = v.replace("\x00", "")
                found = True
        elif isinstance(v, list) and any(isinstance(t, str) and "\x00" in t for t in v):
            rec[k] = [t.replace("\x00", "") if isinstance(t, str) else t for t in v]
            found = True
    return found


_COPY_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _copy_array(name: str, value) -> bytes:
    """A JSON list of strings or numbers → a Postgres array literal escaped for COPY text (ValueError naming the
    field when it is not one). orjson's text of the list already is the literal, with {} for [], unless a string
    holds a control character: both quote strings in "…" and escape only " and \\ inside them."""
    if value is None:
        return b"\\N"
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list, not {type(value).__name__}")
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError:  # a lone surrogate, which the NaN-tolerant fallback parser lets through
        raise ValueError(f"{name} holds text that is not valid UTF-8") from None
    if (b"[" in text[1:-1] or b"{" in text[1:-1]) and any(isinstance(v, (list, dict)) for v in value):
        raise ValueError(f"{name} must be a flat list of strings or numbers")
    if b"\\" in text and b"\\" in text.replace(b"\\\\", b"").replace(b'\\"', b""):
        return _copy_array_slow(value)
    return b"{" + text[1:-1].replace(b"\\", b"\\\\") + b"}"


def _copy_array_slow(value: list) -> bytes:
    parts = ["NULL" if v is None else '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value]
    return "".join(_COPY_ESCAPES.get(ch, ch) for ch in "{" + ",".join(parts) + "}").encode()


def _feature_ids(source_pk: int) -> dict[int, int]:
    # One query per batch, before COPY starts (the connection cannot run queries while in COPY mode).
    # Not cached across batches: another worker may have loaded features since.
    return dict(Feature.objects.filter(source_id=source_pk).values_list("index", "id"))


# ---------------------------------------------------------------------------------------------- SQL

_stage_counter = itertools.count()


def _stage_create(cursor, spec: _Spec) -> str:
    # A fresh name per call: callers may load several batches in one transaction. `json` (not jsonb)
    # keeps COPY a plain copy of the text; it is parsed once, by json_to_record in the upsert.
    name = f"_memicos_stage_{spec.kind}_{next(_stage_counter)}"
    # in spec.typed's order, the order _rows writes them in
    db_types = {c.wire: c.db_type for c in spec.columns}
    typed = "".join(f'"{name}" {db_types[name]}, ' for name in spec.typed)
    cursor.execute(f"CREATE TEMP TABLE {name} (_line integer, _ref bigint, {typed}j json) ON COMMIT DROP")
    return name


def _upsert(cursor, spec: _Spec, stage: str, source: Source, creator_id: int | None) -> int:
    cols = spec.columns
    record_def = ", ".join(f'"{c.wire}" {c.db_type}' for c in cols if c.wire not in spec.typed)
    values = [f'{"s" if c.wire in spec.typed else "x"}."{c.wire}"' for c in cols]
    values = [f"COALESCE({v}, {c.default_sql})" if c.default_sql else v for v, c in zip(values, cols, strict=True)]
    names = [c.column for c in cols]
    if spec.kind == "features":
        extra_names = ["model_id", "source_id", "index", "creator_id"]
        extra_values = ["%s", "%s", "s._ref", "%s"]
        params = [source.model_id, source.pk, creator_id]
    elif spec.kind == "activations":
        extra_names = ["feature_id", "creator_id"]
        extra_values = ["s._ref", "%s"]
        params = [creator_id]
    else:
        extra_names = ["feature_id", "model_id", "source_id", "author_id", "prompt_version"]
        extra_values = ["s._ref", "%s", "%s", "%s", "''"]
        params = [source.model_id, source.pk, creator_id]
    insert_names = extra_names + names
    insert_values = extra_values + values
    updatable = [n for n in insert_names if n not in spec.immutable and n not in ("model_id", "source_id", "index")]
    compare = [n for n in updatable if n not in ("updated_at",)]
    sets = [f"{n} = EXCLUDED.{n}" for n in updatable]
    if spec.kind == "explanations":
        # a changed description invalidates the locally computed 384-d embedding (re-embedded later)
        sets.append(
            "embedding = CASE WHEN t.description IS DISTINCT FROM EXCLUDED.description THEN NULL ELSE t.embedding END"
        )
    sql = (
        f"INSERT INTO {spec.table} AS t ({', '.join(insert_names)}) "
        f"SELECT {', '.join(insert_values)} FROM {stage} s, json_to_record(s.j) AS x({record_def}) "
        f"ON CONFLICT ({spec.key}) DO UPDATE SET {', '.join(sets)} "
        f"WHERE ({', '.join('t.' + n for n in compare)}) IS DISTINCT FROM ({', '.join('EXCLUDED.' + n for n in compare)})"
    )
    cursor.execute(sql, params)
    return max(cursor.rowcount, 0)


def _ensure_explanation_types(cursor, type_names: set, model_names: set):
    """Explanations reference types/models by name; unknown names get a bare row (config upserts fill them)."""
    for model, names in ((ExplanationType, type_names), (ExplanationModelType, model_names)):
        if not names:
            continue
        missing = set(names) - set(model.objects.filter(name__in=names).values_list("name", flat=True))
        for name in sorted(missing):
            model.objects.get_or_create(name=name)


def _pg_message(exc: Exception, lines: array) -> str:
    """Turn Postgres' 'COPY stage, line N' into the file's line number."""
    text = str(exc).strip().replace("\n", " ")
    import re

    m = re.search(r"COPY \S+, line (\d+)", text)
    if m and int(m.group(1)) - 1 < len(lines):
        text += f" (file line {lines[int(m.group(1)) - 1]})"
    return text[:500]


def model_dimension(model_id: str) -> int | None:
    return Model.objects.filter(pk=model_id).values_list("dimension", flat=True).first()
