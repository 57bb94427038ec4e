"""Import of one source from a v1 dataset: config, metadata, then one checkpointed file at a time.

A file is streamed (S3 body → gzip → lines), parsed and loaded by `loader.rows_load` inside one
transaction that also marks its ImportFile DONE (or FAILED with its report). The ImportFile row is
locked FOR UPDATE for that transaction, so two deliveries of the same task serialize and the second
sees DONE; a killed worker's transaction dies with its connection, leaving the file PENDING and none of
its rows visible, and the next run redoes just that file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import orjson
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from features import fields as wire
from features.models import (
    Activation,
    Explanation,
    ExplanationModelType,
    ExplanationScoreModel,
    ExplanationScoreType,
    ExplanationType,
    Feature,
    Job,
    Model,
    Source,
    SourceRelease,
    SourceSet,
)
from features.services.jobs import JOB_CONTINUES, JobContext, job_claim, job_enqueue, job_fail, job_finish, job_progress
from imports.jobs import JOB_KIND
from imports.models import ImportFile, ImportRun
from imports.services import evals, live
from imports.services.loader import BadRecord, LoadError, LoadResult, rows_load, unknown_columns_note
from imports.services.origin import Origin, OriginParams, origin_from_params

log = logging.getLogger(__name__)

KIND_ORDER = ("features", "activations", "explanations")
_BATCH_RE = re.compile(r"/(features|activations|explanations)/.*\.jsonl\.gz$")

CONFIG_FILES = {
    "explanation_type.jsonl": (ExplanationType, wire.EXPLANATION_TYPE_FIELDS),
    "explanation_model_type.jsonl": (ExplanationModelType, wire.EXPLANATION_MODEL_TYPE_FIELDS),
    "explanation_score_model.jsonl": (ExplanationScoreModel, wire.EXPLANATION_SCORE_MODEL_FIELDS),
    "explanation_score_type.jsonl": (ExplanationScoreType, wire.EXPLANATION_SCORE_TYPE_FIELDS),
    # config/eval_type.jsonl: imports/services/evals.py
}
# Neuronpedia's columns that are keys, relations, or not kept here on purpose: read or dropped without a warning
CONFIG_KNOWN = frozenset({"creatorId", "explainerModelSettingsId", "createdAt", "updatedAt"})
METADATA_KNOWN = {
    "release.jsonl": frozenset(wire.RELEASE_FIELDS) | {"name", "creatorId"},
    "model.jsonl": frozenset(wire.MODEL_FIELDS) | {"id", "creatorId", "defaultGraphSourceSetName"},
    "sourceset.jsonl": frozenset(wire.SOURCE_SET_FIELDS)
    | {"modelId", "name", "releaseName", "creatorId", "hasGraphs", "graphEnabled", "similarityMatrixEnabled"}
    | {"defaultOfModelId", "defaultGraphModelId"},
    "source.jsonl": frozenset(wire.SOURCE_FIELDS) | {"modelId", "id", "setName", "creatorId", "defaultOfModelId"},
}


# ------------------------------------------------------------------------------------------ config/meta


def _jsonl(data: bytes | None, path: str) -> list[tuple[int, dict]]:
    """(line number, JSON object) of a small .jsonl file; LoadError naming the file and line of the first bad one."""
    if not data:
        return []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(f"{path}: not UTF-8 ({exc})") from None
    rows = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise LoadError(f"{path} line {line_no}: malformed JSON: {exc}") from None
        if not isinstance(rec, dict):
            raise LoadError(f"{path} line {line_no}: not a JSON object")
        rows.append((line_no, rec))
    return rows


@contextmanager
def _reading(path: str, line: int | None):
    """A savepoint for applying one metadata or config row; its errors become a LoadError naming the file and line
    (a database outage is left to propagate: the task retries it)."""
    try:
        with transaction.atomic():
            yield
    except (LoadError, OperationalError, InterfaceError):
        raise
    except Exception as exc:  # noqa: BLE001 - any bad value in upstream metadata must fail the run, not hang it
        where = f"{path} line {line}" if line else path
        raise LoadError(f"{where}: {type(exc).__name__}: {exc}".splitlines()[0][:500]) from None


def _name(rec: dict, path: str, line: int) -> str:
    name = rec.get("name")
    if not isinstance(name, str) or not name:
        raise LoadError(f"{path} line {line}: name is missing")
    return name


def _fields(model, rec: dict, field_map: dict[str, str]) -> dict:
    """Wire row → model kwargs; nulls in NOT NULL columns fall back to the field default."""
    out = {}
    for wire_name, attr in field_map.items():
        if wire_name not in rec or attr in ("name", "updated_at"):
            continue
        value = rec[wire_name]
        f = model._meta.get_field(attr)
        if attr == "created_at":
            value = parse_datetime(value) if isinstance(value, str) else None
            if value is None:
                continue
        elif value is None and not f.null:
            value = f.get_default()
        out[attr] = value
    return out


def config_import(*, origin: Origin, warnings: list[dict] | None = None) -> dict[str, int]:
    """Upsert the lookup tables of v1/config by name (Neuronpedia's step 0); unknown columns are noted in
    `warnings`, once per file."""
    counts = {}
    for filename, (model, field_map) in CONFIG_FILES.items():
        path = f"config/{filename}"
        rows = _jsonl(origin.read_bytes(path), path)
        unknown_columns_note(warnings, path, (rec for _, rec in rows), frozenset(field_map) | CONFIG_KNOWN)
        with transaction.atomic():
            for line_no, rec in rows:
                if rec.get("name"):
                    with _reading(path, line_no):
                        model.objects.update_or_create(name=rec["name"], defaults=_fields(model, rec, field_map))
        counts[filename] = len(rows)
    counts[evals.EVAL_TYPE_FILE.rsplit("/", 1)[1]] = evals.eval_types_import(origin=origin, warnings=warnings)
    return counts


def metadata_import(
    *, origin: Origin, model_id: str, source_id: str, update: bool = False, warnings: list[dict] | None = None
) -> Source:
    """release/model/sourceset/source rows; created when absent, updated too on Re-sync. LoadError names the file
    and line of a bad row; unknown columns are noted in `warnings`."""
    base = f"{model_id}/{source_id}/"

    def rows(name: str) -> tuple[str, list[tuple[int, dict]]]:
        found = _jsonl(origin.read_bytes(base + name), base + name)
        unknown_columns_note(warnings, base + name, (rec for _, rec in found[:1]), METADATA_KNOWN[name])
        return base + name, found

    with transaction.atomic():
        release = None
        path, release_rows = rows("release.jsonl")
        for line, rec in release_rows[:1]:
            name = _name(rec, path, line)
            with _reading(path, line):
                release = _upsert(
                    SourceRelease, {"name": name}, _fields(SourceRelease, rec, wire.RELEASE_FIELDS), update
                )
        path, model_rows = rows("model.jsonl")
        if not model_rows and not Model.objects.filter(pk=model_id).exists():
            raise LoadError(f"{path} is missing and model {model_id} does not exist")
        for line, rec in model_rows[:1]:
            with _reading(path, line):
                _upsert(Model, {"id": model_id}, _fields(Model, rec, wire.MODEL_FIELDS), update)
        path, set_rows = rows("sourceset.jsonl")
        line, set_rec = set_rows[0] if set_rows else (None, None)
        set_name = _name(set_rec, path, line) if set_rec else _set_name(source_id)
        with _reading(path, line):
            set_fields = _fields(SourceSet, set_rec, wire.SOURCE_SET_FIELDS) if set_rec else {}
            if set_rec and set_rec.get("releaseName"):
                release = release or SourceRelease.objects.filter(name=set_rec["releaseName"]).first()
            if release is not None:
                set_fields["release"] = release
            source_set = _upsert(SourceSet, {"model_id": model_id, "name": set_name}, set_fields, update)
        path, src_rows = rows("source.jsonl")
        line, src_rec = src_rows[0] if src_rows else (None, None)
        with _reading(path, line):
            src_fields = _fields(Source, src_rec, wire.SOURCE_FIELDS) if src_rec else {}
            src_fields["source_set"] = source_set
            return _upsert(Source, {"model_id": model_id, "name": source_id}, src_fields, update)


def _upsert(model, keys: dict, fields: dict, update: bool):
    if update:
        obj, created = model.objects.update_or_create(**keys, defaults=fields)
    else:
        obj, created = model.objects.get_or_create(**keys, defaults=fields)
    if created and "created_at" in fields:  # auto_now_add overwrote upstream's createdAt on insert
        model.objects.filter(pk=obj.pk).update(created_at=fields["created_at"])
        obj.created_at = fields["created_at"]
    return obj


def _set_name(source_id: str) -> str:
    """Neuronpedia: the set name is the text after the first '-', up to '__'; a bare integer is `neurons`."""
    if source_id.isdigit():
        return "neurons"
    return source_id.split("-", 1)[-1].split("__", 1)[0]


# ------------------------------------------------------------------------------------------ listing


def source_files_list(*, origin: Origin, model_id: str, source_id: str, explanations: bool = True):
    kinds = ["features", "activations"] + (["explanations"] if explanations else [])
    out = []
    for kind in kinds:
        for obj in origin.list(f"{model_id}/{source_id}/{kind}/"):
            if obj.key.endswith(".jsonl.gz"):
                out.append((kind, obj))
    return sorted(out, key=lambda ko: (KIND_ORDER.index(ko[0]), _batch_number(ko[1].key), ko[1].key))


def _batch_number(key: str) -> int:
    m = re.search(r"batch-(\d+)", key)
    return int(m.group(1)) if m else 0


def file_needs_load(f: ImportFile) -> bool:
    """Not fully in the database: missing, failed, waiting, changed upstream (ETag/size), or loaded with rows
    refused for a reason outside the file, which may have gone away since."""
    return (
        f.status != ImportFile.Status.DONE or f.loaded_etag != f.etag or f.loaded_size != f.size or f.rows_retryable > 0
    )


def _kinds_short(*, model_id: str, source_id: str, origin: str) -> set[str]:
    """Kinds whose DONE files hold more rows than the database has (rows deleted since they were loaded):
    a Re-sync loads those files again."""
    check = completeness_check(model_id=model_id, source_id=source_id, origin=origin)
    return {kind for kind, c in check["kinds"].items() if c["rows_in_database"] < c["rows_loaded_expected"]}


# ------------------------------------------------------------------------------------------ runs


def import_run_create(
    *,
    params: OriginParams,
    model_id: str,
    source_id: str,
    resync: bool = False,
    explanations: bool = True,
    created_by=None,
    send: bool = True,
) -> ImportRun:
    """A run of the `import` job; `send` queues its plan on the imports workers, else import_run_inline runs it."""
    origin = origin_from_params(params)
    with transaction.atomic():  # the job is sent on commit: its worker finds the run row
        return _import_run_create(origin, params, model_id, source_id, resync, explanations, created_by, send)


def _import_run_create(origin, params, model_id, source_id, resync, explanations, created_by, send) -> ImportRun:
    job = job_enqueue(
        kind=JOB_KIND, model_id=model_id, source=source_id, created_by=created_by, send=send,
        params={"origin": origin.label, "resync": resync, "explanations": explanations},
    )  # fmt: skip
    # an unfinished older run of the same source is superseded: its files are re-planned by this one
    older = ImportRun.objects.filter(model_id=model_id, source_id=source_id).exclude(phase=ImportRun.Phase.DONE)
    for run in older:
        Job.objects.filter(pk=run.job_id, status__in=[Job.Status.PENDING, Job.Status.RUNNING]).update(
            status=Job.Status.CANCELLED, finished_at=timezone.now(), message="superseded by a newer import"
        )
    older.update(phase=ImportRun.Phase.DONE)
    return ImportRun.objects.create(
        job=job,
        origin=origin.label,
        origin_params=params.as_dict(),
        model_id=model_id,
        source_id=source_id,
        resync=resync,
        explanations=explanations,
        created_by=created_by,
    )


def import_run_prepare(*, run_id: int) -> list[int] | None:
    """Config + metadata, then the plan: files that are missing, failed or changed upstream (ETag/size). None when
    the run was planned already: a duplicate task (redelivered, or sent again by imports.recovery) must not plan it
    again over its progress."""
    run = ImportRun.objects.select_related("job").get(pk=run_id)
    if run.phase != ImportRun.Phase.PLANNED:
        return None
    origin = origin_from_params(run.origin_params)
    job_progress(job_id=run.job_id, message="config and metadata")
    warnings: list[dict] = []
    try:
        config_import(origin=origin, warnings=warnings)
        metadata_import(
            origin=origin, model_id=run.model_id, source_id=run.source_id, update=run.resync, warnings=warnings
        )
        evals.evals_import(origin=origin, model_id=run.model_id, source_id=run.source_id)
        listed = source_files_list(
            origin=origin, model_id=run.model_id, source_id=run.source_id, explanations=run.explanations
        )
    except (OperationalError, InterfaceError):
        raise  # a database outage: the task retries
    except Exception as exc:  # noqa: BLE001
        # The run ends here. Left PLANNED with its Job RUNNING, imports.recovery would plan it again every 10 minutes.
        reason = str(exc) if isinstance(exc, LoadError) else f"{type(exc).__name__}: {exc}"
        with transaction.atomic():
            if ImportRun.objects.filter(pk=run_id, phase=ImportRun.Phase.PLANNED).update(phase=ImportRun.Phase.DONE):
                job_fail(job_id=run.job_id, error=f"planning failed: {reason}")
        log.warning("import run %s: planning failed: %s", run_id, reason)
        return []
    existing = {
        f.key: f for f in ImportFile.objects.filter(origin=run.origin, model_id=run.model_id, source_id=run.source_id)
    }
    short = _kinds_short(model_id=run.model_id, source_id=run.source_id, origin=run.origin) if run.resync else set()
    todo, total_bytes = [], 0
    with transaction.atomic():
        _files_removed_mark(existing, {obj.key for _, obj in listed}, explanations=run.explanations)
        for kind, obj in listed:
            f = existing.get(obj.key)
            if f is None:
                f = ImportFile(
                    origin=run.origin, key=obj.key, model_id=run.model_id, source_id=run.source_id, kind=kind
                )
            f.etag, f.size = obj.etag, obj.size
            if file_needs_load(f) or (kind in short and f.rows_read):
                f.status, f.run = ImportFile.Status.PENDING, run
                todo.append(f)
                total_bytes += obj.size
            f.save()
    floor = Feature.objects.aggregate(floor=Max("id"))["floor"] or 0
    if todo:  # the source's pages and API say it is incomplete until the run finishes complete
        Source.objects.filter(model_id=run.model_id, name=run.source_id).update(import_incomplete=True)
    ImportRun.objects.filter(pk=run_id).update(
        files_total=len(todo),
        bytes_total=total_bytes,
        phase=ImportRun.Phase.FEATURES,
        feature_id_floor=floor,
        warnings=warnings,
    )
    job_progress(job_id=run.job_id, done=0, total=len(todo), message=f"{len(todo)} of {len(listed)} files to load")
    return [f.pk for f in todo]


def _files_removed_mark(existing: dict[str, ImportFile], listed: set[str], *, explanations: bool) -> None:
    """Files known here that the listing no longer holds (removed or renamed upstream) are REMOVED: a failed feature
    file replaced under a new name must not hold the rows phase back, nor count as missing, for good."""
    kinds = set(KIND_ORDER) if explanations else set(KIND_ORDER) - {"explanations"}  # the kinds that were listed
    gone = [
        f.pk
        for key, f in existing.items()
        if key not in listed and f.kind in kinds and f.status != ImportFile.Status.REMOVED
    ]
    ImportFile.objects.filter(pk__in=gone).update(status=ImportFile.Status.REMOVED)


# The files each phase loads: activations and explanations join on their features, so they wait for them.
PHASE_KINDS = {ImportRun.Phase.FEATURES: ("features",), ImportRun.Phase.ROWS: ("activations", "explanations")}


def run_files(run_id: int, kinds) -> list[int]:
    return list(
        ImportFile.objects.filter(run_id=run_id, kind__in=kinds, status=ImportFile.Status.PENDING)
        .order_by("id")
        .values_list("pk", flat=True)
    )


def _counts(run_id: int) -> dict:
    return ImportFile.objects.filter(run_id=run_id).aggregate(
        pending=Count("pk", filter=Q(status=ImportFile.Status.PENDING)),
        pending_features=Count("pk", filter=Q(status=ImportFile.Status.PENDING, kind="features")),
        failed=Count("pk", filter=Q(status=ImportFile.Status.FAILED)),
        waiting=Count("pk", filter=Q(status=ImportFile.Status.WAITING)),
        done=Count("pk", filter=Q(status=ImportFile.Status.DONE)),
    )


def import_run_advance(*, run_id: int) -> list[int]:
    """After a file: move FEATURES → ROWS when no feature file is pending (returns the files to start now),
    and finish the run's Job when nothing is pending. Conditional updates make this safe to race.

    The rows phase does not start on features that failed to load: its files are marked WAITING, unread, and the
    run ends (failed) at once, so neither this run nor the workers it shares are held up by them."""
    run = ImportRun.objects.get(pk=run_id)
    counts = _counts(run_id)
    job_progress(job_id=run.job_id, done=counts["done"] + counts["failed"] + counts["waiting"])
    start: list[int] = []
    if counts["pending_features"] == 0 and (
        ImportRun.objects.filter(pk=run_id, phase=ImportRun.Phase.FEATURES).update(phase=ImportRun.Phase.ROWS)
    ):
        if blocked := _feature_files_not_loaded(run):
            _rows_files_wait(run_id, blocked)
            counts = _counts(run_id)
        else:
            start = run_files(run_id, PHASE_KINDS[ImportRun.Phase.ROWS])
    if counts["pending"] == 0:
        # The run's phase and its Job change in one transaction: no reader sees a DONE run whose Job still says
        # RUNNING, and a worker killed in between leaves the run in ROWS for the next advance to finish.
        with transaction.atomic():
            if ImportRun.objects.filter(pk=run_id, phase=ImportRun.Phase.ROWS).update(phase=ImportRun.Phase.DONE):
                _run_finish(run)
    return start


def _feature_files_not_loaded(run: ImportRun) -> list[str]:
    """The keys of this source's feature files (at the run's origin) that are not DONE."""
    return list(
        ImportFile.objects.filter(origin=run.origin, model_id=run.model_id, source_id=run.source_id, kind="features")
        .exclude(status__in=[ImportFile.Status.DONE, ImportFile.Status.REMOVED])
        .order_by("id")
        .values_list("key", flat=True)
    )


def _rows_files_wait(run_id: int, blocked: list[str]) -> int:
    names = ", ".join(blocked[:5]) + (f" and {len(blocked) - 5} more" if len(blocked) > 5 else "")
    reason = f"not read: waiting for feature file(s) that did not load: {names}"
    files = list(ImportFile.objects.filter(run_id=run_id, kind__in=PHASE_KINDS[ImportRun.Phase.ROWS], status="PENDING"))
    counts = ("rows_read", "rows_loaded", "rows_skipped", "rows_unchanged", "rows_waiting", "rows_retryable")
    for f in files:  # not read in this state: counts of an earlier read would describe another version
        f.status, f.errors, f.warnings = (
            ImportFile.Status.WAITING,
            [{"file": f.key, "line": None, "reason": reason}],
            [],
        )
        for name in counts:
            setattr(f, name, 0)
    ImportFile.objects.bulk_update(files, ["status", "errors", "warnings", *counts], batch_size=1000)
    return len(files)


def _run_finish(run: ImportRun):
    check = completeness_check(model_id=run.model_id, source_id=run.source_id, origin=run.origin)
    check["warnings"] = run.warnings + check["warnings"]  # the metadata and config files' before the rows files'
    Source.objects.filter(model_id=run.model_id, name=run.source_id).update(import_incomplete=not check["complete"])
    counts = _counts(run.pk)
    if counts["failed"] or counts["waiting"] or not check["complete"]:
        names = keys_named([f["key"] for f in check["files_to_resync"]], check["files_to_resync_count"], 5)
        short = list(kinds_short(check))
        error = (
            f"incomplete: {counts['failed']} file(s) failed, {counts['waiting']} waiting for their features; "
            + (f"fix upstream and re-sync: {names}" if names else "")
            + (f"; fewer {', '.join(short)} in the database than in the files: re-sync" if short else "")
        )
        job_fail(job_id=run.job_id, error=error)
        Job.objects.filter(pk=run.job_id).update(result=check)
    else:
        job_finish(job_id=run.job_id, message="complete", result=check)
    transaction.on_commit(lambda: live.clear(run.pk))


def import_plan_run(job: JobContext, **inline):
    """The `import` job: plan the run, then send its feature files (one task each); the file tasks advance the
    run through its phases and finish the job."""
    from imports.tasks import import_file_task

    run_id = ImportRun.objects.values_list("pk", flat=True).get(job_id=job.job_id)
    if import_run_prepare(run_id=run_id) is None:
        return JOB_CONTINUES  # planned, and its files sent, by an earlier delivery
    files = run_files(run_id, PHASE_KINDS[ImportRun.Phase.FEATURES]) or import_run_advance(run_id=run_id)
    for file_id in files:
        transaction.on_commit(lambda f=file_id: import_file_task.delay(f, run_id))
    return JOB_CONTINUES


def import_run_inline(*, run_id: int, on_progress: Callable[[dict], None] | None = None, jobs: int = 2) -> ImportRun:
    """The whole run from this process (CLI default): prepare, features, then activations and explanations.

    `jobs` > 1 loads that many files at once: this process and jobs - 1 helper processes (imports.spawned), each with
    its own connection and transaction, as `jobs` Celery workers would. Processes, not threads: a file's parse holds
    the GIL ~0.8 s, so threads parsed one file at a time; and spawned, not forked, so no child inherits a socket of
    this process (two forked children once read one inherited Redis connection and both hung).
    """
    if connection.in_atomic_block:
        jobs = 1  # other connections cannot see the caller's uncommitted rows
    job_id = ImportRun.objects.values_list("job_id", flat=True).get(pk=run_id)
    with job_claim(job_id=job_id, lease=False) as claimed:
        if claimed is None:
            raise LoadError(f"import job {job_id} is already running or finished")
        return _import_run_inline(run_id=run_id, on_progress=on_progress, jobs=jobs)


def _import_run_inline(*, run_id: int, on_progress, jobs: int) -> ImportRun:
    import_run_prepare(run_id=run_id)
    if on_progress:
        on_progress(import_run_progress(run_id=run_id))
    phases = [run_files(run_id, kinds) for kinds in PHASE_KINDS.values()]
    # This process loads files too, so `jobs` files at once take jobs - 1 helpers, and a run whose phases have one
    # file each (a small source) spawns none: a helper costs ~1 s of CPU to set Django up.
    with _helpers(min(jobs, max(map(len, phases))) - 1) as helpers:
        for i, kinds in enumerate(PHASE_KINDS.values()):  # in phase order; the advance after the features decides
            ids = phases[i] if i == 0 else run_files(run_id, kinds)  # the rows phase (WAITING files drop out)
            _files_load(helpers, ids, run_id=run_id, on_progress=on_progress)
            import_run_advance(run_id=run_id)
    return ImportRun.objects.select_related("job").get(pk=run_id)


@dataclass
class _Helpers:
    """The spawned processes that load files beside this one; `ready` is set once each has set Django up."""

    pool: object
    size: int
    ready: threading.Event = field(default_factory=threading.Event)


@contextmanager
def _helpers(size: int):
    if size <= 0:
        yield None
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait

    from imports import spawned

    pool = ProcessPoolExecutor(
        max_workers=size,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=spawned.boot,
        initargs=(spawned.child_env(),),
    )
    with pool:
        helpers = _Helpers(pool, size)
        # every process starts now (a submit spawns one while none is idle) and sets Django up while this one loads
        booting = [pool.submit(spawned.ready) for _ in range(size)]
        threading.Thread(target=lambda: (wait(booting), helpers.ready.set()), daemon=True).start()
        yield helpers


def _files_load(helpers: _Helpers | None, ids: list[int], *, run_id: int, on_progress) -> None:
    """Load files in order, here and (when there are helpers and more than one file) in the helpers' processes: a
    thread hands each helper its next file as soon as it is free, while this thread loads the others (live counts
    of the helpers' files come from Redis). The first error stops the handing out and is raised."""
    todo = deque(ids)
    dispatcher = None
    if helpers is not None and len(todo) > 1:
        dispatcher = _Dispatcher(helpers, todo, run_id)
        dispatcher.start()
    try:
        while dispatcher is None or dispatcher.error is None:
            try:
                file_id = todo.popleft()
            except IndexError:
                break
            import_file_load(file_id=file_id, run_id=run_id, on_progress=on_progress)
            import_run_advance(run_id=run_id)
    except BaseException:
        todo.clear()  # the helpers' files in flight finish; no new one starts
        raise
    if dispatcher is not None:
        while dispatcher.is_alive():
            dispatcher.join(0.5)
            if on_progress:
                on_progress(import_run_progress(run_id=run_id))
        if dispatcher.error is not None:
            raise dispatcher.error


class _Dispatcher(threading.Thread):
    """Hands files from `todo` to the helpers, one each at a time, once they are ready. Queries nothing."""

    def __init__(self, helpers: _Helpers, todo: deque, run_id: int):
        super().__init__(daemon=True)
        self.helpers, self.todo, self.run_id = helpers, todo, run_id
        self.error: BaseException | None = None

    def run(self):
        from concurrent.futures import FIRST_COMPLETED, wait

        from imports import spawned

        running: set = set()
        try:
            while not self.helpers.ready.wait(0.1):
                if not self.todo:
                    return  # this process loaded them all first
            while True:
                while self.error is None and len(running) < self.helpers.size:
                    try:
                        file_id = self.todo.popleft()
                    except IndexError:
                        break
                    running.add(self.helpers.pool.submit(spawned.file_load, file_id, self.run_id))
                if not running:
                    return
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    if fut.exception() is not None and self.error is None:
                        self.error = fut.exception()
                        self.todo.clear()
        except BaseException as exc:  # noqa: BLE001 - raised by the thread that waits on this one
            self.error = self.error or exc
            self.todo.clear()


# ------------------------------------------------------------------------------------------ one file


class _Counting:
    """Counts compressed bytes as gzip pulls them, for the bytes/s and ETA figures."""

    def __init__(self, raw):
        self.raw, self.count = raw, 0

    def read(self, n=-1):
        data = self.raw.read(n)
        self.count += len(data)
        return data


def _gunzip_lines(stream, chunk: int = 1 << 18) -> Iterator[bytes]:
    """The lines of a gzip stream (several members allowed, as `cat a.gz b.gz` makes), inflated by zlib in
    256 KB reads and split in C: GzipFile's readline cost ~10 µs a line, a third of the import's Python time."""
    inflate, fed, tail, empty = zlib.decompressobj(wbits=31), False, b"", True
    while data := stream.read(chunk):
        empty = False
        while data:
            out = inflate.decompress(data)
            fed = True
            data = b""
            if inflate.eof:  # a member ended: the rest of this read starts the next one
                data = inflate.unused_data
                inflate, fed = zlib.decompressobj(wbits=31), False
            if out:
                lines = (tail + out).split(b"\n")
                tail = lines.pop()
                yield from lines
    if empty:  # no gzip header at all: not an empty dataset file (that is a 20-byte gzip)
        raise EOFError("empty file")
    if fed:
        raise EOFError("compressed file ended before the end-of-stream marker was reached")
    if tail:
        yield tail


def _lines(
    stream: _Counting, nul_lines: set, pause: Callable[[int], None] | None
) -> Iterator[tuple[int, dict | BadRecord]]:
    line_no = 0
    try:
        for raw in _gunzip_lines(stream):
            line_no += 1
            if pause is not None:
                pause(line_no)
            if not raw or raw.isspace():  # isspace: strip() would copy each line
                continue
            if b"\\u0000" in raw:
                nul_lines.add(line_no)  # the loader strips it from the parsed text and reports the line
            try:
                rec = orjson.loads(raw)
            except orjson.JSONDecodeError:
                try:  # Python's json writes NaN/Infinity, which orjson refuses (the loader reports them)
                    rec = json.loads(raw)
                except ValueError as exc:
                    yield line_no, BadRecord(f"malformed JSON: {exc}")
                    continue
                except RecursionError:  # orjson stops at 1024 levels; json recurses until Python's limit
                    yield line_no, BadRecord("malformed JSON: nested too deeply")
                    continue
                yield line_no, rec, None
                continue
            yield line_no, rec, raw
    except (OSError, EOFError, zlib.error) as exc:  # not gzip, corrupt, or truncated
        raise LoadError(f"bad gzip: {exc}", line_no + 1) from None


def _test_pause() -> Callable[[int], None] | None:
    """Test hook: MEMICOS_IMPORT_PAUSE_AFTER_ROWS=N makes this process sleep after line N of a file, so a
    test can SIGKILL a worker mid-file deterministically. Unset everywhere else."""
    after = int(os.environ.get("MEMICOS_IMPORT_PAUSE_AFTER_ROWS") or 0)
    if not after:
        return None
    seconds = float(os.environ.get("MEMICOS_IMPORT_PAUSE_SECONDS") or 300)
    return lambda line_no: time.sleep(seconds) if line_no == after else None


def import_file_load(*, file_id: int, run_id: int | None = None, on_progress=None) -> ImportFile:
    """Load one remote file in one transaction with its checkpoint. Idempotent."""
    with transaction.atomic():
        f = ImportFile.objects.select_for_update(skip_locked=True).filter(pk=file_id).first()
        if f is None:  # a live transaction is loading it: this is a duplicate task (redelivered, or sent again)
            return ImportFile.objects.get(pk=file_id)
        if f.status == ImportFile.Status.REMOVED or not file_needs_load(f):
            return f  # a redelivered or duplicate task: already loaded this version (or gone upstream since)
        run = ImportRun.objects.get(pk=run_id) if run_id else None
        origin = origin_from_params(run.origin_params if run else _params_of(f))
        run_key = run_id or (f.run_id or 0)
        stream = _Counting(origin.open(f.key))
        nul_lines: set[int] = set()
        result = LoadResult()
        pause = _test_pause()

        # no queries in here: it runs while the connection is in COPY mode
        base = import_run_progress(run_id=run_key) if (on_progress and run_key) else None

        def report(rows: int):
            live.put(run_key, f.pk, rows=rows, bytes_=stream.count)
            if base is not None:
                on_progress({**base, "rows": base["rows"] + rows, "bytes": base["bytes"] + stream.count})

        def pause_hook(line_no: int):
            if pause is not None and line_no > 1:
                report(line_no - 1)
                pause(line_no)

        started = timezone.now()
        try:
            rows_load(
                kind=f.kind,
                model_id=f.model_id,
                source_id=f.source_id,
                numbered=_lines(stream, nul_lines, pause_hook if pause else None),
                report=report,
                result=result,
                check_nul=False,
                nul_lines=nul_lines,
                feature_id_floor=run.feature_id_floor if run else None,
                wait_for_features=f.kind != "features",
                direct_copy=True,
            )
            status, errors = ImportFile.Status.DONE, result.errors
            if result.rows_waiting:  # not DONE: the next import or Re-sync loads the file again
                status, reason = _waiting_status(f, result)
                errors = result.errors + [{"line": None, "reason": reason}]
        except LoadError as exc:
            status, errors = ImportFile.Status.FAILED, result.errors + [{"line": exc.line, "reason": exc.reason}]
        finally:
            close = getattr(stream.raw, "close", None)
            if close:
                close()
        f.status = status
        f.errors = [{"file": f.key, **e} for e in errors]
        f.rows_read, f.rows_skipped = result.rows_read, result.rows_skipped
        f.rows_loaded, f.rows_unchanged = result.rows_loaded, result.rows_unchanged
        f.rows_waiting, f.rows_retryable = result.rows_waiting, result.rows_retryable
        f.warnings = result.warnings
        f.attempts += 1
        f.started_at, f.finished_at = started, timezone.now()
        if status == ImportFile.Status.DONE:
            f.loaded_etag, f.loaded_size = f.etag, f.size
        elif not result.rows_waiting:
            f.rows_loaded = f.rows_unchanged = 0  # rolled back
        f.save()
    live.drop(run_key, f.pk)
    if on_progress and run_key:
        on_progress(import_run_progress(run_id=run_key))
    return f


def _waiting_status(f: ImportFile, result: LoadResult) -> tuple[str, str]:
    """WAITING while a feature file of the source is not loaded (it may hold the features); FAILED when every one is
    and the features are still missing. The file's other rows are loaded; the next import or Re-sync loads the file
    again."""
    some = ", ".join(map(str, result.waiting_for[:5]))
    blocked = ImportFile.objects.filter(
        origin=f.origin, model_id=f.model_id, source_id=f.source_id, kind="features"
    ).exclude(status__in=[ImportFile.Status.DONE, ImportFile.Status.REMOVED])
    if blocked.exists():
        return ImportFile.Status.WAITING, (
            f"{result.rows_waiting} row(s) wait for features not in the database (e.g. feature {some}); "
            f"feature file(s) not loaded: {', '.join(blocked.values_list('key', flat=True)[:5])}"
        )
    return ImportFile.Status.FAILED, (
        f"{result.rows_waiting} row(s) name features that no loaded feature file holds (e.g. feature {some}); "
        "the file's other rows are loaded"
    )


def _params_of(f: ImportFile) -> dict:
    run = f.run or ImportRun.objects.filter(origin=f.origin).first()
    if run is None:
        raise LoadError(f"no import run knows how to reach {f.origin}")
    return run.origin_params


# ------------------------------------------------------------------------------------------ progress


# rows files never read: the rows phase found a feature file not loaded (_rows_files_wait)
GATED = Q(status=ImportFile.Status.WAITING, rows_waiting=0)


def import_run_progress(*, run_id: int) -> dict:
    run = ImportRun.objects.select_related("job").get(pk=run_id)
    files = ImportFile.objects.filter(run_id=run_id)
    agg = (
        files.exclude(status=ImportFile.Status.PENDING)
        .exclude(GATED)
        .aggregate(
            rows=Sum("rows_read"), bytes=Sum("size"), n=Count("pk"), failed=Count("pk", filter=Q(status="FAILED"))
        )
    )
    errors = sum(len(e) for e in files.exclude(errors=[]).values_list("errors", flat=True))
    live_rows, live_bytes = live.totals(run_id)
    rows, done_bytes = (agg["rows"] or 0) + live_rows, (agg["bytes"] or 0) + live_bytes
    job = run.job
    end = job.finished_at or timezone.now()
    elapsed = max((end - job.started_at).total_seconds(), 1e-6) if job.started_at else 0.0
    byte_rate = done_bytes / elapsed if elapsed else 0.0
    remaining = max(run.bytes_total - done_bytes, 0)
    return {
        "run": run.pk,
        "job": job.pk,
        "model_id": run.model_id,
        "source_id": run.source_id,
        "status": job.status,
        "phase": run.phase,
        "message": job.message,
        "error": job.error,
        "files_done": agg["n"] or 0,
        "files_failed": agg["failed"] or 0,
        "files_total": run.files_total,
        "rows": rows,
        "bytes": done_bytes,
        "bytes_total": run.bytes_total,
        "elapsed_s": round(elapsed, 2),
        "rows_per_s": round(rows / elapsed, 1) if elapsed else 0.0,
        "bytes_per_s": round(byte_rate, 1),
        "eta_s": round(remaining / byte_rate, 1) if byte_rate and not job.finished else None,
        "errors": errors,
        "result": job.result,
    }


# ------------------------------------------------------------------------------------------ completeness


def completeness_check(*, model_id: str, source_id: str, origin: str | None = None) -> dict:
    """The source's files against its rows in the database, per kind (features, activations, explanations).

    A file's rows are counted when it is read to its end (DONE, or not DONE for rows whose features are missing), so
    `rows_in_files` is exact only when `files_unread` is 0; a file not read to its end (broken, waiting behind its
    features, or not loaded yet) makes the kind incomplete whatever the counts say.
    A file DONE with rows refused for a reason outside it (an id another source owns) is not fully loaded either.
    The database may hold more rows than the files (explanations made here, uploads), so a kind matches when every
    file is loaded and the database holds at least the files' good rows.
    `files_to_resync` names every file not fully loaded (at most MAX_NAMED of them, `files_to_resync_count` all).
    Files the dataset no longer lists (REMOVED) are left out of all of this and named in `files_removed`."""
    files = ImportFile.objects.filter(model_id=model_id, source_id=source_id)
    if origin:
        files = files.filter(origin=origin)
    removed = files.filter(status=ImportFile.Status.REMOVED).order_by("id")
    files = files.exclude(status=ImportFile.Status.REMOVED)
    source = Source.objects.filter(model_id=model_id, name=source_id).first()
    tables = {
        "features": Feature.objects.filter(source=source),
        "activations": Activation.objects.filter(feature__source=source),
        "explanations": Explanation.objects.filter(source=source),
    }
    done, read = Q(status=ImportFile.Status.DONE), Q(status=ImportFile.Status.DONE) | Q(rows_waiting__gt=0)
    loaded = done & Q(rows_retryable=0)
    per_kind = {
        row["kind"]: row
        for row in files.values("kind").annotate(
            files=Count("pk"),
            files_done=Count("pk", filter=loaded),
            files_unread=Count("pk", filter=~read),
            files_gated=Count("pk", filter=GATED),
            rows_in_files=Sum("rows_read", filter=read, default=0),
            rows_bad=Sum("rows_skipped", filter=read, default=0),
            rows_done=Sum("rows_read", filter=done, default=0),
            rows_done_bad=Sum("rows_skipped", filter=done, default=0),
        )
    }
    out: dict = {"kinds": {}}
    complete = source is not None
    for kind, qs in tables.items():
        k = per_kind.get(kind, {})
        n_files = k.get("files", 0)
        c = {
            "files": n_files,
            "files_done": k.get("files_done", 0),
            "files_unread": k.get("files_unread", 0),
            "files_gated": k.get("files_gated", 0),  # of files_unread: never read, waiting for `waiting_for`
            "rows_in_files": k.get("rows_in_files", 0),  # every row read, bad rows included
            "rows_expected": k.get("rows_in_files", 0) - k.get("rows_bad", 0),  # good rows of the files read
            "rows_loaded_expected": k.get("rows_done", 0) - k.get("rows_done_bad", 0),  # good rows of DONE files
            "rows_in_database": qs.count() if source is not None else 0,
        }
        c["match"] = c["files_done"] == n_files and c["rows_in_database"] >= c["rows_expected"]
        out["kinds"][kind] = c
        complete = complete and c["match"]
    todo = files.exclude(loaded).order_by("id")
    out["files_total"] = files.count()
    out["files_done"] = files.filter(loaded).count()
    out["files_failed"] = files.filter(status=ImportFile.Status.FAILED).count()
    out["files_waiting"] = files.filter(status=ImportFile.Status.WAITING).count()
    out["files_to_resync_count"] = todo.count()
    out["files_to_resync"] = [
        {"key": f.key, "status": f.status, "reason": f.errors[-1]["reason"] if f.errors else ""}
        for f in todo[:MAX_NAMED]
    ]
    out["waiting_for"] = (
        list(files.filter(kind="features").exclude(done).order_by("id").values_list("key", flat=True)[:MAX_NAMED])
        if files.filter(GATED).exists()
        else []
    )
    out["files_removed_count"] = removed.count()
    out["files_removed"] = list(removed.values_list("key", flat=True)[:MAX_NAMED])
    out["warnings"] = [
        {"file": key, "warning": w}
        for key, ws in files.exclude(warnings=[]).order_by("id").values_list("key", "warnings")
        for w in ws
    ][:MAX_NAMED]
    out["complete"] = complete and out["files_total"] > 0 and not out["files_to_resync_count"]
    return out


def keys_named(keys: list[str], total: int, limit: int) -> str:
    """The first `limit` of `keys`, and how many of `total` are left unnamed: "a, b and 3 more"."""
    more = total - min(limit, len(keys))
    return ", ".join(keys[:limit]) + (f" and {more} more" if more > 0 else "")


def kinds_short(check: dict) -> dict[str, dict]:
    """The kinds of a completeness check whose database holds fewer rows than their files read (rows deleted since
    they were loaded): nothing to fix upstream, a Re-sync loads those files again."""
    return {kind: c for kind, c in check["kinds"].items() if c["rows_in_database"] < c["rows_expected"]}


MAX_NAMED = 50  # files (and warnings) a completeness report names; its counts cover all of them
