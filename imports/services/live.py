"""Live progress of files being loaded, in Redis: the file's own transaction hides its rows until commit,
so in-flight counts cannot live in the database (and a Job row updated inside N parallel file
transactions would serialize them on its row lock).

Best-effort: a Redis restart must not fail the file being loaded (its rows and checkpoint are in Postgres),
so writes that fail are logged and dropped; the next report writes the figures again."""

import logging

import redis

from memicos_site.redis_client import redis_client

TTL_S = 6 * 3600
log = logging.getLogger(__name__)


def _key(run_id: int) -> str:
    # run ids repeat across databases (test runs, bench) that may share one Redis database
    from django.db import connection

    return f"memicos:imports:live:{connection.settings_dict['NAME']}:{run_id}"


def put(run_id: int, file_id: int, *, rows: int, bytes_: int):
    if not run_id:
        return
    pipe = redis_client().pipeline()
    pipe.hset(_key(run_id), str(file_id), f"{rows},{bytes_}")
    pipe.expire(_key(run_id), TTL_S)
    try:
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("live import progress not recorded: %s", exc)


def drop(run_id: int, file_id: int):
    if run_id:
        try:
            redis_client().hdel(_key(run_id), str(file_id))
        except redis.RedisError as exc:  # the entry lapses with its TTL
            log.warning("live import progress not cleared: %s", exc)


def clear(run_id: int):
    try:
        redis_client().delete(_key(run_id))
    except redis.RedisError as exc:
        log.warning("live import progress not cleared: %s", exc)


def totals(run_id: int) -> tuple[int, int]:
    """(rows, bytes) of files in flight. A killed worker's entry stays until the file is redone or the TTL."""
    rows = size = 0
    for value in redis_client().hvals(_key(run_id)):
        r, b = value.decode().split(",")
        rows, size = rows + int(r), size + int(b)
    return rows, size
