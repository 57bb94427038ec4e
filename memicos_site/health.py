"""GET /healthz: database, Redis and Celery workers, as JSON. 200 when the database and Redis answer."""

import math
import time

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from memicos_site.celery import app as celery_app
from memicos_site.cpu_gate import released


def _check_database() -> dict:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
        return {"ok": True, "pgvector": row[0] if row else None, "ms": _ms(started)}
    except Exception as exc:  # report, don't raise: this is the health page
        return {"ok": False, "error": str(exc)}


def _check_redis() -> dict:
    started = time.monotonic()
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
        return {"ok": True, "ms": _ms(started)}
    except Exception as exc:
        return {"ok": False, "error": str(exc)}


def _check_workers(timeout: float) -> dict:
    try:
        with released():  # the request's CPU slot, while workers answer
            replies = celery_app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception as exc:
        return {"ok": False, "count": 0, "error": str(exc), "workers": {}}
    workers = {name: sorted(q["name"] for q in queues) for name, queues in replies.items()}
    return {"ok": bool(workers), "count": len(workers), "workers": workers}


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


MAX_WAIT_S = 5.0  # anyone may call this page: a caller must not hold a web thread for as long as it likes


def _wait_s(raw: str | None) -> float:
    """?timeout= seconds to wait for workers' replies: a finite number in (0, MAX_WAIT_S], default 1."""
    if raw is None:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_WAIT_S:  # NaN fails too
        raise ValueError(f"timeout must be a number of seconds above 0 and at most {MAX_WAIT_S:g}, not {raw!r}")
    return value


@require_GET
def healthz(request):
    try:
        wait_s = _wait_s(request.GET.get("timeout"))
    except ValueError as exc:
        return JsonResponse({"message": str(exc)}, status=400)
    database = _check_database()
    redis_status = _check_redis()
    if redis_status["ok"]:
        workers = _check_workers(timeout=wait_s)
    else:
        workers = {"ok": False, "count": 0, "workers": {}, "error": "Redis is down"}
    ok = database["ok"] and redis_status["ok"]
    body = {"status": "ok" if ok else "error", "database": database, "redis": redis_status, "workers": workers}
    return JsonResponse(body, status=200 if ok else 503)
