"""memicos_site.web_worker.GateWorker in a real gunicorn (1 process, 4 threads) with one CPU slot: requests that wait
on another process (here /healthz, which waits for Celery workers' replies inside released()) give the slot back,
so they wait side by side instead of one after another, and a page request is served meanwhile."""

import threading
import time

import pytest
import requests

from tests.faults.conftest import http_status, wait_until, web_start

pytestmark = [pytest.mark.slow]

WAIT_S = 1.5  # each /healthz waits this long for worker replies (none come: no worker listens)


def test_requests_waiting_on_workers_share_the_only_slot_and_the_site_answers_meanwhile(tiny_db, transactional_db):
    web, base = web_start(WEB_CPU_SLOTS=1, WEB_CPU_SLOT_WAIT_MS=20_000)  # no running without a slot: only released()
    try:
        wait_until(lambda: http_status(f"{base}/healthz?timeout=0.1") == 200, 60, "the web server")
        answers = []

        def get(path):
            started = time.monotonic()
            status = requests.get(f"{base}{path}", timeout=30).status_code
            answers.append((path, status, time.monotonic() - started))

        waits = [threading.Thread(target=get, args=(f"/healthz?timeout={WAIT_S}",)) for _ in range(3)]
        t0 = time.monotonic()
        for t in waits:
            t.start()
        time.sleep(0.3)  # the three are waiting on workers now
        get("/api/feature/tiny-inference/0-res-std/3")
        for t in waits:
            t.join(30)
        wall = time.monotonic() - t0
    finally:
        web.terminate()
        web.wait(10)
    assert sorted(status for _, status, _ in answers) == [200] * 4, answers
    page = next(seconds for path, _, seconds in answers if path.startswith("/api/"))
    assert page < WAIT_S, answers  # not queued behind the waiting requests
    assert wall < 2 * WAIT_S, answers  # side by side: one after another would take 3 × WAIT_S
