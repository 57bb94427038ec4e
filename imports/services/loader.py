"""The one loader of dashboard rows: v1 wire records → COPY into a temp staging table → upsert.

Both the S3/directory importer and dashboard generation write rows through `records_load`, so there is
one place that maps Neuronpedia's names (features/fields.py) onto our tables, validates rows and
decides what an update means.

Why this shape:
- Each validated record is COPYed into a TEMP table (no WAL, no indexes) and moved into its table in one
  `INSERT … SELECT … ON CONFLICT DO UPDATE`: bound by Postgres' bulk paths, not per-row round trips.
  Features and activations (nearly every row of a dataset) are staged in typed columns, each value written
  here as the COPY text its column's input function reads (an array: orjson's text of the list with two
  byte edits, not psycopg's per-element dumping, which made the first version 2.6× slower); Postgres parsing
  the rows' JSON with `json_to_record` was a fifth of its time per activation and more per feature (their
  ~60 array elements). Explanations are staged as their JSON text and decomposed by `json_to_record`.
  An upsert on natural keys makes a re-run of the same rows a no-op and a changed upstream row an update
  (Neuronpedia's `ON CONFLICT DO NOTHING` never updates). The `WHERE … IS DISTINCT FROM` clause keeps
  unchanged rows untouched (no dead tuples, and `rows_loaded` counts exactly the inserted or changed rows).
  When none of the stage's keys exists yet (a first import) a plain INSERT does it without the per-row
  conflict checks; when one does, that INSERT is rolled back and the upsert runs. Activations (nearly all rows)
  skip the stage on a first import: their feature ids and defaults are resolved here, so their COPY goes straight
  into the table in a savepoint (one COPY, as a raw load); if it is refused, the same COPY text is staged and the
  checked path above reports what it finds.
- Everything runs inside `transaction.atomic()`, a savepoint when the caller already holds a
  transaction: a failed batch leaves nothing behind, and the caller decides when rows become visible.
- Row problems (malformed line, a value of the wrong type, NaN/±Infinity in an array or a NOT NULL column, text
  that is not UTF-8, wrong vector dimension, unknown feature, duplicate key, an id another source owns, and any
  other exception while checking a record) skip the row and are reported with its line; batch problems (unknown
  source, a value Postgres still refuses) raise LoadError and nothing is written.
- An unknown column is ignored (only known columns are staged or read by json_to_record) and named once per batch in
  `warnings`: Neuronpedia adds columns to its exports over time, and a reader that refused them would break on
  the next export.
- With `wait_for_features` (the importer's), a row whose feature is not in the database is not a bad row: the
  feature's file failed or is not loaded yet. Such rows are counted in `rows_waiting`, not reported one by one;
  the caller keeps the file for a later try (the rows that could load are loaded, and load again as no-ops).
"""

from __future__ import annotations

import itertools
import math
import tempfile
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


def unknown_columns_note(warnings: list[dict] | None, path: str, records: Iterable[dict], known) -> None:
    """The columns of a metadata or config file that no reader knows, named once per file in `warnings` (as a rows
    file's are in LoadResult.warnings): ignored, like an unknown column of a rows file."""
    unknown = set().union(*(rec.keys() for rec in records)) - known
    if warnings is not None and unknown:
        warnings.append({"file": path, "warning": f"unknown column(s) {', '.join(sorted(unknown))} ignored"})


@dataclass
class LoadResult:
    rows_read: int = 0
    rows_loaded: int = 0  # inserted or changed
    rows_skipped: int = 0  # bad rows, not written
    rows_unchanged: int = 0  # already present with identical values
    errors: list[dict] = field(default_factory=list)  # [{"line": int, "reason": str}]
    notes: int = 0  # rows kept after a repair (\u0000 stripped); listed in errors too
    rows_waiting: int = 0  # rows whose feature is not in the database (wait_for_features)
    waiting_for: list[int] = field(default_factory=list)  # a few of those feature indices, for the report
    rows_retryable: int = 0  # rows refused for a reason outside the file (an id another source owns)
    warnings: list[str] = field(default_factory=list)  # batch-level notes: unknown columns, once each

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
    null: bool = False


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
        out.append(_Column(wire_name, f.column, db_type, default_sql, f.null))
    return out


@dataclass
class _Spec:
    kind: str
    table: str
    columns: list[_Column]
    key: str  # conflict target
    # wire names staged as typed columns (formatted here, parsed once by their input function) instead of inside
    # the JSON; when every column is, the stage has no JSON at all
    typed: tuple[str, ...] = ()
    # kept on update: when a row was first made and by whom
    immutable: tuple[str, ...] = ("created_at", "creator_id", "author_id", "prompt_version")
    # wire name → (check, db type, nullable, int limit) for _values_check
    checks: dict = field(default_factory=dict)

    # the checks a line orjson parsed still needs: no text (orjson refused lone surrogates) and no typed arrays
    # (_row checks their numbers on the COPY literal it makes anyway)
    strict_checks: dict = field(default_factory=dict)
    # typed columns: (wire name, array check code or None for an array, False for a scalar), in stage order
    cells: tuple = ()
    json: bool = True  # some columns go to the stage as JSON (json_to_record)

    def __post_init__(self):
        arrays = {}
        for c in self.columns:
            code = _CHECK_CODES.get(c.db_type) or ("text" if c.db_type.startswith("varchar") else None)
            if c.db_type.endswith("[]"):
                arrays[c.wire] = code if code in _NUMBER_BYTES else None
            if code:
                self.checks[c.wire] = (code, c.db_type, c.null, _INT_RANGE.get(c.db_type))
                if code not in ("text", "text[]") and not (c.wire in self.typed and code in _NUMBER_BYTES):
                    self.strict_checks[c.wire] = self.checks[c.wire]
        self.cells = tuple((name, arrays.get(name, False)) for name in self.typed)
        self.json = not {c.wire for c in self.columns} <= set(self.typed)


_CHECK_CODES = {
    "integer": "int",
    "bigint": "int",
    "double precision": "float",
    "real": "float",
    "text": "text",
    "integer[]": "int[]",
    "double precision[]": "float[]",
    "text[]": "text[]",
}


_SPECS: dict[str, _Spec] = {}


def _spec(kind: str) -> _Spec:
    # Built lazily: db_type() needs the connection's vendor, not available at import time in every process.
    if kind not in _SPECS:
        if kind == "features":
            cols = _columns(Feature, wire.FEATURE_FIELDS)
            spec = _Spec(kind, Feature._meta.db_table, cols, "source_id, index", typed=tuple(c.wire for c in cols))
        elif kind == "activations":
            cols = _columns(Activation, wire.ACTIVATION_FIELDS)
            spec = _Spec(kind, Activation._meta.db_table, cols, "id", typed=tuple(c.wire for c in cols))
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
    feature_id_floor: int | None = None,
    wait_for_features: bool = False,
    direct_copy: bool = False,
) -> LoadResult:
    """records_load over (line number, record) pairs: the importer's entry point. With check_nul=False only
    the lines in `nul_lines` (raw lines that contained the \\u0000 escape) are scanned for NUL. With
    `feature_id_floor` (an import run's), a feature with a larger id was loaded by another file of the run: a
    row repeating its index is reported and skipped (first kept). With `wait_for_features`, rows whose feature
    is missing are counted in `rows_waiting` instead of reported as bad rows (see the module doc). With
    `direct_copy` (the importer's), a first import's activations skip the stage (_copy_direct)."""
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
            feature_ids = _feature_ids(source.pk) if kind != "features" else {}
            state = _RowState(
                kind=kind,
                source=source,
                spec=spec,
                result=result,
                check_nul=check_nul,
                nul_lines=nul_lines if nul_lines is not None else set(),
                feature_ids=feature_ids,
                wait_for_features=wait_for_features,
                defaults=_cell_defaults(cursor, spec),
            )
            lines = array("l")
            rows = _rows(numbered, state, report)
            loaded = spool = None
            if direct_copy and kind == "activations" and creator_id is None:
                loaded, spool = _copy_direct(cursor, spec, rows, lines)
            if loaded is None:
                stage = _stage_create(cursor, spec)
                try:
                    _stage_copy(cursor, stage, rows, lines, spool)
                except DataError as exc:
                    raise LoadError(f"bad value: {_pg_message(exc, lines)}") from None
                finally:
                    if spool is not None:
                        spool.close()
            if state.unknown_columns:
                result.warnings.append(
                    f"unknown column(s) {', '.join(sorted(state.unknown_columns))} for {kind} ignored"
                )
            if state.type_names or state.model_names:
                _ensure_explanation_types(cursor, state.type_names, state.model_names)
            staged = len(lines)
            if loaded is None:
                if kind == "features" and feature_id_floor is not None:
                    _features_lock(cursor, source)
                loaded = _insert_new(cursor, spec, stage, source, creator_id)
                if loaded is None:
                    staged -= _foreign_ids_drop(cursor, spec, stage, source, result)
                    if kind == "features" and feature_id_floor is not None:
                        staged -= _repeated_features_drop(cursor, stage, source, feature_id_floor, result)
                    try:
                        with transaction.atomic():
                            loaded = _upsert(cursor, spec, stage, source, creator_id)
                    except IntegrityError as exc:
                        raise LoadError(f"integrity error: {exc}".splitlines()[0]) from None
                    except DataError as exc:
                        raise LoadError(f"bad value: {str(exc).splitlines()[0]}") from None
                cursor.execute(f"DROP TABLE {stage}")
            result.rows_loaded = loaded
            result.rows_unchanged = staged - loaded
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
    wait_for_features: bool = False
    unknown_columns: set = field(default_factory=set)
    dimension: int | None = None  # the model's, for features' vectors
    defaults: dict = field(default_factory=dict)  # typed cell → its COPY text when the record has no value
    cells: tuple = ()  # spec.cells, each with its text for a missing value

    def __post_init__(self):
        self.dimension = self.source.model.dimension
        self.cells = tuple((name, code, self.defaults.get(name, b"\\N")) for name, code in self.spec.cells)


class _RowProblem(Exception):
    """The row is skipped and reported with this reason."""


class _FeatureMissing(_RowProblem):
    """The row's feature is not in the database: a bad row for records_load, a waiting row for the importer."""

    def __init__(self, reason: str, index: int):
        super().__init__(reason)
        self.index = index


def _rows(numbered, state: _RowState, report) -> Iterator[tuple[int, bytes]]:
    """Validate each record and yield (line, its COPY line): `ref [\t key] [\t cells] [\t json]`. The JSON text goes
    to Postgres as sent (json_to_record decomposes it in C); a record is re-serialized only when it had to be
    changed (repairs, generated ids, a line parsed by the NaN-tolerant fallback)."""
    result = state.result
    for item in numbered:
        line, rec = item[0], item[1]
        raw = item[2] if len(item) > 2 else None
        result.rows_read += 1
        if report is not None and result.rows_read % REPORT_EVERY == 0:
            report(result.rows_read)
        try:
            data = _row(line, rec, raw, state)
        except LoadError:
            raise
        except _FeatureMissing as exc:
            if not state.wait_for_features:
                result.rows_skipped += 1
                result.add_error(line, str(exc))
                continue
            result.rows_waiting += 1
            if len(result.waiting_for) < 10 and exc.index not in result.waiting_for:
                result.waiting_for.append(exc.index)
            continue
        except _RowProblem as exc:
            result.rows_skipped += 1
            result.add_error(line, str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - one odd line must cost its row, never the file (or a hung run)
            result.rows_skipped += 1
            result.add_error(line, f"bad row ({type(exc).__name__}: {exc})"[:500])
            continue
        yield line, data
    if report is not None:
        report(result.rows_read)


def _row(line: int, rec, raw: bytes | None, state: _RowState) -> bytes:
    """One record's COPY line; raises _RowProblem for a bad row, LoadError for a bad batch. `raw` is the line's
    text when orjson parsed it (so it holds no NaN, ±Infinity or lone surrogate), None otherwise."""
    kind, result = state.kind, state.result
    source_name, model_id = state.source.name, state.source.model_id
    if isinstance(rec, BadRecord):
        raise _RowProblem(rec.reason)
    if not isinstance(rec, dict):
        raise _RowProblem("record is not a JSON object")
    if not rec.keys() <= ALLOWED_KEYS[kind]:
        state.unknown_columns.update(rec.keys() - ALLOWED_KEYS[kind])
    layer = rec.get("layer")
    if (layer is not None and layer != source_name) or rec.get("modelId", model_id) != model_id:
        raise _RowProblem(f"row belongs to {rec.get('modelId')!r}/{layer!r}, not {model_id}/{source_name}")
    index = _integer("index", rec.get("index"), "integer")
    if index is None:
        raise _RowProblem("missing index")
    if index < 0:
        raise _RowProblem(f"negative index {index}")  # the upload API's min_value=0; export would drop its rows
    dirty = _FIXERS[kind](rec, state)
    spec = state.spec
    notes = _values_check(rec, spec.strict_checks if raw is not None else spec.checks, strict=raw is not None)
    dirty = dirty or bool(notes)
    vec, dimension = rec.get("vector"), state.dimension
    if vec and dimension and isinstance(vec, list) and len(vec) != dimension:  # not a list: refused with the cells
        raise _RowProblem(f"vector has {len(vec)} values, model dimension is {dimension}")
    if kind == "features":
        key = ref = index
    else:
        if rec.get("id") is None:
            rec["id"], dirty = new_id(), True
        key = rec["id"]
        ref = state.feature_ids.get(index)
        if ref is None:
            raise _FeatureMissing(f"feature {index} does not exist in {model_id}/{source_name}", index)
    if key in state.seen_keys:
        raise _RowProblem(f"duplicate {'index' if kind == 'features' else 'id'} {key!r} in this batch (first kept)")
    if (state.check_nul or line in state.nul_lines) and _strip_nul(rec, _TEXT_KEYS[kind]):
        dirty = True
        notes.append("\\u0000 stripped from text (row kept)")
    fields = [b"%d" % ref]
    if kind == "explanations":  # activations' id is a typed cell, features' key is ref
        fields.append(_copy_text(key))
    if spec.cells:
        get, add = rec.get, fields.append
        try:
            for name, array_code, null in state.cells:
                value = get(name)
                if value is None:
                    add(null)
                elif array_code is False:
                    # the common scalars inline: a call per value was a fifth of this loop's cost
                    t = type(value)
                    if t is int:
                        add(b"%d" % value)
                    elif t is float:  # finite: _values_check refused or nulled the others
                        add(b"%r" % value)
                    elif t is str:
                        add(_copy_text(value))
                    else:
                        add(_copy_cell(name, value))
                elif type(value) is list and not value:
                    add(b"{}")
                else:
                    literal = _copy_array(name, value)
                    if array_code and raw is not None:
                        _array_check(name, value, array_code, strict=True, text=literal[1:-1])
                    add(literal)
        except ValueError as exc:
            raise _RowProblem(str(exc)) from None
        if spec.json:
            rec, raw = {k: v for k, v in rec.items() if k not in spec.typed}, None  # the caller's dict stays whole
    if spec.json:
        if dirty or raw is None or b"\t" in raw or b"\r" in raw:
            try:
                raw = orjson.dumps(rec, option=orjson.OPT_SERIALIZE_NUMPY, default=str)
            except orjson.JSONEncodeError as exc:  # a lone surrogate in a key or a nested value
                raise _RowProblem(f"record cannot be written as JSON: {exc}") from None
        # COPY text format: backslash is its escape character; JSON has no raw tabs/newlines in strings
        fields.append(raw.replace(b"\\", b"\\\\").strip())
    # accepted: only now does the key count as taken, and its notes reach the report
    state.seen_keys.add(key)
    if kind == "explanations":
        if (t := rec.get("typeName")) is not None:
            state.type_names.add(t)
        if (m := rec.get("explanationModelName")) is not None:
            state.model_names.add(m)
    if notes:
        result.notes += 1
        for note in notes:
            result.add_error(line, note)
    fields[-1] += b"\n"
    return b"\t".join(fields)


_INT_RANGE = {"integer": 1 << 31, "bigint": 1 << 63}


def _integer(name: str, value, db_type: str = "bigint") -> int | None:
    """An int (not a bool) or a string of digits, in the column's range; None for null. A float is refused
    rather than truncated (7.9 must not load as 7)."""
    if value is None:
        return None
    if type(value) is int:
        n = value
    elif isinstance(value, str) and value.isascii() and value.removeprefix("-").isdigit() and len(value) < 25:
        n = int(value)
    else:
        raise _RowProblem(f"non-integer {name}: {value!r}"[:200])
    if not -_INT_RANGE[db_type] <= n < _INT_RANGE[db_type]:
        raise _RowProblem(f"{name} {n} is out of range")
    return n


def _number(name: str, value) -> float | None:
    """A float column's value as a finite number (strings are parsed, as Postgres would); None for null."""
    if value is None:
        return None
    t = type(value)
    if t is float or t is int:
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    elif isinstance(value, (int, float)) and not isinstance(value, bool):  # numpy scalars
        return float(value)
    raise _RowProblem(f"{name} is not a number: {value!r}"[:200])


def _values_check(rec: dict, checks: dict, *, strict: bool) -> list[str]:
    """Check each value against its column's type; returns the notes of values it had to change. A non-finite
    number is refused inside an array or in a NOT NULL column, and stored as NULL (with a note) elsewhere: orjson
    would write it as null and COALESCE would turn that into a default without a word. `strict` lines came
    through orjson, which refuses NaN, ±Infinity and lone surrogates, so only their types are checked."""
    notes = []
    get = rec.get
    for name, (code, db_type, nullable, limit) in checks.items():
        if (value := get(name)) is None:
            continue
        t = type(value)
        # the common cases first, inline: a call per value was most of this check's cost
        if (t is float and code == "float" and value - value == 0.0) or (
            t is int and code == "int" and -limit <= value < limit
        ):
            continue
        if code == "int":
            if t is float and not math.isfinite(value) and nullable:
                rec[name] = None
                notes.append(f"{name} was {value}, stored as NULL (row kept)")
            else:
                _integer(name, value, db_type)
        elif code == "float":
            number = _number(name, value)
            if not math.isfinite(number):
                if not nullable:
                    raise _RowProblem(f"{name} is {value}")
                rec[name] = None
                notes.append(f"{name} was {value}, stored as NULL (row kept)")
        elif code == "text":
            if not strict and isinstance(value, str):
                _utf8(name, value)
        elif not isinstance(value, list):
            raise _RowProblem(f"{name} must be a list, not {type(value).__name__}")
        elif code == "text[]":
            if not strict:
                for i, v in enumerate(value):
                    if isinstance(v, str):
                        _utf8(f"{name}[{i}]", v)
        else:
            _array_check(name, value, code, strict=strict)
    return notes


# The bytes orjson writes for a list of plain numbers (of ints: at most 9 characters each, so in int32 range).
_NUMBER_BYTES = {"float[]": b"0123456789.-+eE,", "int[]": b"0123456789-,"}


def _array_check(name: str, value: list, code: str, *, strict: bool, text: bytes | None = None):
    """`text`: orjson's text of `value` without its brackets, when the caller has it."""
    if not value:
        return
    if strict:
        # One pass in C over orjson's text instead of a Python step per element: a dashboard's activation holds
        # ~64 values, and the per-element loop was a quarter of the import's CPU. A strict line holds no NaN.
        text = orjson.dumps(value)[1:-1] if text is None else text
        if not text.translate(None, _NUMBER_BYTES[code]) and (
            code == "float[]" or max(map(len, text.split(b","))) <= 9
        ):
            return
    elif all(type(v) is int or (type(v) is float and code == "float[]") for v in value) and (
        code == "int[]" or all(map(math.isfinite, value))
    ):
        return
    for i, v in enumerate(value):  # the slow path names the first bad element
        if v is None:
            continue
        if code == "int[]":
            _integer(f"{name}[{i}]", v, "integer")
        elif not math.isfinite(_number(f"{name}[{i}]", v)):
            raise _RowProblem(f"{name}[{i}] is {v}")


def _utf8(name: str, value: str):
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise _RowProblem(f"{name} is not valid UTF-8 (a lone surrogate)") from None


def _copy_text(value: str) -> bytes:
    data = value.encode()
    if b"\\" in data or b"\t" in data or b"\n" in data or b"\r" in data:
        data = "".join(_COPY_ESCAPES.get(ch, ch) for ch in value).encode()
    return data


def _feature_fix(rec, state) -> bool:
    return False


def _activation_fix(rec, state) -> bool:
    dirty = _id_fix(rec, Activation._meta.pk.max_length)
    z = rec.pop("zIndices", None)
    if z is not None:
        if not (isinstance(z, list) and len(z) == 2):
            raise _RowProblem("zIndices must be [zKIndices, zQIndices]")
        rec["zKIndices"], rec["zQIndices"], dirty = z[0], z[1], True
    tokens, values = rec.get("tokens"), rec.get("values")
    for name, value in (("tokens", tokens), ("values", values)):
        if not isinstance(value, list):
            got = "missing" if value is None else f"not {type(value).__name__}"
            raise _RowProblem(f"{name} must be a list, {got}")
    if len(tokens) != len(values):  # as the upload API: one value per token
        raise _RowProblem(f"{len(values)} values for {len(tokens)} tokens (one value per token)")
    lc = rec.get("logitContributions")
    if lc is not None and not isinstance(lc, str):
        rec["logitContributions"], dirty = orjson.dumps(lc).decode(), True
    return dirty


def _explanation_fix(rec, state) -> bool:
    if not isinstance(rec.get("description"), str):
        raise _RowProblem("description is missing")
    dirty = _id_fix(rec, Explanation._meta.pk.max_length)
    for name in ("typeName", "explanationModelName"):
        if (v := rec.get(name)) is not None and not isinstance(v, str):
            raise _RowProblem(f"{name} must be a string, not {type(v).__name__}")
    if (emb := rec.get("embedding")) is not None:
        text = _embedding(emb)
        if text is not emb:
            rec["embedding"], dirty = text, True
    return dirty


def _id_fix(rec, max_length: int) -> bool:
    """Ids are strings; a number is taken as its text (json_to_record would do the same)."""
    value = rec.get("id")
    if value is None or isinstance(value, str):
        if value is not None and (len(value) > max_length or "\x00" in value):
            raise _RowProblem(f"id {value[:80]!r} is not a valid id (at most {max_length} characters, no NUL)")
        return False
    if type(value) is int:
        rec["id"] = str(value)
        return True
    raise _RowProblem(f"id must be a string or an integer, not {type(value).__name__}")


_FIXERS = {"features": _feature_fix, "activations": _activation_fix, "explanations": _explanation_fix}
_TEXT_KEYS = {
    "features": ("neg_str", "pos_str", "vectorLabel", "hookName"),
    "activations": ("tokens", "dataSource", "logitContributions"),
    "explanations": ("description", "notes"),
}


def _embedding(value) -> str:
    """A pgvector text literal (as in the dataset) or a list of numbers → literal, checked number by number (pgvector
    would refuse a NaN, failing the whole file, and a list's NaN would be written as null)."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.startswith("[") and text.endswith("]")):
            raise _RowProblem("embedding is not a pgvector literal")
        parts = text[1:-1].split(",") if len(text) > 2 else []
        numbers = []
        for i, part in enumerate(parts):
            try:
                numbers.append(float(part))
            except ValueError:
                raise _RowProblem(f"embedding[{i}] is not a number: {part.strip()[:40]!r}") from None
        text = value if text == value else text
    elif isinstance(value, list):
        numbers = [_number(f"embedding[{i}]", v) for i, v in enumerate(value)]
        if None in numbers:
            raise _RowProblem(f"embedding[{numbers.index(None)}] is null")
        text = None
    else:
        raise _RowProblem("embedding is not a vector")
    if len(numbers) != EMBEDDING_DIM_NEURONPEDIA:
        raise _RowProblem(f"embedding has {len(numbers)} dimensions, expected {EMBEDDING_DIM_NEURONPEDIA}")
    if not all(map(math.isfinite, numbers)):
        i = next(i for i, v in enumerate(numbers) if not math.isfinite(v))
        raise _RowProblem(f"embedding[{i}] is {numbers[i]}")
    return text if text is not None else "[" + ",".join(repr(v) for v in numbers) + "]"


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
    inner = text[1:-1]
    if (b"[" in inner or b"{" in inner) and any(isinstance(v, (list, dict)) for v in value):
        raise ValueError(f"{name} must be a flat list of strings or numbers")
    if b"\\" not in inner:
        return b"{%s}" % inner
    if b"\\" in inner.replace(b"\\\\", b"").replace(b'\\"', b""):
        return _copy_array_slow(value)
    return b"{%s}" % inner.replace(b"\\", b"\\\\")


def _copy_cell(name: str, value) -> bytes:
    """A scalar column's value as COPY text, as json_to_record would read it from the JSON: a string as itself (the
    column's input function parses it), other values as their JSON text. _values_check has checked its type."""
    if value is None:
        return b"\\N"
    t = type(value)
    if t is str:
        return _copy_text(value)
    if t is int:
        return b"%d" % value
    if t is float or t is bool:
        return orjson.dumps(value)
    try:  # a list or object in a text column, a numpy scalar
        text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=str)
    except orjson.JSONEncodeError:  # a lone surrogate, which the NaN-tolerant fallback parser lets through
        raise ValueError(f"{name} holds text that is not valid UTF-8") from None
    if text.startswith(b'"'):
        return _copy_text(orjson.loads(text))
    return text.replace(b"\\", b"\\\\")  # JSON text holds no raw tab or newline


def _copy_array_slow(value: list) -> bytes:
    parts = ["NULL" if v is None else '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value]
    return _copy_text("{" + ",".join(parts) + "}")


def _feature_ids(source_pk: int) -> dict[int, int]:
    # One query per batch, before COPY starts (the connection cannot run queries while in COPY mode).
    # Not cached across batches: another worker may have loaded features since.
    return dict(Feature.objects.filter(source_id=source_pk).values_list("index", "id"))


# ---------------------------------------------------------------------------------------------- SQL

SPOOL_MEMORY = 64 << 20  # bytes of a direct COPY kept in memory for a fallback to the stage; beyond, a temp file


def _cell_defaults(cursor, spec: _Spec) -> dict[str, bytes]:
    """Each typed column's default (the upsert's COALESCE) as COPY text, so a row can go straight into its table.
    now() is the transaction's timestamp, the value the INSERT's now() would give."""
    out = {}
    for c in spec.columns:
        if c.wire not in spec.typed or c.default_sql is None:
            continue
        sql = c.default_sql
        if sql == "now()":
            if "now" not in out:
                cursor.execute("SELECT now()::text")
                out["now"] = cursor.fetchone()[0].encode()
            out[c.wire] = out["now"]
        elif sql in ("TRUE", "FALSE"):
            out[c.wire] = b"t" if sql == "TRUE" else b"f"
        elif sql == "''":
            out[c.wire] = b""
        elif sql.startswith("'{}'::"):
            out[c.wire] = b"{}"
        else:  # a number's repr
            out[c.wire] = sql.encode()
    out.pop("now", None)
    return out


def _chunks(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The pieces joined into COPY messages of about COPY_CHUNK bytes. psycopg sends each write() as its own
    message and waits on the socket: one write per ~256 KB instead of per row took that wait from two thirds of
    the import's time to noise."""
    buf, size = [], 0
    for piece in pieces:
        buf.append(piece)
        size += len(piece)
        if size >= COPY_CHUNK:
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)


def _copy_direct(cursor, spec: _Spec, rows, lines: array) -> tuple[int | None, tempfile.SpooledTemporaryFile | None]:
    """A first import's activations COPYed straight into their table in a savepoint: one COPY, as a raw load does,
    instead of a stage COPY and an INSERT … SELECT. Every row's feature id is resolved already and its defaults
    filled in (_cell_defaults). Any refusal (an id that exists: this file loaded before, or owned by another
    source; a value Postgres refuses) rolls the savepoint back and returns (None, the rows' COPY text, all of it):
    the caller stages that text and takes the checked path, which reports each refused row."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
    columns = ", ".join(["feature_id", *(c.column for c in spec.columns)])

    def data():  # each row's line noted as it is read; called again after a refusal, it goes on with the rest
        for line, row in rows:
            lines.append(line)
            yield row

    try:
        with transaction.atomic(), connection.wrap_database_errors:
            with cursor.copy(f"COPY {spec.table} ({columns}) FROM STDIN") as copy:
                for chunk in _chunks(data()):
                    spool.write(chunk)  # before the write that may be refused: the spool holds every row read
                    copy.write(chunk)
    except (IntegrityError, DataError):
        for row in data():  # the rest of the file, for the stage
            spool.write(row)
        spool.seek(0)
        return None, spool
    spool.close()
    return len(lines), None


def _stage_copy(cursor, stage: str, rows, lines: array, spool=None):
    """COPY the rows into the stage, each prefixed with its file line; from `spool` (a failed direct COPY's text,
    one row a line, their file lines already in `lines`) when given."""

    def pieces():
        if spool is not None:  # COPY text escapes newlines inside values: one row a line
            for line, row in zip(lines, spool, strict=True):
                yield b"%d\t" % line
                yield row
            return
        for line, row in rows:
            lines.append(line)
            yield b"%d\t" % line
            yield row

    # Django wraps errors of execute() but not of the raw cursor's COPY: wrapped, a server restart
    # mid-COPY is Django's OperationalError (the import tasks retry it, the web answers 503)
    with connection.wrap_database_errors, cursor.copy(f"COPY {stage} FROM STDIN") as copy:
        for chunk in _chunks(pieces()):
            copy.write(chunk)


_stage_counter = itertools.count()


def _stage_create(cursor, spec: _Spec) -> str:
    # A fresh name per call: callers may load several batches in one transaction. `json` (not jsonb)
    # keeps COPY a plain copy of the text; it is parsed once, by json_to_record in the upsert.
    name = f"_memicos_stage_{spec.kind}_{next(_stage_counter)}"
    # in spec.typed's order, the order _rows writes them in
    db_types = {c.wire: c.db_type for c in spec.columns}
    typed = "".join(f', "{name}" {db_types[name]}' for name in spec.typed)
    key = ", _key text" if spec.kind == "explanations" else ""  # the id, to find ids another source owns
    j = ", j json" if spec.json else ""
    cursor.execute(f"CREATE TEMP TABLE {name} (_line integer, _ref bigint{key}{typed}{j}) ON COMMIT DROP")
    return name


def _foreign_ids_drop(cursor, spec: _Spec, stage: str, source: Source, result: LoadResult) -> int:
    """Rows whose id belongs to another source are reported and dropped from the stage: the upsert on id would move
    that row's feature to this source while its source (an explanation's) stayed behind. Returns the count."""
    if spec.kind == "features":
        return 0
    if spec.kind == "activations":
        owner = f"JOIN {Feature._meta.db_table} f ON f.id = t.feature_id JOIN {Source._meta.db_table} o ON o.id = f.source_id"
        key = 's."id"'  # staged as a typed cell
    else:
        owner = f"JOIN {Source._meta.db_table} o ON o.id = t.source_id"
        key = "s._key"
    dropped = _stage_drop(
        cursor,
        f"DELETE FROM {stage} s USING {spec.table} t {owner} WHERE t.id = {key} AND o.id <> %s "
        f"RETURNING s._line, {key}, o.model_id, o.name",
        [source.pk],
        result,
        lambda key, model_id, name: f"id {key!r} already belongs to source {model_id}/{name} (row not loaded)",
    )
    result.rows_retryable += dropped  # the other source may be deleted or fixed: a Re-sync tries the file again
    return dropped


def _repeated_features_drop(cursor, stage: str, source: Source, floor: int, result: LoadResult) -> int:
    """Features this run already loaded from another file (id above the run's floor) are reported and dropped from
    the stage. The lock serializes this check and the upsert among a source's feature files until commit, so two
    files loading at once still see each other's rows; a re-run of a file never sees its own (rolled back or
    loaded before this run's floor)."""
    _features_lock(cursor, source)
    return _stage_drop(
        cursor,
        f"DELETE FROM {stage} s USING {Feature._meta.db_table} t "
        "WHERE t.source_id = %s AND t.index = s._ref AND t.id > %s RETURNING s._line, s._ref",
        [source.pk, floor],
        result,
        lambda index: f"duplicate index {index}: already loaded from another file of this import (first kept)",
    )


def _features_lock(cursor, source: Source):
    """Held until commit: a source's feature files insert (and check for each other's rows) one at a time."""
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext('memicos.import.features'), %s)", [source.pk % (1 << 31)])


def _stage_drop(cursor, delete_sql: str, params: list, result: LoadResult, reason: Callable[..., str]) -> int:
    """Run a DELETE … RETURNING _line, … on the stage; each row it removed is reported (in line order) with
    reason(the other returned columns) and counted as skipped. Returns how many."""
    cursor.execute(delete_sql, params)
    dropped = sorted(cursor.fetchall())
    for line, *rest in dropped:
        result.add_error(line, reason(*rest))
    result.rows_skipped += len(dropped)
    return len(dropped)


def _insert_new(cursor, spec: _Spec, stage: str, source: Source, creator_id: int | None) -> int | None:
    """The stage's rows inserted as they are when none of their keys exists yet (a first import): the plain INSERT
    skips the upsert's per-row conflict check, and when it succeeds there was nothing for the stage drops to find.
    None, with nothing written, when a key exists (or the INSERT fails otherwise): the caller takes the upsert path,
    which reports what it finds."""
    sql, params, _ = _insert_sql(spec, stage, source, creator_id)
    try:
        with transaction.atomic():
            cursor.execute(sql, params)
    except (IntegrityError, DataError):
        return None
    return max(cursor.rowcount, 0)


def _insert_sql(spec: _Spec, stage: str, source: Source, creator_id: int | None) -> tuple[str, list, list[str]]:
    """INSERT … SELECT of the stage's rows (defaults for missing values), its parameters and its columns."""
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
    records = f", json_to_record(s.j) AS x({record_def})" if spec.json else ""
    sql = f"INSERT INTO {spec.table} AS t ({', '.join(insert_names)}) SELECT {', '.join(insert_values)} FROM {stage} s{records}"
    return sql, params, insert_names


def _upsert(cursor, spec: _Spec, stage: str, source: Source, creator_id: int | None) -> int:
    sql, params, insert_names = _insert_sql(spec, stage, source, creator_id)
    updatable = [n for n in insert_names if n not in spec.immutable and n not in ("model_id", "source_id", "index")]
    compare = [n for n in updatable if n not in ("updated_at",)]
    sets = [f"{n} = EXCLUDED.{n}" for n in updatable]
    if spec.kind == "explanations":
        # a changed description invalidates the locally computed 384-d embedding (re-embedded later)
        sets.append(
            "embedding = CASE WHEN t.description IS DISTINCT FROM EXCLUDED.description THEN NULL ELSE t.embedding END"
        )
    sql += (
        f" ON CONFLICT ({spec.key}) DO UPDATE SET {', '.join(sets)} "
        f"WHERE ({', '.join('t.' + n for n in compare)}) IS DISTINCT FROM ({', '.join('EXCLUDED.' + n for n in compare)})"
    )
    if spec.kind == "explanations":  # an id another source took meanwhile is not moved (see _foreign_ids_drop)
        sql += " AND t.source_id = EXCLUDED.source_id"
    elif spec.kind == "activations":
        sql += f" AND t.feature_id IN (SELECT id FROM {Feature._meta.db_table} WHERE source_id = %s)"
        params.append(source.pk)
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
