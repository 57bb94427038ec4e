"""Shared fixtures: real Postgres + pgvector (embedded unless DATABASE_URL), real Redis, real workers."""

import os

os.environ.setdefault("MEMICOS_ENV", "test")

import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import quote  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def user(db):
    from tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def other_user(db):
    from tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def staff_user(db):
    from tests.factories import UserFactory

    return UserFactory(is_staff=True)


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def api_key_for():
    """api_key_for(user) → a raw key for the x-api-key header."""
    from features.services.api_keys import api_key_create

    def make(user):
        return api_key_create(user=user, name="test")[1]

    return make


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """`with run_on_commit(): ...` runs what the block sends on commit (job tasks, eagerly in unit tests) when it
    ends, as a commit would; the test's own transaction never commits, so they would never run otherwise."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def wsgi_handler():
    """The WSGI handler gunicorn serves (memicos_site/handler.py), called directly, minus closing the DB connection
    around requests (as Django's test client does): the requests run inside the test's transaction."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from memicos_site.handler import Handler

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield Handler()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def wait_until(check, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_database_url() -> str:
    """A DATABASE_URL for the test database pytest-django created, for subprocesses (workers)."""
    from django.db import connection

    s = connection.settings_dict
    host = s["HOST"] or "127.0.0.1"
    hostpart = quote(host, safe="") if host.startswith("/") else host
    port = f":{s['PORT']}" if s["PORT"] else ""
    password = f":{quote(s['PASSWORD'])}" if s["PASSWORD"] else ""
    return f"postgresql://{s['USER']}{password}@{hostpart}{port}/{s['NAME']}"


def subprocess_env(**extra) -> dict:
    from django.conf import settings

    env = dict(os.environ)
    env.update(
        MEMICOS_ENV="test",
        DATABASE_URL=test_database_url(),
        REDIS_URL=settings.REDIS_URL,
        CELERY_TASK_ALWAYS_EAGER="0",
        PYTHONPATH=str(ROOT),
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


class WorkerProcess:
    """A real `celery worker` process consuming some queues of the test Redis database."""

    def __init__(self, queues: list[str], name: str, **env):
        self.queues = queues
        self.name = name
        self.env = env
        self.proc = None

    def start(self, timeout: float = 120.0, wait: bool = True):
        """`wait=False` returns once the process runs: a solo worker whose sweep at start hands it a long job
        answers no ping until the job ends."""
        from memicos_site.celery import app

        cmd = [
            sys.executable, "-m", "celery", "-A", "memicos_site", "worker",
            "-Q", ",".join(self.queues), "-n", f"{self.name}@%h", "-P", "solo",
            "--without-gossip", "--without-mingle", "--loglevel", "WARNING",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(**self.env))
        if not wait:
            return self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited with {self.proc.returncode}")
            replies = app.control.ping(timeout=0.5) or []
            if any(self.name in next(iter(r)) for r in replies):
                return self
        # a worker left running would consume the queues of every later test with this test's environment
        self.kill()
        raise RuntimeError(f"worker {self.name} did not answer within {timeout}s")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="session", autouse=True)
def fresh_test_redis():
    """Start from an empty test Redis database. Redis outlives test runs: a message a killed worker of an earlier
    run left unacknowledged is handed out again once its visibility timeout passes, and a gpu_batch worker of
    this run would spend minutes on that run's SmolLM2 job before answering its own test."""
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.REDIS_URL).flushdb()


def purge_queues():
    """Drop what waits in the static queues of the test Redis database: a message an earlier test queued with no
    worker to take it would otherwise be run by the next test's worker first (a SmolLM2 job can take minutes)."""
    from memicos_site.celery import app
    from memicos_site.queues import STATIC_QUEUES

    with app.connection_for_write() as conn:
        for queue in STATIC_QUEUES:
            conn.default_channel.queue_purge(queue)


@pytest.fixture
def real_celery(settings):
    """Send tasks to real workers (not eagerly) for the duration of a test, starting and ending with empty queues."""
    from memicos_site.celery import app

    purge_queues()
    app.conf.task_always_eager = False
    yield app
    app.conf.task_always_eager = True
    purge_queues()


@pytest.fixture
def start_worker(real_celery, transactional_db):
    """start_worker(["default"], name="w1") → a running WorkerProcess, stopped after the test."""
    started = []

    def start(queues, name="testworker", wait=True, **env):
        worker = WorkerProcess(queues, f"{name}-{os.getpid()}", **env)
        started.append(worker)  # before it answers: a worker that fails its start is stopped too
        return worker.start(wait=wait)

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def browser(django_db_setup, django_db_blocker):
    """Debian chromium driven by Playwright (no browser download).

    Playwright's sync API keeps an event loop running in this thread for the rest of the session, which
    makes Django refuse synchronous ORM calls (the tests' own and the flushes between them). They are
    safe here (one thread drives both), so Django is told so while the browser lives. Depending on
    django_db_setup creates the test database before that loop starts.
    """
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        yield b
        b.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    pg = context.new_page()
    yield pg
    context.close()


def browser_sign_in(page, live_server, user) -> None:
    """Sign `user` in for the browser `page`: a session made by Django's test client, given as its cookie."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])
