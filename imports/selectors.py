"""Reads for the import panel and CLI: what a dataset holds and how much of it is here."""

from collections import defaultdict

from features.models import Source
from imports.models import ImportFile, ImportRun
from imports.services.importer import _set_name, source_files_list
from imports.services.origin import Origin

ABSENT, PARTIAL, COMPLETE, OUTDATED = "absent", "partial", "complete", "outdated"


def remote_models(*, origin: Origin) -> list[str]:
    return sorted(name for name in origin.folders("") if name != "config")


def _layer_key(source_id: str):
    head = source_id.split("-", 1)[0]
    return (not head.isdigit(), int(head) if head.isdigit() else 0, source_id)


def source_status(*, origin: Origin, model_id: str, source_id: str, local: list[ImportFile] | None = None) -> dict:
    """absent / partial / complete / outdated, from the remote listing vs the files loaded here."""
    if local is None:
        local = list(ImportFile.objects.filter(origin=origin.label, model_id=model_id, source_id=source_id))
    exists = Source.objects.filter(model_id=model_id, name=source_id).exists()
    if not local:
        return {"status": PARTIAL if exists else ABSENT, "files": 0, "files_done": 0, "changed": 0}
    by_key = {f.key: f for f in local}
    remote = source_files_list(origin=origin, model_id=model_id, source_id=source_id)
    done = changed = missing = 0
    for _, obj in remote:
        f = by_key.get(obj.key)
        if f is None or f.status != ImportFile.Status.DONE:
            missing += 1
        elif f.loaded_etag != obj.etag or f.loaded_size != obj.size:
            changed += 1
        else:
            done += 1
    status = PARTIAL if missing else OUTDATED if changed else COMPLETE
    return {"status": status, "files": len(remote), "files_done": done, "changed": changed}


def remote_sources(*, origin: Origin, model_id: str, check_files: bool = True) -> list[dict]:
    """Sources under <prefix><model>/ grouped by source set, sorted by layer, with status and N of M."""
    local = defaultdict(list)
    for f in ImportFile.objects.filter(origin=origin.label, model_id=model_id):
        local[f.source_id].append(f)
    runs = {}
    for run in ImportRun.objects.filter(model_id=model_id).select_related("job").order_by("created_at"):
        runs[run.source_id] = run  # latest wins
    groups = defaultdict(list)
    for source_id in sorted(origin.folders(model_id), key=_layer_key):
        if check_files or not local.get(source_id):
            st = source_status(origin=origin, model_id=model_id, source_id=source_id, local=local.get(source_id, []))
        else:
            st = {"status": PARTIAL, "files": 0, "files_done": 0, "changed": 0}
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


def import_files(*, model_id: str, source_id: str):
    return ImportFile.objects.filter(model_id=model_id, source_id=source_id).order_by("kind", "id")


def completeness_lines(check: dict) -> list[str]:
    """A completeness check (imports.services.importer.completeness_check) as lines for the CLI and the panel:
    files vs database per kind, warnings, then each file to re-sync with its reason."""
    out = []
    for kind, c in check["kinds"].items():
        unread = f", {c['files_unread']} not read to the end: rows not counted" if c["files_unread"] else ""
        out.append(
            f"  {kind}: {c['rows_in_database']} rows in database, {c['rows_expected']} in files "
            f"({c['files_done']} of {c['files']} file(s) loaded{unread})"
        )
    for w in check.get("warnings", []):
        out.append(f"  warning: {w['file']}: {w['warning']}")
    for f in check["files_to_resync"]:
        out.append(f"  to re-sync: {f['key']} [{f['status']}] {f['reason']}")
    if (more := check["files_to_resync_count"] - len(check["files_to_resync"])) > 0:
        out.append(f"  to re-sync: … and {more} more file(s)")
    return out
