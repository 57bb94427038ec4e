"""Live progress of files being loaded, in Redis: the file's own transaction hides its rows until commit,
so in-flight counts cannot live in the database (and a Job row updated inside N parallel file
transactions would serialize them on its row lock)."""

from functools import lru_cache

import redis
from django.conf import settings

TTL_S = 6 * 3600


@lru_cache(maxsize=1)
def _client():
    return redis.Redis.from_url(settings.REDIS_URL)


def _key(run_id: int) -> str:
    # run ids repeat across databases (test runs, bench) that may share one Redis database
    from django.db import connection

    return f"memicos:imports:live:{connection.settings_dict['NAME']}:{run_id}"


def put(run_id: int, file_id: int, *, rows: int, bytes_: int):
    if not run_id:
        return
    pipe = _client().pipeline()
    pipe.hset(_key(run_id), str(file_id), f"{rows},{bytes_}")
    pipe.expire(_key(run_id), TTL_S)
    pipe.execute()


def drop(run_id: int, file_id: int):
    if run_id:
        _client().hdel(_key(run_id), str(file_id))


def clear(run_id: int):
    _client().delete(_key(run_id))


def totals(run_id: int) -> tuple[int, int]:
    """(rows, bytes) of files in flight. A killed worker's entry stays until the file is redone or the TTL."""
    rows = size = 0
    for value in _client().hvals(_key(run_id)):
        r, b = value.decode().split(",")
        rows, size = rows + int(r), size + int(b)
    return rows, size
