"""Reads for the import panel and CLI: what a dataset holds and how much of it is here."""

from collections import defaultdict

from django.db.models import Count

from features.models import Activation, Explanation, Feature, Source
from imports.models import ImportFile, ImportRun
from imports.services.importer import _set_name, keys_named, source_files_list
from imports.services.origin import Origin

# incomplete: every listed file is loaded, but the database lacks some of their rows (deleted since, or the source
# itself) or the last import of the source ended incomplete; a Re-sync loads those files again
ABSENT, PARTIAL, INCOMPLETE, COMPLETE, OUTDATED = "absent", "partial", "incomplete", "complete", "outdated"
ROW_KINDS = ("features", "activations", "explanations")


def remote_models(*, origin: Origin) -> list[str]:
    return sorted(name for name in origin.folders("") if name != "config")


def _layer_key(source_id: str):
    head = source_id.split("-", 1)[0]
    return (not head.isdigit(), int(head) if head.isdigit() else 0, source_id)


def source_status(*, origin: Origin, model_id: str, source_id: str) -> dict:
    """absent / partial / incomplete / complete / outdated of one source (see sources_status)."""
    local = {source_id: list(ImportFile.objects.filter(origin=origin.label, model_id=model_id, source_id=source_id))}
    return sources_status(origin=origin, model_id=model_id, source_ids=[source_id], local=local)[source_id]


def sources_status(
    *, origin: Origin, model_id: str, source_ids: list[str], local: dict[str, list[ImportFile]]
) -> dict[str, dict]:
    """Each source's status from the remote listing vs the files loaded here, then, for those whose files are all
    loaded, vs the rows here and the flag the source's pages show (Source.import_incomplete): the panel must not
    call a source complete while its banner says otherwise."""
    flags = dict(Source.objects.filter(model_id=model_id, name__in=source_ids).values_list("name", "import_incomplete"))
    out, expected = {}, {}
    for source_id in source_ids:
        out[source_id], expected[source_id] = _files_status(
            origin, model_id, source_id, local.get(source_id, []), exists=source_id in flags
        )
    loaded = [s for s in source_ids if out[s]["status"] in (COMPLETE, OUTDATED)]
    here = _rows_here(model_id=model_id, source_ids=loaded)
    for source_id in loaded:
        short = [k for k in ROW_KINDS if here.get((source_id, k), 0) < expected[source_id][k]]
        if short or flags.get(source_id):
            out[source_id].update(status=INCOMPLETE, short=short)
    return out


def _files_status(origin: Origin, model_id: str, source_id: str, local: list[ImportFile], exists: bool):
    """(status from the files alone, good rows per kind of the loaded files)."""
    expected = dict.fromkeys(ROW_KINDS, 0)
    if not local:
        return {"status": PARTIAL if exists else ABSENT, "files": 0, "files_done": 0, "changed": 0}, expected
    by_key = {f.key: f for f in local}
    remote = source_files_list(origin=origin, model_id=model_id, source_id=source_id)
    done = changed = missing = 0
    for _, obj in remote:
        f = by_key.get(obj.key)
        # rows refused for a reason outside the file (rows_retryable) are not loaded: the file is not either
        if f is None or f.status != ImportFile.Status.DONE or f.rows_retryable:
            missing += 1
            continue
        expected[f.kind] += f.rows_expected
        if f.loaded_etag != obj.etag or f.loaded_size != obj.size:
            changed += 1
        else:
            done += 1
    status = PARTIAL if missing else OUTDATED if changed else COMPLETE
    return {"status": status, "files": len(remote), "files_done": done, "changed": changed}, expected


def _rows_here(*, model_id: str, source_ids: list[str]) -> dict[tuple[str, str], int]:
    """(source, kind) → rows in the database, in one grouped count per kind for all the sources: about what a listing
    of the source's files costs on S3 (an index scan of its activations)."""
    if not source_ids:
        return {}
    tables = {
        "features": (Feature.objects.filter(model_id=model_id, source__name__in=source_ids), "source__name"),
        "activations": (
            Activation.objects.filter(feature__model_id=model_id, feature__source__name__in=source_ids),
            "feature__source__name",
        ),
        "explanations": (Explanation.objects.filter(model_id=model_id, source__name__in=source_ids), "source__name"),
    }
    return {
        (row[by], kind): row["n"]
        for kind, (qs, by) in tables.items()
        for row in qs.order_by().values(by).annotate(n=Count("pk"))
    }


def remote_sources(*, origin: Origin, model_id: str, check_files: bool = True) -> list[dict]:
    """Sources under <prefix><model>/ grouped by source set, sorted by layer, with status and N of M."""
    local = defaultdict(list)
    for f in ImportFile.objects.filter(origin=origin.label, model_id=model_id):
        local[f.source_id].append(f)
    runs = {}
    for run in ImportRun.objects.filter(model_id=model_id).select_related("job").order_by("created_at"):
        runs[run.source_id] = run  # latest wins
    source_ids = sorted(origin.folders(model_id), key=_layer_key)
    checked = [s for s in source_ids if check_files or not local.get(s)]
    statuses = sources_status(origin=origin, model_id=model_id, source_ids=checked, local=local)
    groups = defaultdict(list)
    for source_id in source_ids:
        st = statuses.get(source_id) or {"status": PARTIAL, "files": 0, "files_done": 0, "changed": 0}
        run = runs.get(source_id)
        if run is not None:
            st["run"] = run.pk
            st["job_status"] = run.job.status
        groups[_set_name(source_id)].append({"source_id": source_id, **st})
    return [
        {
            "set": name,
            "sources": sources,
            "total": len(sources),
            "done": sum(1 for s in sources if s["status"] == COMPLETE),
        }
        for name, sources in sorted(groups.items())
    ]


def set_sources_to_load(*, origin: Origin, model_id: str, set_name: str) -> list[tuple[str, bool]]:
    """Download all: (source, as a Re-sync?) for each source of the set that is not complete. A source that is here
    already is re-synced, as its own button does: only a Re-sync loads again the files of rows the database lost."""
    group = next((g for g in remote_sources(origin=origin, model_id=model_id) if g["set"] == set_name), None)
    if group is None:
        return []
    return [(s["source_id"], s["status"] != ABSENT) for s in group["sources"] if s["status"] != COMPLETE]


def import_files(*, model_id: str, source_id: str):
    return ImportFile.objects.filter(model_id=model_id, source_id=source_id).order_by("kind", "id")


def completeness_lines(check: dict) -> list[str]:
    """A completeness check (imports.services.importer.completeness_check) as lines for the CLI and the panel:
    files vs database per kind, warnings, then each file to re-sync with its reason."""
    out = []
    waiting = check.get("waiting_for", [])  # runs before gated files were told apart kept neither
    waiting_names = keys_named(waiting, len(waiting), 5)
    for kind, c in check["kinds"].items():
        gated = c.get("files_gated", 0)
        notes = [f"{c['files_done']} of {c['files']} file(s) loaded"]
        if gated:
            notes.append(f"{gated} not read: waiting for feature file(s) {waiting_names or 'not loaded'}")
        if unread := c["files_unread"] - gated:
            notes.append(f"{unread} not read to the end: rows not counted")
        # no file read: the files' rows are unknown, not 0
        in_files = "" if c["files"] and c["files_unread"] == c["files"] else f", {c['rows_expected']} in files"
        out.append(f"  {kind}: {c['rows_in_database']} rows in database{in_files} ({', '.join(notes)})")
    for w in check.get("warnings", []):
        out.append(f"  warning: {w['file']}: {w['warning']}")
    for f in check["files_to_resync"]:
        out.append(f"  to re-sync: {f['key']} [{f['status']}] {f['reason']}")
    if (more := check["files_to_resync_count"] - len(check["files_to_resync"])) > 0:
        out.append(f"  to re-sync: … and {more} more file(s)")
    for key in check.get("files_removed", []):  # runs before files were marked removed kept no such list
        out.append(f"  removed upstream: {key} (not counted; rows loaded from it stay)")
    if (more := check.get("files_removed_count", 0) - len(check.get("files_removed", []))) > 0:
        out.append(f"  removed upstream: … and {more} more file(s)")
    return out
