"""Live progress of files being loaded, in Redis: the file's own transaction hides its rows until commit,
so in-flight counts cannot live in the database (and a Job row updated inside N parallel file
transactions would serialize them on its row lock).

Best-effort: a Redis restart must not fail the file being loaded (its rows and checkpoint are in Postgres),
so writes that fail are logged and dropped; the next report writes the figures again."""

import logging
from contextlib import contextmanager

import redis

from memicos_site.redis_client import redis_client

TTL_S = 6 * 3600
log = logging.getLogger(__name__)


def _key(run_id: int) -> str:
    # run ids repeat across databases (test runs, bench) that may share one Redis database
    from django.db import connection

    return f"memicos:imports:live:{connection.settings_dict['NAME']}:{run_id}"


@contextmanager
def _best_effort(what: str):
    try:
        yield
    except redis.RedisError as exc:  # an entry left behind lapses with its TTL
        log.warning("live import progress not %s: %s", what, exc)


def put(run_id: int, file_id: int, *, rows: int, bytes_: int):
    if not run_id:
        return
    pipe = redis_client().pipeline()
    pipe.hset(_key(run_id), str(file_id), f"{rows},{bytes_}")
    pipe.expire(_key(run_id), TTL_S)
    with _best_effort("recorded"):
        pipe.execute()


def drop(run_id: int, file_id: int):
    if run_id:
        with _best_effort("cleared"):
            redis_client().hdel(_key(run_id), str(file_id))


def clear(run_id: int):
    with _best_effort("cleared"):
        redis_client().delete(_key(run_id))


def totals(run_id: int) -> tuple[int, int]:
    """(rows, bytes) of files in flight. A killed worker's entry stays until the file is redone or the TTL."""
    rows = size = 0
    for value in redis_client().hvals(_key(run_id)):
        r, b = value.decode().split(",")
        rows, size = rows + int(r), size + int(b)
    return rows, size
