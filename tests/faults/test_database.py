"""A Postgres outage under load: the web process answers 503 + Retry-After while the database refuses
connections, then serves again without a restart.

The outage is made on this test's own database (ALTER DATABASE ... ALLOW_CONNECTIONS false, then every
backend of it terminated): what a restarting server looks like to the app (broken connections, then refused
connects), without stopping the Postgres server other test runs share."""

import time

import psycopg
import pytest
import requests
from django.db import connection

from tests.faults.conftest import Readers, http_status, wait_until, web_start

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
    web, base = web_start(DB_CONN_MAX_AGE=60)
    url = f"{base}/api/feature/tiny-inference/0-res-std/3"
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        mine = cur.fetchone()[0]
    admin = _admin()
    readers = Readers(url)  # a steady stream of readers while the database goes away and comes back
    try:
        readers.start()
        time.sleep(1)
        _outage(admin, name, True, mine)
        wait_until(lambda: http_status(url) == 503, 20, "503s during the outage")
        during = requests.get(url, timeout=20)
        assert during.status_code == 503 and int(during.headers["Retry-After"]) > 0
        assert during.json() == {"message": "The database is unavailable right now; retry in a few seconds."}
        page = requests.get(f"{base}/", timeout=20)
        assert page.status_code == 503 and "database is unavailable" in page.text  # pages too: no traceback page
        time.sleep(2)
        _outage(admin, name, False, mine)
        wait_until(lambda: http_status(url) == 200, 20, "the web process to reconnect")
        time.sleep(1)
        readers.stop()
        assert web.poll() is None  # the same process: nobody restarted it
        readers.assert_200s_then_503s_then_only_200s()
    finally:
        readers.stop()
        _outage(admin, name, False, mine)
        admin.close()
        web.terminate()
        web.wait(20)
