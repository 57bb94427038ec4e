"""A Postgres outage under load: the web process answers 503 + Retry-After while the database refuses
connections, then serves again without a restart.

The outage is made on this test's own database (ALTER DATABASE ... ALLOW_CONNECTIONS false, then every
backend of it terminated): what a restarting server looks like to the app (broken connections, then refused
connects), without stopping the Postgres server other test runs share."""

import subprocess
import sys
import threading
import time

import psycopg
import pytest
import requests
from django.db import connection

from tests.conftest import ROOT, subprocess_env
from tests.faults.conftest import free_port, wait_until

pytestmark = [pytest.mark.slow]


def _admin():
    s = connection.settings_dict
    return psycopg.connect(host=s["HOST"] or "127.0.0.1", port=s["PORT"] or None, user=s["USER"],
                           password=s["PASSWORD"] or None, dbname="postgres", autocommit=True)  # fmt: skip


def _outage(admin, name: str, on: bool, keep_pid: int):
    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"false" if on else "true"}')
    if on:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s", [name, keep_pid]
        )


def test_a_database_outage_is_503_with_retry_after_and_the_same_web_process_recovers(tiny_db, transactional_db):
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "memicos_site.wsgi", "--bind", f"127.0.0.1:{port}",
         "--worker-class", "gthread", "--workers", "1", "--threads", "4", "--timeout", "60"],
        cwd=ROOT, env=subprocess_env(DB_CONN_MAX_AGE=60), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/api/feature/tiny-inference/0-res-std/3"
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        mine = cur.fetchone()[0]
    admin = _admin()
    seen, stop = [], threading.Event()

    def load():  # a steady stream of readers while the database goes away and comes back
        while not stop.is_set():
            try:
                r = requests.get(url, timeout=20)
                seen.append((r.status_code, r.headers.get("Retry-After"), r.headers.get("Content-Type", "")))
            except requests.RequestException as exc:
                seen.append((type(exc).__name__, None, ""))
            time.sleep(0.05)

    try:
        wait_until(lambda: _get(url) == 200, 60, "the web server")
        loader = threading.Thread(target=load)
        loader.start()
        time.sleep(1)
        _outage(admin, name, True, mine)
        wait_until(lambda: _get(url) == 503, 20, "503s during the outage")
        during = requests.get(url, timeout=20)
        assert during.status_code == 503 and int(during.headers["Retry-After"]) > 0
        assert during.json() == {"message": "The database is unavailable right now; retry in a few seconds."}
        page = requests.get(f"{base}/", timeout=20)
        assert page.status_code == 503 and "database is unavailable" in page.text  # pages too: no traceback page
        time.sleep(2)
        _outage(admin, name, False, mine)
        wait_until(lambda: _get(url) == 200, 20, "the web process to reconnect")
        time.sleep(1)
        stop.set()
        loader.join(30)
        assert web.poll() is None  # the same process: nobody restarted it
        codes = [c for c, _, _ in seen]
        assert set(codes) <= {200, 503}, codes  # never a 500, a reset connection or a hang
        assert all(ra and "json" in ct for c, ra, ct in seen if c == 503)
        first_503, last_503 = codes.index(503), len(codes) - 1 - codes[::-1].index(503)
        assert 200 in codes[:first_503] and codes[last_503 + 1 :] and set(codes[last_503 + 1 :]) == {200}
    finally:
        stop.set()
        _outage(admin, name, False, mine)
        admin.close()
        web.terminate()
        web.wait(20)


def _get(url) -> int | None:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.RequestException:
        return None
