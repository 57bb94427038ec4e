"""Benchmark: import of one v1 source from a local S3 server vs a raw COPY of the same rows, same run.

    MEMICOS_ENV=test REDIS_URL=redis://127.0.0.1:6379/3 python bench/import.py [--features 16384] [--acts 30]

1. starts moto (a real S3 endpoint on loopback) and writes a source in the v1 layout: N features,
   ~A activations each with 64-token arrays (explanations are left out: their HNSW index cost is the
   same for any loader);
2. imports it with `manage.py import_source` in a subprocess (peak RSS of that process is reported);
3. dumps the imported rows with `COPY … TO`, deletes them, and times `COPY … FROM` of exactly those rows
   into the same tables (same indexes) — the raw-COPY ceiling; prints rows/s of both and their ratio.
Uses its own database (`bench_import`, created and migrated on first use).
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MEMICOS_ENV", "test")
os.environ.setdefault("MEMICOS_TEST_DB", "bench_import")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memicos_site.settings")

import django  # noqa: E402

django.setup()

import boto3  # noqa: E402
from django.db import connection  # noqa: E402

from tests.imports.dataset import (  # noqa: E402
    CONFIG_ROWS,
    activation_row,
    feature_row,
    gz,
    metadata,
)

MODEL_ID, SOURCE_ID = "bench-gpt", "6-res-bench"


def start_moto() -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    import requests

    for _ in range(300):
        try:
            requests.get(url, timeout=0.5)
            return proc, url
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError("moto did not start")


def write_dataset(url: str, n_features: int, acts: int, bucket: str = "bench-datasets") -> int:
    import json

    client = boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    client.create_bucket(Bucket=bucket)
    statement = {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
                 "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}  # fmt: skip
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    put = lambda key, data: client.put_object(Bucket=bucket, Key="v1/" + key, Body=data)  # noqa: E731
    for name, rows in CONFIG_ROWS.items():
        put(f"config/{name}", b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    for name, row in metadata(MODEL_ID, 64, SOURCE_ID).items():
        put(f"{MODEL_ID}/{SOURCE_ID}/{name}", json.dumps(row).encode() + b"\n")
    rng = random.Random(7)
    total_bytes = 0
    for b in range(0, (n_features + 1023) // 1024):
        idx = range(b * 1024, min((b + 1) * 1024, n_features))
        feats = gz([feature_row(MODEL_ID, SOURCE_ID, i, rng, 64) for i in idx])
        # ~acts per feature (acts±3), 64-token contexts like SAEDashboard's
        act_rows = [
            activation_row(MODEL_ID, SOURCE_ID, i, k, rng, 64) for i in idx for k in range(acts + rng.randint(-3, 3))
        ]
        acts_gz = gz(act_rows)
        put(f"{MODEL_ID}/{SOURCE_ID}/features/batch-{b}.jsonl.gz", feats)
        put(f"{MODEL_ID}/{SOURCE_ID}/activations/batch-{b}.jsonl.gz", acts_gz)
        total_bytes += len(feats) + len(acts_gz)
    return total_bytes


def _settle(*models):
    """Both timed phases start alike: the previous rows' dead tuples vacuumed and dirty pages checkpointed, so
    neither shares the CPU with autovacuum or a checkpoint the other phase caused."""
    with connection.cursor() as c:
        for model in models:
            c.execute(f"VACUUM ANALYZE {model._meta.db_table}")
        c.execute("CHECKPOINT")


def _phases(started: float, ended: float) -> str:
    """Where the import's time went, from its run's Job and file timestamps (one clock: this machine's)."""
    from imports.models import ImportFile, ImportRun

    run = ImportRun.objects.select_related("job").filter(model_id=MODEL_ID, source_id=SOURCE_ID).latest("pk")
    job, files = run.job, list(ImportFile.objects.filter(run=run).exclude(started_at=None))
    spans = {}
    for name, kinds in (("features", {"features"}), ("rows", {"activations", "explanations"})):
        fs = [f for f in files if f.kind in kinds]
        if fs:
            first, last = min(f.started_at for f in fs), max(f.finished_at for f in fs)
            spans[name] = (first.timestamp(), last.timestamp(), len(fs))
    first_file = min((s[0] for s in spans.values()), default=job.finished_at.timestamp())
    last_file = max((s[1] for s in spans.values()), default=first_file)
    parts = [
        f"start-up {job.started_at.timestamp() - started:.1f}s",
        f"config, metadata and plan {first_file - job.started_at.timestamp():.1f}s",
        *(f"{name} {b - a:.1f}s ({n} files)" for name, (a, b, n) in spans.items()),
        f"completeness check {job.finished_at.timestamp() - last_file:.1f}s",
        f"report and exit {ended - job.finished_at.timestamp():.1f}s",
    ]
    return ", ".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=int, default=16384)
    ap.add_argument("--acts", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=2, help="files the import loads at once (import_source --jobs)")
    args = ap.parse_args()

    # serialize=False: never load the previous run's rows into this process
    connection.creation.create_test_db(keepdb=True, verbosity=0, serialize=False)
    from features.models import Activation, Feature, Source
    from imports.models import ImportFile
    from tests.conftest import test_database_url

    Source.objects.filter(model_id=MODEL_ID).delete()
    ImportFile.objects.filter(model_id=MODEL_ID).delete()
    _settle(Feature, Activation)
    moto, url = start_moto()
    try:
        t0 = time.perf_counter()
        size = write_dataset(url, args.features, args.acts)
        print(
            f"dataset: {args.features} features, written in {time.perf_counter() - t0:.1f}s, {size / 1e6:.1f} MB gzip"
        )

        _settle(Feature, Activation)  # what the dataset upload left for autovacuum and the checkpointer, not timed
        env = dict(os.environ, DATABASE_URL=test_database_url(), MEMICOS_TEST_DB="")
        profile = ["-m", "cProfile", "-o", "/tmp/imp.prof"] if os.environ.get("BENCH_PROFILE") else []
        cmd = [sys.executable, *profile, "manage.py", "import_source", MODEL_ID, SOURCE_ID, "--bucket", "bench-datasets",
               "--prefix", "v1/", "--endpoint-url", url, "--no-explanations", "--jobs", str(args.jobs)]  # fmt: skip
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.pop(k, None)
        t0, started = time.perf_counter(), time.time()
        load_import = os.getloadavg()[0]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (its processes' included)
        proc.returncode = os.waitstatus_to_exitcode(status)
        t_import, ended = time.perf_counter() - t0, time.time()
        load_import = max(load_import, os.getloadavg()[0])
        if proc.returncode:
            raise SystemExit(f"import_source failed ({proc.returncode})")
        peak_rss_mb = usage.ru_maxrss / 1024
        import_cpu = usage.ru_utime + usage.ru_stime
    finally:
        moto.terminate()

    phases = _phases(started, ended)
    source = Source.objects.get(model_id=MODEL_ID, name=SOURCE_ID)
    n_feat = Feature.objects.filter(source=source).count()
    n_act = Activation.objects.filter(feature__source=source).count()
    rows = n_feat + n_act

    # Raw COPY ceiling: exactly these rows, dumped with COPY TO, deleted, and COPYed back in.
    ft, at = Feature._meta.db_table, Activation._meta.db_table
    with tempfile.TemporaryDirectory() as tmp:
        fpath, apath = Path(tmp) / "f.copy", Path(tmp) / "a.copy"
        with connection.cursor() as c:
            for path, sql in (
                (fpath, f"COPY (SELECT * FROM {ft} WHERE source_id = {source.pk}) TO STDOUT"),
                (
                    apath,
                    f"COPY (SELECT a.* FROM {at} a JOIN {ft} f ON f.id = a.feature_id WHERE f.source_id = {source.pk}) TO STDOUT",
                ),
            ):
                with open(path, "wb") as out, c.copy(sql) as copy:
                    for chunk in copy:
                        out.write(chunk)
        Feature.objects.filter(source=source).delete()
        _settle(Feature, Activation)
        t0 = time.perf_counter()
        load_raw = os.getloadavg()[0]
        with connection.cursor() as c:
            for path, table in ((fpath, ft), (apath, at)):
                with open(path, "rb") as src, c.copy(f"COPY {table} FROM STDIN") as copy:
                    while chunk := src.read(1 << 20):
                        copy.write(chunk)
        t_raw = time.perf_counter() - t0
        load_raw = max(load_raw, os.getloadavg()[0])
    assert Activation.objects.filter(feature__source=source).count() == n_act

    print(f"rows: {n_feat} features + {n_act} activations = {rows}")
    print(
        f"import (S3 → parse → COPY (direct, or staged and upserted), per-file transactions): {t_import:.1f}s, {rows / t_import:,.0f} rows/s"
    )
    print(f"  of which CPU time of the import process (download, gunzip, parse, validate): {import_cpu:.1f}s")
    print(f"  phases: {phases}")
    print(f"raw COPY of the same rows into the same tables: {t_raw:.1f}s, {rows / t_raw:,.0f} rows/s")
    print(f"ratio import / raw COPY: {t_raw / t_import:.2f} (target >= 0.5)")
    # other work on the machine slows the two phases unequally: the ratio means little when these differ a lot
    print(f"1-min load average (higher of start/end): import {load_import:.1f}, raw COPY {load_raw:.1f}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"peak RSS of the import process: {peak_rss_mb:.0f} MiB (target < 1024)")


if __name__ == "__main__":
    main()
