"""Shared by the benchmarks that time reads of a large scratch database."""

import time
from pathlib import Path


def warm_page_cache(tables: list[str]) -> str:
    """Read the files of `tables`, their indexes and TOAST once, so that they sit in the OS page cache.

    A server that has been answering requests holds them in memory; without this, p50 mostly measures disk
    reads of rows the machine's reclaim has dropped since the load, or that another benchmark's data pushed out
    (pg_prewarm is not in the embedded Postgres build). Needs the database's files on this machine (the
    embedded server).
    """
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT current_setting('data_directory')")
        data_dir = Path(cur.fetchone()[0])
        cur.execute(
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.oid = ANY(%(t)s::regclass[]) "
            "OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = ANY(%(t)s::regclass[])) "
            "OR c.oid IN (SELECT reltoastrelid FROM pg_class WHERE oid = ANY(%(t)s::regclass[]))",
            {"t": tables},
        )
        files = [
            f
            for (rel,) in cur.fetchall()
            if rel
            for f in data_dir.glob(f"{rel}*")
            if f.name.split(".")[0] == Path(rel).name
        ]
    t, size = time.perf_counter(), 0
    try:
        for f in files:
            with open(f, "rb", buffering=0) as fh:
                while chunk := fh.read(1 << 20):
                    size += len(chunk)
    except OSError as exc:
        return f"not warmed ({exc})"
    seconds = time.perf_counter() - t
    return f"{size / 2**30:.1f} GiB of {', '.join(tables)} and their indexes read once before timing ({seconds:.0f} s)"
