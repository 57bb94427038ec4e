"""python manage.py import_source MODEL_ID SOURCE_ID [--dir PATH | --endpoint-url URL] [--resync] …"""

import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from features.models import Job
from imports.cli import add_origin_arguments, origin_params
from imports.selectors import completeness_lines
from imports.services.importer import (
    completeness_check,
    import_run_create,
    import_run_inline,
    import_run_progress,
    keys_named,
    kinds_short,
)


class Command(BaseCommand):
    help = "Import (or re-sync) one source of a v1 dataset from S3 or a directory, file by file, resumably."

    def add_arguments(self, parser):
        parser.add_argument("model_id")
        parser.add_argument("source_id")
        add_origin_arguments(parser)
        parser.add_argument("--resync", action="store_true", help="also update metadata rows from upstream")
        parser.add_argument("--no-explanations", action="store_true")
        parser.add_argument(
            "--jobs", type=int, default=2, help="files loaded at once by this process (default 2; 1 = one by one)"
        )
        parser.add_argument(
            "--workers", action="store_true", help="enqueue one task per file on the imports queue and follow it"
        )

    def handle(self, *args, **options):
        run = import_run_create(
            params=origin_params(options),
            model_id=options["model_id"],
            source_id=options["source_id"],
            resync=options["resync"],
            explanations=not options["no_explanations"],
            send=bool(options["workers"]),
        )
        bar = tqdm(total=0, unit="B", unit_scale=True, desc=f"{run.model_id}/{run.source_id}", disable=None)

        def show(p: dict):
            if not p:
                return
            bar.total = p["bytes_total"]
            bar.n = min(p["bytes"], p["bytes_total"] or p["bytes"])
            bar.set_postfix(
                files=f"{p['files_done']}/{p['files_total']}", rows=p["rows"], errors=p["errors"], refresh=False
            )
            bar.refresh()

        if options["workers"]:
            while True:
                p = import_run_progress(run_id=run.pk)
                show(p)
                if p["status"] in (Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED):
                    break
                time.sleep(1)
        else:
            # no bar (not a terminal): no progress queries after every file either
            import_run_inline(run_id=run.pk, on_progress=None if bar.disable else show, jobs=max(1, options["jobs"]))
        bar.close()
        p = import_run_progress(run_id=run.pk)
        check = p["result"]  # the check the run ended with (a count of every row of the source: seconds on a large one)
        if not (isinstance(check, dict) and "kinds" in check):  # the run ended before its check (planning failed)
            check = completeness_check(model_id=run.model_id, source_id=run.source_id, origin=run.origin)
        for line in completeness_lines(check):
            self.stdout.write(line)
        self.stdout.write(
            f"{p['files_done']} file(s) read, {p['files_failed']} failed, {p['rows']} rows read, "
            f"{p['rows_per_s']:.0f} rows/s, {p['errors']} reported problem(s)"
        )
        if not check["complete"]:
            raise CommandError(f"{run.model_id}/{run.source_id} is incomplete. {_incomplete(check)}")
        if p["status"] != Job.Status.SUCCEEDED:
            raise CommandError(p["error"] or f"import ended {p['status']}")


def _incomplete(check: dict) -> str:
    """Why the source is incomplete, and what to do: files not loaded are named (a broken one is fixed upstream
    first); kinds the database lost rows of are named with their figures (nothing to fix upstream)."""
    parts = []
    if n := check["files_to_resync_count"]:
        names = keys_named([f["key"] for f in check["files_to_resync"]], n, 10)
        parts.append(
            f"{n} file(s) not loaded ({names}). Fix the broken ones upstream, then run this command again with --resync"
        )
    if short := kinds_short(check):
        figures = "; ".join(
            f"{k}: {c['rows_in_database']} rows in database, {c['rows_expected']} in files" for k, c in short.items()
        )
        parts.append(
            f"the database holds fewer rows than the loaded files ({figures}). Nothing to fix upstream: run this "
            "command again with --resync to load those files again"
        )
    if not parts:
        parts.append(
            "no file of it is listed at this origin" if not check["files_total"] else "its source row is missing"
        )
    return " ".join(p[0].upper() + p[1:] + "." for p in parts)
