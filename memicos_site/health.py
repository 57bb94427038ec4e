"""GET /healthz: database, Redis and Celery workers, as JSON. 200 when the database and Redis answer."""

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


@require_GET
def healthz(request):
    database = _check_database()
    redis_status = _check_redis()
    workers = (
        _check_workers(timeout=float(request.GET.get("timeout", 1.0)))
        if redis_status["ok"]
        else {
            "ok": False,
            "count": 0,
            "workers": {},
            "error": "Redis is down",
        }
    )
    ok = database["ok"] and redis_status["ok"]
    body = {"status": "ok" if ok else "error", "database": database, "redis": redis_status, "workers": workers}
    return JsonResponse(body, status=200 if ok else 503)
