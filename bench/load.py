"""Feature dashboard page and GET /api/feature under 16 concurrent clients, on a database of ≥ 1M features and
≥ 10M activations; p50/p95/p99 and requests/s of each, against a baseline measured in the same run.

    python bench/load.py [--sources 8] [--width 131072] [--clients 16] [--duration 30] [--think-ms 0 1000]
                         [--workers 2] [--db bench_load] [--rebuild] [--json]
    python bench/load.py --steer [--steer-url http://127.0.0.1:8000] [--steer-clients 20]

1. Data (built once into the scratch database `bench_load`, kept between runs; `--rebuild` drops it): one
   model with `--sources` SAEs of `--width` features each (8 × 131,072 = 1,048,576 features) and the
   activations of every feature: half have 2–6, 40 % 8–16 and 10 % 30–50 (mean ≈ 10.8, ≈ 11.3M rows), each a
   24–64-token Brown-corpus snippet with per-token values, top examples then interval bins of 5 as
   SAEDashboard exports them. Every feature has one explanation, logits, histograms and 25 neighbours.
   Rows are generated inside Postgres (INSERT … SELECT over generate_series, joined to a pool of 50,000
   snippets COPYed in first) with the table's indexes and constraints dropped and rebuilt afterwards.
   Table and index sizes (pg_total_relation_size) and bytes per row are printed on every run: README's
   partition plan quotes them.
2. The database's files are read into the OS page cache (bench/pagecache.py), as a server that has been
   answering requests holds them, and again before each timed route: this machine's memory reclaim drops
   cached pages between runs. Each route's line says how many MiB were still read from disk during it. Then a
   gunicorn server (MEMICOS_ENV=production, DEBUG off, Redis cache and rate-limit counters, limits raised so
   one client IP is never throttled) on a loopback port, `--workers` processes × 8 threads.
3. wrk (`make bench-tools`) with 16 connections, each request a random feature (uniform over all features)
   as either the dashboard page `/<model>/<source>/<index>/` or `GET /api/feature/<model>/<source>/<index>`;
   falls back to a Python thread-per-client driver when wrk is missing. `--think-ms` runs each client with a
   pause between requests (a user reading the page) after the closed-loop run (no pause). Baseline, same
   run, same concurrency: a static file served by the same gunicorn (WhiteNoise) — the cost of HTTP,
   gunicorn and the load generator with no Django view or database work. Each run also prints the CPU time the
   server's and Postgres's processes used per request (/proc), and for the closed loop the latency that CPU alone
   implies: with every core busy, 16 back-to-back clients wait at least 16 × (CPU per request) / cores each.

Before the timed runs, /sitemap.xml and its first feature file (50,000 URLs) are timed in-process, best of 3: what a
crawler's visit costs on this database (no target).

Targets (issue 7): p50 ≤ 30 ms and p99 ≤ 150 ms for both routes at 16 concurrent clients.

`--steer` only measures admission control: 20 concurrent POST /api/steer to a running demo, reporting how
many answered 200 / 503 / other and the slowest answer.
"""

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from pagecache import warm_page_cache  # bench/pagecache.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MEMICOS_ENV", "test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memicos_site.settings")

MODEL_ID = "bench-load"
SET_NAME = "res-load"
POOL = 50_000  # distinct snippets; rows pick one by a hash of (feature, rank)
TARGET_P50_MS, TARGET_P99_MS = 30.0, 150.0
ROUTE_ORDER = ("static", "floor", "page", "api")  # the order of the timed runs
# Activations per feature, by a hash of the feature id: (share of features, lowest count, highest count).
ACTS_MIX = ((50, 2, 6), (40, 8, 16), (10, 30, 50))
TOP_GROUP = 20  # SAEDashboard's top examples (binMin = -1); the rest are interval samples, 5 per bin
FEATURE_CHUNK = 16_384  # features per INSERT of activations (≈ 180k rows, a few seconds each)


# ------------------------------------------------------------------ data


def _ddl_meta(cur, key: str, value: str | None = None) -> str | None:
    cur.execute("CREATE TABLE IF NOT EXISTS bench_load_meta (key text PRIMARY KEY, value text NOT NULL)")
    if value is None:
        cur.execute("SELECT value FROM bench_load_meta WHERE key = %s", [key])
        row = cur.fetchone()
        return row[0] if row else None
    cur.execute(
        "INSERT INTO bench_load_meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )
    return value


def drop_indexes(cur, tables: dict[str, bool]) -> None:
    """Drop the indexes and constraints of `tables` (the primary key too where the flag says so), saving
    their definitions in bench_load_meta first so that an interrupted load can still put them back."""
    saved = json.loads(_ddl_meta(cur, "ddl") or "[]")
    for table, with_pk in tables.items():
        cur.execute(
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
            "AND contype IN ('p', 'u', 'f') ORDER BY contype",  # foreign keys (f) first: nothing may depend on them
            [table],
        )
        constraints = [(n, t, d) for n, t, d in cur.fetchall() if with_pk or t != "p"]
        cur.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = "
            "%s::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
            [table],
        )
        indexes = cur.fetchall()
        for name, kind, definition in constraints:
            saved.append({"kind": kind, "name": name, "sql": f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"})
        saved += [{"kind": "i", "name": name, "sql": sql} for name, sql in indexes]
        _ddl_meta(cur, "ddl", json.dumps(saved))
        for name, _, _ in constraints:
            cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        for name, _ in indexes:
            cur.execute(f"DROP INDEX {name}")


def restore_indexes(cur) -> None:
    """Rebuild what drop_indexes saved: primary and unique keys, then indexes, then foreign keys."""
    saved = json.loads(_ddl_meta(cur, "ddl") or "[]")
    order = {"p": 0, "u": 1, "i": 2, "f": 3}
    for item in sorted(saved, key=lambda s: order[s["kind"]]):
        t = time.perf_counter()
        cur.execute(item["sql"])
        print(f"  built {item['name']} in {time.perf_counter() - t:.0f} s", flush=True)
    cur.execute("DELETE FROM bench_load_meta WHERE key = 'ddl'")


def snippet_pool(rng: random.Random) -> list[tuple[list[str], list[float]]]:
    """POOL snippets of 24–64 consecutive Brown-corpus words (GPT-style leading spaces) with per-token values:
    mostly zero, a few positive bumps, as an SAE latent fires."""
    words = []
    brown = ROOT / "var" / "corpus" / "brown"
    for path in sorted(brown.glob("c*"))[:120]:
        words += [w.rsplit("/", 1)[0] for w in path.read_text().split() if "/" in w]
    if len(words) < 10_000:  # no corpus (`make corpus`): the import tests' vocabulary
        from tests.imports.dataset import VOCAB

        words = [rng.choice(VOCAB).strip() or "the" for _ in range(100_000)]
    pool = []
    for _ in range(POOL):
        n = rng.randint(24, 64)
        start = rng.randrange(0, len(words) - n)
        tokens = [(" " if i else "") + w for i, w in enumerate(words[start : start + n])]
        values = [0.0] * n
        for _ in range(rng.randint(1, 6)):
            values[rng.randrange(n)] = round(rng.uniform(0.1, 12.0), 3)
        pool.append((tokens, values))
    return pool


def _copy_pool(cur, pool, rng: random.Random) -> None:
    cur.execute(
        "CREATE TEMP TABLE pool_snippet (k int PRIMARY KEY, tokens text[], vals float8[], maxv float8, maxi int)"
    )
    with cur.copy("COPY pool_snippet FROM STDIN") as copy:
        for k, (tokens, values) in enumerate(pool):
            i = max(range(len(values)), key=values.__getitem__)
            copy.write_row((k, tokens, values, values[i], i))
    # logits / neighbour values / histograms for features: 4,096 variants of each, picked by feature id
    cur.execute(
        "CREATE TEMP TABLE pool_feature (k int PRIMARY KEY, pos_str text[], pos_values float8[], neg_str text[], "
        "neg_values float8[], cos_values float8[], hist_values float8[], hist_heights float8[], "
        "logit_values float8[], logit_heights float8[], description text)"
    )
    vocab = list({t for tokens, _ in pool[:2000] for t in tokens})
    with cur.copy("COPY pool_feature FROM STDIN") as copy:
        for k in range(4096):
            copy.write_row(
                (
                    k,
                    rng.sample(vocab, 10),
                    sorted((round(rng.uniform(0.2, 1.5), 3) for _ in range(10)), reverse=True),
                    rng.sample(vocab, 10),
                    sorted(round(rng.uniform(-1.5, -0.2), 3) for _ in range(10)),
                    sorted((round(rng.uniform(0.1, 0.9), 4) for _ in range(25)), reverse=True),
                    [round(0.05 * i, 3) for i in range(50)],
                    [float(rng.randint(0, 5000)) for _ in range(50)],
                    [round(-1 + 0.04 * i, 3) for i in range(50)],
                    [float(rng.randint(0, 3000)) for _ in range(50)],
                    " ".join(rng.sample(vocab, rng.randint(3, 8))).strip(),
                )
            )


def _acts_count_sql(fid: str) -> str:
    """SQL for the number of activations of the feature with id `fid` (ACTS_MIX by a hash of the id)."""
    h = f"(({fid} * 2654435761) %% 100)"  # %% : the statement goes through psycopg with parameters
    cases, edge = [], 0
    for share, lo, hi in ACTS_MIX:
        edge += share
        cases.append(f"WHEN {h} < {edge} THEN {lo} + ({fid} %% {hi - lo + 1})")
    return f"(CASE {' '.join(cases)} END)"


def expected_activations(n_features_ids) -> int:
    def count(fid: int) -> int:
        h, edge = (fid * 2654435761) % 100, 0
        for share, lo, hi in ACTS_MIX:
            edge += share
            if h < edge:
                return lo + fid % (hi - lo + 1)
        raise AssertionError

    return sum(count(f) for f in n_features_ids)


def load(*, n_sources: int, width: int) -> None:
    from django.db import connection

    from features.models import Model, Source, SourceSet, Visibility

    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("TRUNCATE features_model CASCADE")
        cur.execute("DELETE FROM bench_load_meta WHERE key = 'complete'")
    model = Model.objects.create(id=MODEL_ID, display_name="bench (synthetic SAE dashboards)", layers=n_sources)
    sset = SourceSet.objects.create(model=model, name=SET_NAME, visibility=Visibility.PUBLIC)
    sources = [Source.objects.create(model=model, source_set=sset, name=f"{k}-{SET_NAME}") for k in range(n_sources)]
    rng = random.Random(7)
    pool = snippet_pool(rng)
    raw = connection.connection
    with raw.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute("SET max_parallel_maintenance_workers = 2")
        _copy_pool(cur, pool, rng)
        drop_indexes(cur, {"features_feature": False, "features_activation": True, "features_explanation": False})
        raw.commit()
        for source in sources:
            cur.execute(
                """
                INSERT INTO features_feature (model_id, source_id, index, max_act_approx, has_vector, vector,
                    vector_label, vector_default_steer_strength, hook_name, topk_cos_sim_indices, topk_cos_sim_values,
                    neuron_alignment_indices, neuron_alignment_values, neuron_alignment_l1,
                    correlated_neurons_indices, correlated_neurons_pearson, correlated_neurons_l1,
                    correlated_features_indices, correlated_features_pearson, correlated_features_l1,
                    neg_str, neg_values, pos_str, pos_values, frac_nonzero, freq_hist_data_bar_heights,
                    freq_hist_data_bar_values, logits_hist_data_bar_heights, logits_hist_data_bar_values,
                    decoder_weights_dist, created_at)
                SELECT %(model)s, %(source)s, g.i, 1 + (g.i %% 997) / 50.0, false, '{}', '', 10,
                    %(hook)s, ARRAY(SELECT (g.i + j * 4099) %% %(w)s FROM generate_series(0, 24) AS j), p.cos_values,
                    '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}',
                    p.neg_str, p.neg_values, p.pos_str, p.pos_values, (g.i %% 1000) / 100000.0, p.hist_heights,
                    p.hist_values, p.logit_heights, p.logit_values, '{}', now()
                FROM generate_series(0, %(w)s - 1) AS g(i) JOIN pool_feature p ON p.k = (g.i * 7919) %% 4096
                """,
                {
                    "model": MODEL_ID,
                    "source": source.pk,
                    "w": width,
                    "hook": f"blocks.{source.name[0]}.hook_resid_post",
                },
            )
            raw.commit()
            print(f"  features of {source.name}: {width:,} ({time.perf_counter() - started:.0f} s)", flush=True)
        cur.execute(
            """
            INSERT INTO features_explanation (id, feature_id, model_id, source_id, description, notes, score_v1,
                score_v2, prompt_version, created_at, updated_at)
            SELECT 'cbx' || lpad(f.id::text, 22, '0'), f.id, f.model_id, f.source_id, p.description, '',
                (f.id % 100) / 100.0, NULL, '', now(), now()
            FROM features_feature f JOIN pool_feature p ON p.k = (f.id * 31) % 4096
            """
        )
        raw.commit()
        print(f"  explanations: one per feature ({time.perf_counter() - started:.0f} s)", flush=True)
        cur.execute("SELECT min(id), max(id) FROM features_feature")
        lo_id, hi_id = cur.fetchone()
        done, t0 = 0, time.perf_counter()
        for lo in range(lo_id, hi_id + 1, FEATURE_CHUNK):
            # rank k within the feature: k < TOP_GROUP is a top example (binMin -1), then interval bins of 5
            cur.execute(
                f"""
                INSERT INTO features_activation (id, feature_id, tokens, values, data_index, data_source, max_value,
                    max_value_token_index, min_value, dfa_values, z_q_indices, z_k_indices, z_values, loss_values,
                    logit_contributions, bin_min, bin_max, bin_contains, qualifying_token_index, created_at)
                SELECT 'cba' || lpad(f.id::text, 12, '0') || lpad(r.rk::text, 10, '0'), f.id, p.tokens, p.vals,
                    (f.id * 131 + r.rk) %% 24576, 'brown', p.maxv, p.maxi, 0, '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', '',
                    CASE WHEN r.rk < {TOP_GROUP} THEN -1 ELSE 10 - ((r.rk - {TOP_GROUP}) / 5) * 2 END,
                    CASE WHEN r.rk < {TOP_GROUP} THEN NULL ELSE 12 - ((r.rk - {TOP_GROUP}) / 5) * 2 END,
                    CASE WHEN r.rk < {TOP_GROUP} THEN NULL ELSE 0.1 END, p.maxi, now()
                FROM features_feature f
                CROSS JOIN LATERAL generate_series(0, {_acts_count_sql("f.id")} - 1) AS r(rk)
                JOIN pool_snippet p ON p.k = ((f.id * 7919 + r.rk * 104729) %% {POOL})
                WHERE f.id >= %(lo)s AND f.id < %(hi)s
                """,
                {"lo": lo, "hi": lo + FEATURE_CHUNK},
            )
            done += cur.rowcount
            raw.commit()
            rate = done / (time.perf_counter() - t0)
            print(
                f"  activations: {done:,} rows ({rate:,.0f} rows/s, {time.perf_counter() - started:.0f} s)", flush=True
            )
        print("rebuilding indexes and constraints", flush=True)
        restore_indexes(cur)
        raw.commit()
    with connection.cursor() as cur:
        # sets hint bits and the visibility map now, so that the first timed reads do not write pages
        for table in ("features_feature", "features_explanation", "features_activation"):
            t = time.perf_counter()
            cur.execute(f"VACUUM (ANALYZE) {table}")
            print(f"  vacuum analyze {table}: {time.perf_counter() - t:.0f} s", flush=True)
    print(f"load total {time.perf_counter() - started:.0f} s", flush=True)


def ensure_data(*, db: str, n_sources: int, width: int, rebuild: bool) -> None:
    """Create, migrate and fill the scratch database unless it already holds exactly this data."""
    from django.db import connection

    params = json.dumps({"sources": n_sources, "width": width, "mix": ACTS_MIX, "pool": POOL}, sort_keys=True)
    with connection._nodb_cursor() as cur:
        if rebuild:
            cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db])
        if not cur.fetchone():
            cur.execute(f'CREATE DATABASE "{db}"')
    # serialize=False: serializing the database (for TransactionTestCase rollbacks) would read every row
    connection.creation.create_test_db(verbosity=0, keepdb=True, serialize=False)
    with connection.cursor() as cur:
        if _ddl_meta(cur, "ddl"):  # a load was interrupted after dropping indexes
            print("an earlier load was interrupted: rebuilding its indexes before starting again")
            restore_indexes(cur)
        if _ddl_meta(cur, "complete") == params:
            return
    print(f"building {db}: {n_sources} sources × {width:,} features and their activations (once)", flush=True)
    load(n_sources=n_sources, width=width)
    with connection.cursor() as cur:
        _ddl_meta(cur, "complete", params)


def sizes() -> dict:
    """Rows, heap, TOAST and index bytes of the big tables, and bytes per row (all of it, indexes included)."""
    from django.db import connection

    out = {}
    with connection.cursor() as cur:
        for table in ("features_feature", "features_activation", "features_explanation"):
            cur.execute(
                "SELECT count(*), pg_relation_size(%(t)s), pg_total_relation_size(%(t)s) - pg_relation_size(%(t)s) "
                "- pg_indexes_size(%(t)s), pg_indexes_size(%(t)s), pg_total_relation_size(%(t)s) FROM " + table,
                {"t": table},
            )
            rows, heap, toast, indexes, total = cur.fetchone()
            out[table] = {
                "rows": rows,
                "heap_bytes": heap,
                "toast_bytes": toast,
                "index_bytes": indexes,
                "total_bytes": total,
                "bytes_per_row": round(total / rows) if rows else None,
            }
        cur.execute("SELECT pg_database_size(current_database())")
        out["database_bytes"] = cur.fetchone()[0]
    return out


def print_sizes(s: dict) -> None:
    print("sizes (pg_total_relation_size = heap + TOAST + indexes):")
    for table in ("features_feature", "features_activation", "features_explanation"):
        t = s[table]
        print(
            f"  {table:<22} {t['rows']:>12,} rows  heap {t['heap_bytes'] / 2**30:6.2f} GiB  TOAST "
            f"{t['toast_bytes'] / 2**30:5.2f} GiB  indexes {t['index_bytes'] / 2**30:5.2f} GiB  total "
            f"{t['total_bytes'] / 2**30:6.2f} GiB  = {t['bytes_per_row']:,} B/row"
        )
    print(f"  database total {s['database_bytes'] / 2**30:.2f} GiB")


# ------------------------------------------------------------------ server and load generators

WRK_SCRIPT = """
local paths = {}
local think = %(think)d
local n_sources, width = %(n_sources)d, %(width)d
local prefix, kind, set_name = "%(model)s", "%(kind)s", "%(set)s"

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))  -- a seed per thread
end

function request()
  local path
  if kind == "static" then
    path = "%(static)s"
  elseif kind == "floor" then
    path = "/api/bench-floor/" .. math.random(0, width - 1)
  else
    local s, i = math.random(0, n_sources - 1), math.random(0, width - 1)
    if kind == "page" then
      path = "/" .. prefix .. "/" .. s .. "-" .. set_name .. "/" .. i .. "/"
    else
      path = "/api/feature/" .. prefix .. "/" .. s .. "-" .. set_name .. "/" .. i
    end
  end
  return wrk.format("GET", path, {["X-Forwarded-Proto"] = "https", ["Accept-Encoding"] = "identity"})
end

if think > 0 then
  function delay()
    return math.floor(-think * math.log(1 - math.random()))  -- exponential pauses, mean `think` ms
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "seconds": %%.3f, "p50": %%.3f, "p95": %%.3f, "p99": %%.3f, "max": %%.3f, ' ..
    '"non2xx": %%d, "socket_errors": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(95) / 1e3,
    latency:percentile(99) / 1e3, latency.max / 1e3, e.status, e.connect + e.read + e.write + e.timeout))
end
"""

ROUTES = {
    "page": "feature dashboard page  GET /<model>/<source>/<index>/",
    "api": "feature API             GET /api/feature/<model>/<source>/<index>",
    "floor": "baseline: Django floor  GET /api/<unknown> (404 JSON: middleware + URL resolver, no view work)",
    "static": "baseline: static file   GET /static/... (WhiteNoise in the same gunicorn, no Django view)",
}


TABLES = ["features_feature", "features_activation", "features_explanation", "features_source"]


def disk_reads_mib() -> float:
    """MiB the kernel has paged in from disk since boot (/proc/vmstat pgpgin, KiB): a run that read much timed
    the disk, not the server (this machine's memory reclaim drops cached pages even with memory free)."""
    with open("/proc/vmstat") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("pgpgin ")) / 1024


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (/proc/<pid>/stat utime and stime); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _tree(root: int) -> list[int]:
    """`root` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


class CpuMeter:
    """CPU seconds the server's processes and Postgres's processes use during a run: what a request costs the
    machine, beside what it waits. A backend that exits during the run takes its share with it (the bench's
    connections are kept, so none should)."""

    def __init__(self, server_pid: int, postmaster_pid: int):
        self.roots = {"server": server_pid, "postgres": postmaster_pid}

    def snapshot(self) -> dict[str, dict[int, float]]:
        return {name: {pid: _cpu_s(pid) for pid in _tree(root)} for name, root in self.roots.items()}

    @staticmethod
    def used(before: dict, after: dict) -> dict[str, float]:
        return {name: sum(t - before[name].get(pid, 0.0) for pid, t in after[name].items()) for name in after}


def postmaster_pid() -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    with open(f"/proc/{backend}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*, port: int, workers: int, threads: int, database_url: str, log) -> subprocess.Popen:
    env = dict(
        os.environ,
        MEMICOS_ENV="production",
        MEMICOS_DEBUG="0",
        SECRET_KEY="bench-load-not-a-secret-" + "x" * 40,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        MEMICOS_TEST_DB="",
        DB_CONN_MAX_AGE="600",
        # one client IP sends every request: keep the throttle (its Redis counters cost what they cost in
        # production) but with a limit this run cannot reach
        RATE_LIMIT_API="100000000/hour",
    )
    # production serves /static/ from STATIC_ROOT, as the Docker image does after its collectstatic
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    # --keep-alive 30: clients that pause between requests keep their connection (gunicorn's default of 2 s
    # would close it under a 1 s mean think time, and every reconnect would count as a failed request).
    # --reuse-port, as docker-compose's web: without it wrk's 16 connections often all went to one process.
    cmd = [str(Path(sys.executable).parent / "gunicorn"), "memicos_site.wsgi", "--bind", f"127.0.0.1:{port}",
           "--worker-class", "memicos_site.web_worker.GateWorker", "--workers", str(workers), "--threads", str(threads),
           "--keep-alive", "30", "--log-level", "warning", "--timeout", "120", "--reuse-port"]  # fmt: skip
    # the server's log goes to a file: the floor route's 404s are logged as warnings, one line per request
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}")
        try:
            get(f"http://127.0.0.1:{port}/healthz?timeout=0.1")
            return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("gunicorn did not answer within 60 s")


def get(url: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"X-Forwarded-Proto": "https"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def static_path() -> str:
    css = sorted((ROOT / "static").rglob("*.css"))
    return "/static/" + css[0].relative_to(ROOT / "static").as_posix()


def run_wrk(*, url: str, kind: str, clients: int, seconds: int, think_ms: int, n_sources: int, width: int) -> dict:
    script = WRK_SCRIPT % {"think": think_ms, "n_sources": n_sources, "width": width, "model": MODEL_ID,
                           "kind": kind, "set": SET_NAME, "static": static_path()}  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        # 1 thread: wrk's event loop handles 16 connections on one core; a second would only take CPU from the server
        out = subprocess.run(
            ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s", "-s", f.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    stats = json.loads(re.search(r"WRK_JSON (\{.*\})", out).group(1))
    stats["rps"] = stats["requests"] / stats["seconds"]
    return stats


def run_python(*, url: str, kind: str, clients: int, seconds: int, think_ms: int, n_sources: int, width: int) -> dict:
    """The same load from `clients` threads with keep-alive connections (used when wrk is not installed)."""
    import http.client
    from urllib.parse import urlparse

    host = urlparse(url)
    latencies, errors = [], {"non2xx": 0, "socket_errors": 0}
    lock, stop = threading.Lock(), time.monotonic() + seconds
    static = static_path()

    def client(seed: int):
        rng = random.Random(seed)
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        mine = []
        while time.monotonic() < stop:
            if think_ms:
                time.sleep(rng.expovariate(1 / think_ms) / 1000)
            s, i = rng.randrange(n_sources), rng.randrange(width)
            path = {
                "page": f"/{MODEL_ID}/{s}-{SET_NAME}/{i}/",
                "api": f"/api/feature/{MODEL_ID}/{s}-{SET_NAME}/{i}",
                "floor": f"/api/bench-floor/{i}",
                "static": static,
            }[kind]
            t = time.perf_counter()
            try:
                conn.request("GET", path, headers={"X-Forwarded-Proto": "https"})
                r = conn.getresponse()
                r.read()
                mine.append((time.perf_counter() - t) * 1000)
                if not 200 <= r.status < 300 and kind != "floor":
                    with lock:
                        errors["non2xx"] += 1
            except OSError:
                with lock:
                    errors["socket_errors"] += 1
                conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    lat = sorted(latencies)
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else float("nan")  # noqa: E731
    return {"requests": len(lat), "seconds": elapsed, "rps": len(lat) / elapsed, "p50": pct(50), "p95": pct(95),
            "p99": pct(99), "max": lat[-1] if lat else float("nan"), **errors}  # fmt: skip


def server_profile(url: str, *, n_sources: int, width: int, n: int = 40) -> dict:
    """Queries per request and time per request, one at a time (no concurrency), for the two routes: the
    request path's own cost, which the concurrent figures add queueing to."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    rng = random.Random(3)
    client = Client()
    out = {}
    for kind in ("page", "api"):
        times, queries = [], []
        for k in range(n + 5):
            s, i = rng.randrange(n_sources), rng.randrange(width)
            path = (
                f"/{MODEL_ID}/{s}-{SET_NAME}/{i}/" if kind == "page" else f"/api/feature/{MODEL_ID}/{s}-{SET_NAME}/{i}"
            )
            with CaptureQueriesContext(connection) as ctx:
                t = time.perf_counter()
                r = client.get(path)
                dt = (time.perf_counter() - t) * 1000
            assert r.status_code == 200, (path, r.status_code)
            if k >= 5:
                times.append(dt)
                queries.append(len(ctx.captured_queries))
        out[kind] = {"ms_p50": statistics.median(times), "queries": max(queries)}
    return out


def sitemap_profile(*, repeats: int = 3) -> dict:
    """/sitemap.xml and its first feature file (SITEMAP_PAGE_SIZE URLs: the largest a source's can be), in-process,
    best of `repeats`: what a crawler's visit costs on this database."""
    from django.test import Client

    client, out = Client(), {}
    for name, path in (("index", "/sitemap.xml"), ("features", f"/sitemap/{MODEL_ID}/0-{SET_NAME}.xml")):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            r = client.get(path)
            times.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, (path, r.status_code)
        out[name] = {"ms": min(times), "urls": r.content.count(b"<loc>"), "mib": len(r.content) / 2**20}
    return out


# ------------------------------------------------------------------ steer admission (measurement only)


def steer_burst(*, url: str, clients: int, feature: str) -> None:
    model_id, layer, index = feature.split("/")
    body = json.dumps(
        {
            "prompt": "The weather today is",
            "modelId": model_id,
            "n_tokens": 32,
            "temperature": 0,
            "features": [{"modelId": model_id, "layer": layer, "index": int(index), "strength": 8}],
        }  # fmt: skip
    ).encode()
    try:
        get(url.rstrip("/") + "/healthz?timeout=0.2")
    except OSError as exc:
        raise SystemExit(f"no demo answers at {url} ({exc}); start one with `make demo`") from None
    results, barrier = [], threading.Barrier(clients)

    def one():
        req = urllib.request.Request(url.rstrip("/") + "/api/steer", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        barrier.wait()
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                status, text = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        except OSError as e:
            status, text = "error", str(e).encode()
        results.append((status, time.perf_counter() - t, text[:200]))

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts: dict = {}
    for status, _, _ in results:
        counts[status] = counts.get(status, 0) + 1
    print(f"{clients} concurrent POST /api/steer to {url} ({feature}, 32 tokens):")
    print("  answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str)))
    print(f"  slowest answer {max(r[1] for r in results):.1f} s; fastest {min(r[1] for r in results):.1f} s")
    for status in sorted({r[0] for r in results}, key=str):
        times = sorted(t for s, t, _ in results if s == status)
        print(f"  {status}: {len(times)} answered in {times[0]:.1f}–{times[-1]:.1f} s")
    for status, _, text in results:
        if status not in (200, 503):
            print(f"  e.g. {status}: {text.decode(errors='replace')}")
            break


# ------------------------------------------------------------------ main


def _ok(met: bool) -> str:
    return "met" if met else "NOT met"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default="bench_load", help="scratch database (kept between runs)")
    ap.add_argument("--sources", type=int, default=8)
    ap.add_argument("--width", type=int, default=131_072, help="features per source")
    ap.add_argument("--rebuild", action="store_true", help="drop the scratch database and build it again")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=int, default=30, help="seconds per run")
    ap.add_argument("--think-ms", type=int, nargs="*", default=[0, 1000],
                    help="mean pause between a client's requests, one run each (0 = closed loop)")  # fmt: skip
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="gunicorn worker processes")
    ap.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker")
    ap.add_argument("--routes", nargs="+", choices=ROUTE_ORDER, default=list(ROUTE_ORDER),
                    help="routes to time (default all; the baselines give the ratios)")  # fmt: skip
    ap.add_argument("--driver", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line (bench/run_all)")
    ap.add_argument("--steer", action="store_true", help="only the steer admission burst against a running demo")
    ap.add_argument("--steer-url", default="http://127.0.0.1:8000")
    ap.add_argument("--steer-clients", type=int, default=20)
    ap.add_argument("--steer-feature", default="smollm2-135m-instruct/9-res-brown/0", help="model/source/index")
    args = ap.parse_args()
    if args.steer:
        return steer_burst(url=args.steer_url, clients=args.steer_clients, feature=args.steer_feature)

    os.environ["MEMICOS_TEST_DB"] = args.db  # this bench's own database, whatever the shell says
    import django

    django.setup()
    from tests.conftest import test_database_url

    ensure_data(db=args.db, n_sources=args.sources, width=args.width, rebuild=args.rebuild)
    s = sizes()
    print_sizes(s)
    if args.build_only:
        return
    warmed = warm_page_cache(TABLES)
    profile = server_profile("", n_sources=args.sources, width=args.width)
    sitemap = sitemap_profile()
    port = free_port()
    server_log = tempfile.NamedTemporaryFile("w+", prefix="bench-load-gunicorn-", suffix=".log", delete=False)
    server = start_server(
        port=port, workers=args.workers, threads=args.threads, database_url=test_database_url(), log=server_log
    )
    url = f"http://127.0.0.1:{port}"
    drive = run_wrk if args.driver == "wrk" else run_python
    results, load_before = {}, os.getloadavg()[0]
    meter = CpuMeter(server.pid, postmaster_pid())
    try:
        for kind in ("page", "api"):  # warm each worker's connections and the route's code paths
            for _ in range(4 * args.workers):
                get(
                    url
                    + (f"/{MODEL_ID}/0-{SET_NAME}/1/" if kind == "page" else f"/api/feature/{MODEL_ID}/0-{SET_NAME}/1")
                )
        for think in args.think_ms:
            for kind in [k for k in ROUTE_ORDER if k in args.routes]:
                if kind in ("page", "api"):  # the machine's reclaim may have dropped pages since the last run
                    warm_page_cache(TABLES)
                paged_in, cpu_before = disk_reads_mib(), meter.snapshot()
                r = results[(think, kind)] = drive(url=url, kind=kind, clients=args.clients, seconds=args.duration,
                                                   think_ms=think, n_sources=args.sources, width=args.width)  # fmt: skip
                r["disk_read_mib"] = disk_reads_mib() - paged_in
                used = CpuMeter.used(cpu_before, meter.snapshot())
                r["cpu_ms_per_request"] = {k: v * 1000 / max(1, r["requests"]) for k, v in used.items()}
    finally:
        server.terminate()
        server.wait(30)
        server_log.seek(0)
        errors = [line for line in server_log if "ERROR" in line or "Traceback" in line]
        print(f"gunicorn log: {server_log.name} ({len(errors)} error lines)")
        for line in errors[:5]:
            print("  " + line.rstrip())

    feats, acts = s["features_feature"]["rows"], s["features_activation"]["rows"]
    print()
    print(
        f"conditions: {feats:,} features, {acts:,} activations ({acts / feats:.1f} per feature, 24–64 tokens each); "
        f"gunicorn gthread (memicos_site.web_worker.GateWorker) {args.workers} workers × {args.threads} threads, "
        "MEMICOS_ENV=production, DEBUG off; "
        f"load generator {args.driver} ({'1 thread' if args.driver == 'wrk' else f'{args.clients} Python threads'}) "
        f"on the same {os.cpu_count()}-core machine as gunicorn and Postgres; {args.clients} clients, "
        f"{args.duration} s per run; features drawn uniformly from all {feats:,}; gunicorn --keep-alive 30; "
        f"1-minute load average {load_before:.1f} before the runs, {os.getloadavg()[0]:.1f} after (other "
        "processes on the machine count too)"
    )
    print(f"page cache: {warmed}")
    print(
        "one request at a time, in-process (Django test client, no HTTP): "
        + "; ".join(f"{k} p50 {v['ms_p50']:.1f} ms, {v['queries']} SQL queries" for k, v in profile.items())
    )
    print(
        f"sitemaps, in-process: /sitemap.xml {sitemap['index']['ms']:.0f} ms ({sitemap['index']['urls']} files); "
        f"one feature file {sitemap['features']['ms']:.0f} ms ({sitemap['features']['urls']:,} URLs, "
        f"{sitemap['features']['mib']:.1f} MiB)"
    )
    verdicts = {}
    for think in args.think_ms:
        label = "closed loop, no think time" if think == 0 else f"think time: exponential pauses, mean {think} ms"
        print(f"\n{args.clients} concurrent clients, {label}:")
        for kind in [k for k in ("page", "api", "floor", "static") if (think, k) in results]:
            r = results[(think, kind)]
            errors = r["socket_errors"] + (0 if kind == "floor" else r["non2xx"])
            print(
                f"  {ROUTES[kind]}\n      p50 {r['p50']:7.1f} ms  p95 {r['p95']:7.1f} ms  p99 {r['p99']:7.1f} ms  "
                f"max {r['max']:7.1f} ms  {r['rps']:7.1f} req/s  ({r['requests']:,} requests, {errors} errors, "
                f"{r['disk_read_mib']:,.0f} MiB read from disk)"
            )
            cpu = r["cpu_ms_per_request"]
            if think == 0 and kind in ("page", "api"):
                # Closed loop on a saturated machine: throughput <= cores / CPU per request, so each client waits
                # at least clients × CPU per request / cores for its answer.
                total = sum(cpu.values())
                bound = (
                    f"; closed-loop mean latency >= {args.clients * total / os.cpu_count():.1f} ms on {os.cpu_count()} "
                    f"cores; a {TARGET_P50_MS:.0f} ms p50 needs >= {args.clients * total / TARGET_P50_MS:.1f} cores for "
                    "the server and Postgres at this CPU per request"
                )
            else:
                bound = ""
            print(f"      CPU per request: server {cpu['server']:.2f} ms, Postgres {cpu['postgres']:.2f} ms{bound}")
        for kind in [k for k in ("page", "api") if (think, k) in results]:
            r, base = results[(think, kind)], results.get((think, "floor"))
            p50_met, p99_met = r["p50"] <= TARGET_P50_MS, r["p99"] <= TARGET_P99_MS
            verdicts[(think, kind)] = p50_met and p99_met
            ratio = f"; p50 vs the Django floor: {r['p50'] / base['p50']:.1f}x" if base else ""
            print(
                f"  {kind}: p50 {r['p50']:.1f} ms (target <= {TARGET_P50_MS:.0f}: {_ok(p50_met)}), p99 {r['p99']:.1f} "
                f"ms (target <= {TARGET_P99_MS:.0f}: {_ok(p99_met)}){ratio}"
            )
    if args.json:
        print(
            "BENCH_JSON "
            + json.dumps(
                {
                    "sizes": s,
                    "profile": profile,
                    "sitemap": sitemap,
                    "runs": [{"think_ms": t, "route": k, **v} for (t, k), v in results.items()],
                    "targets": {"p50_ms": TARGET_P50_MS, "p99_ms": TARGET_P99_MS},
                }
            )
        )


if __name__ == "__main__":
    main()
