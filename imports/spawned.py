"""The processes of `import_source --jobs`: spawned (a fresh interpreter), never forked.

A forked child inherits its parent's open sockets: two children of the --jobs test once read one inherited Redis
connection and both hung. A spawned child shares nothing; it gets the parent's database and Redis through the
environment (`child_env`) and sets Django up itself. This module imports nothing of Django at import time, since
the pool unpickles its functions before `boot` has run.
"""

import os


def child_env() -> dict[str, str]:
    """In the parent: what a child needs to reach the same database (the test database under pytest) and Redis."""
    from urllib.parse import quote

    import dj_database_url
    from django.conf import settings
    from django.db import connection

    s = connection.settings_dict
    env = {
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "memicos_site.settings"),
        "MEMICOS_TEST_DB": "",  # DATABASE_URL names the database to use
        "REDIS_URL": settings.REDIS_URL,
    }
    url = os.environ.get("DATABASE_URL")
    if url and dj_database_url.parse(url)["NAME"] == s["NAME"]:
        return {**env, "DATABASE_URL": url}  # as configured, with its options (sslmode, …)
    # the embedded Postgres, or the test database pytest-django made: its socket or host and its name
    host = s["HOST"] or "127.0.0.1"
    host = quote(host, safe="") if host.startswith("/") else host
    port = f":{s['PORT']}" if s["PORT"] else ""
    password = f":{quote(str(s['PASSWORD']), safe='')}" if s["PASSWORD"] else ""
    return {**env, "DATABASE_URL": f"postgresql://{quote(s['USER'], safe='')}{password}@{host}{port}/{s['NAME']}"}


def boot(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def ready() -> None:
    """A no-op the parent submits once per process, so that every process starts (and sets Django up) at once."""


def file_load(file_id: int, run_id: int) -> str:
    from django.db import connection

    from imports.services.importer import import_file_load, import_run_advance

    try:
        f = import_file_load(file_id=file_id, run_id=run_id)
        import_run_advance(run_id=run_id)
        return f.status
    finally:
        connection.close()
