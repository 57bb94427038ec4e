"""A real Postgres restart under load: a server of the test's own is stopped (fast shutdown, as a restart or
failover does) while the web answers readers and an import worker is inside a file's transaction, and started
again on the same port and data directory a few seconds later: before the worker notices, or after.

The test process's Django connection stays on the shared test database; everything on the private server is
created by subprocesses (migrate, the import's own services) and checked with plain SQL."""

import os
import subprocess
import sys
import time

import psycopg
import pytest

from features.tasks import job_run_task
from tests.conftest import ROOT, WorkerProcess, subprocess_env
from tests.faults.conftest import Readers, http_status, wait_until, web_start
from tests.imports.dataset import DatasetSpec, SourceSpec, s3_put, write_dataset

pytestmark = [pytest.mark.slow]
MODEL, SERVED, LOADED = "pg-gpt", "0-res-web", "0-res-pg"
# SERVED is imported before the outage (the web reads it); LOADED by the worker across it: a feature file of 40
# rows, then an activation file of 160
SPEC = DatasetSpec(model_id=MODEL, sources=[
    SourceSpec(SERVED, n_features=8, acts_per_feature=1, batch_size=8, explanations=False),
    SourceSpec(LOADED, n_features=40, acts_per_feature=4, batch_size=40, explanations=False),
])  # fmt: skip
# The worker sleeps PAUSE_S at line 20 of every file, inside its transaction and its COPY, and the server goes
# down during that sleep. Back before it ends, the worker learns of the restart from its COPY on a server that
# accepts connections again (psycopg's AdminShutdown, a short restart or failover: Django leaves COPY's errors
# unwrapped, so the loader wraps them, or the task would not retry); still down, from Django reconnecting as the
# transaction unwinds (OperationalError).
PAUSE_S = 6
OUTAGES = [pytest.param(3, id="back-before-the-worker-notices"), pytest.param(8, id="still-down-when-it-notices")]

# run in `manage.py shell` against the private server: SERVED loaded inline, LOADED's run created for the worker
IMPORT = """
from imports.services.importer import import_run_create, import_run_inline
from imports.services.origin import OriginParams

p = OriginParams.from_options(bucket={bucket!r}, prefix="v1/", endpoint_url={endpoint!r})
import_run_inline(run_id=import_run_create(params=p, model_id={model!r}, source_id={served!r}, send=False).pk, jobs=1)
r = import_run_create(params=p, model_id={model!r}, source_id={loaded!r}, send=False)
print(r.pk, r.job_id)
"""


@pytest.mark.parametrize("down_s", OUTAGES)
def test_an_import_rides_out_a_real_postgres_restart_and_the_same_web_process_answers_503_then_200(
    down_s, private_postgres, real_celery, s3_endpoint, s3_client, new_bucket, no_aws_credentials, request
):
    private_postgres.migrate()  # ~2 s
    bucket = new_bucket()
    write_dataset(s3_put(s3_client, bucket, "v1/"), SPEC)
    db = {"DATABASE_URL": private_postgres.url}

    web, base = web_start(DB_CONN_MAX_AGE=60, **db)
    request.addfinalizer(lambda: (web.terminate(), web.wait(20)))
    worker = WorkerProcess(["imports"], f"imports-pg-{os.getpid()}", MEMICOS_IMPORT_PAUSE_AFTER_ROWS=20,
                           MEMICOS_IMPORT_PAUSE_SECONDS=PAUSE_S, **db)  # fmt: skip
    request.addfinalizer(worker.stop)
    worker.start()
    script = IMPORT.format(bucket=bucket, endpoint=s3_endpoint, model=MODEL, served=SERVED, loaded=LOADED)
    queued = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=subprocess_env(**db),
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    run_id, job_id = map(int, queued.stdout.split()[-2:])

    url = f"{base}/api/feature/{MODEL}/{SERVED}/3"
    readers = Readers(url).start()  # a steady stream of readers while the server goes away and comes back
    try:
        wait_until(lambda: 200 in readers.codes, 10, "the readers")
        # only now: the outage must find the file's COPY just begun (the job lives in the private server's database)
        job_run_task.apply_async(kwargs={"job_id": job_id}, queue="imports")
        # the worker's COPY is open and its file transaction uncommitted when the server goes down
        wait_until(lambda: _sql(private_postgres, _COPYING), 60, "a file mid-load", 0.05)
        outage_at = time.monotonic()
        private_postgres.stop("fast")
        wait_until(lambda: 503 in readers.codes[-3:], 10, "503s during the outage")
        time.sleep(max(0.0, down_s - (time.monotonic() - outage_at)))
        private_postgres.start()
        assert (time.monotonic() - outage_at < PAUSE_S - 0.5) == (down_s < PAUSE_S)  # the case named
        wait_until(lambda: http_status(url) == 200, 30, "the web process to reconnect")
        time.sleep(1)
    finally:
        readers.stop()

    assert web.poll() is None and worker.proc.poll() is None  # the same processes: nobody restarted them
    readers.assert_200s_then_503s_then_only_200s()

    # the interrupted file's transaction rolled back; its task retried and the run finished on its own
    wait_until(lambda: _sql(private_postgres, _PHASE, run_id) == "DONE", 60, "the import to finish", 0.5)
    status, result = _sql(private_postgres, _JOB, run_id, one=False)
    assert status == "SUCCEEDED" and result["complete"], result
    assert _sql(private_postgres, _FILES, run_id, one=False) == ("DONE", 2, 40 + 160)
    assert _sql(private_postgres, _FEATURES, one=False) == (40, 40)  # exact counts, no duplicates
    assert _sql(private_postgres, _ACTIVATIONS, one=False) == (160, 160)
    assert _sql(private_postgres, _UNFINISHED_JOBS) == 0


_COPYING = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY _memicos_stage_%'"
_PHASE = "SELECT phase FROM imports_importrun WHERE id = %s"
_JOB = "SELECT j.status, j.result FROM features_job j JOIN imports_importrun r ON r.job_id = j.id WHERE r.id = %s"
_FILES = "SELECT string_agg(DISTINCT status, ','), count(*), sum(rows_read) FROM imports_importfile WHERE run_id = %s"
_SOURCE = f"(SELECT id FROM features_source WHERE model_id = '{MODEL}' AND name = '{LOADED}')"
_FEATURES = f"SELECT count(*), count(DISTINCT index) FROM features_feature WHERE source_id = {_SOURCE}"
_ACTIVATIONS = (
    "SELECT count(*), count(DISTINCT a.id) FROM features_activation a "
    f"JOIN features_feature f ON f.id = a.feature_id WHERE f.source_id = {_SOURCE}"
)
_UNFINISHED_JOBS = "SELECT count(*) FROM features_job WHERE status IN ('PENDING', 'RUNNING')"


def _sql(server, sql: str, *params, one: bool = True):
    """One row (its first value when `one`) from a fresh connection; None while the server is down."""
    try:
        with server.connect() as conn:
            row = conn.execute(sql, params or None).fetchone()
    except psycopg.OperationalError:
        return None
    return row[0] if one and row else row
