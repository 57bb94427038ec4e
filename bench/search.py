"""Explanation search at scale: p50/p95 latency of POST /api/explanation/search-all and recall@20 of its
HNSW results against exact (sequential-scan) search, measured in the same run.

    python bench/search.py [--n 1000000] [--queries 200] [--rebuild] [--ef-search N]

Uses a scratch database (`bench_search`, kept between runs; `--rebuild` reloads it). Data: N synthetic
384-d unit vectors drawn around 2,000 topic centres grouped in 50 themes (explanation embeddings are
clustered by topic; uniform random vectors would be an unrealistically hard case for any ANN index),
loaded with binary COPY, then the HNSW index built as the migrations define it (parameters read from
the migration state, not repeated here) with 4 GB maintenance_work_mem and 2 parallel workers; those are
set on the scratch database, so a new index migration applied to a loaded database rebuilds it the same
way. The build time is recorded on the index and printed by every run.

Queries are held-out points from the same distribution, each with a two-word phrase. The API is called
in-process through Django's test client (full middleware + DRF + visibility + serialization, no network);
the query embedding comes from the API's query cache, pre-filled with the query vector, so the latency is
the search itself (one all-MiniLM-L6-v2 query embedding on CPU is measured separately and printed). The
baseline, measured in the same run on the same queries, is the exact search (sequential scan) that
supplies the recall ground truth. Targets: p50 <= 25 ms, recall@20 >= 0.95.
"""

import argparse
import hashlib
import io
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MEMICOS_ENV", "test")
os.environ.setdefault("MEMICOS_TEST_DB", "bench_search")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memicos_site.settings")

import numpy as np  # noqa: E402
from pagecache import warm_page_cache  # noqa: E402  (bench/pagecache.py)

DIM = 384
MODEL_ID = "bench-search"
VOCAB = 20_000  # synthetic description words
SOURCE = "0-bench"
INDEX = "explanation_embedding_hnsw"
FTS_INDEX = "explanation_description_fts"  # rebuilt after a load too: one bulk build beats 1M inserts


def topic_centres(rng) -> np.ndarray:
    """2,000 topic centres around 50 broad themes (cos ≈ 0.7 to their theme)."""
    themes = rng.standard_normal((50, DIM)).astype(np.float32)
    return themes[rng.integers(0, 50, size=2000)] + rng.standard_normal((2000, DIM)).astype(np.float32)


def vectors(rng, n: int, centres: np.ndarray) -> np.ndarray:
    """Unit vectors at cos ≈ 0.75 to a random topic centre."""
    picks = rng.integers(0, len(centres), size=n)
    v = centres[picks] + rng.standard_normal((n, DIM)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def load(n: int, centres, rng) -> None:
    from django.db import connection
    from pgvector.psycopg.vector import register_vector_info
    from psycopg.types import TypeInfo

    from features.models import Model, Source, SourceSet

    model, _ = Model.objects.get_or_create(id=MODEL_ID, defaults={"display_name": "bench (synthetic vectors)"})
    sset, _ = SourceSet.objects.get_or_create(model=model, name="bench")
    source, _ = Source.objects.get_or_create(model=model, name=SOURCE, source_set=sset)
    with connection.cursor() as cur:
        cur.execute("DELETE FROM features_explanation WHERE source_id = %s", [source.pk])
        cur.execute("DELETE FROM features_feature WHERE source_id = %s", [source.pk])
        cur.execute(f"DROP INDEX IF EXISTS {INDEX}")
        cur.execute(f"DROP INDEX IF EXISTS {FTS_INDEX}")
    started = time.perf_counter()
    chunk = 50_000
    raw = connection.connection  # psycopg 3
    with raw.cursor() as cur:
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            with cur.copy(
                "COPY features_feature (model_id, source_id, index, has_vector, vector, vector_label, hook_name, "
                "topk_cos_sim_indices, topk_cos_sim_values, neuron_alignment_indices, neuron_alignment_values, "
                "neuron_alignment_l1, correlated_neurons_indices, correlated_neurons_pearson, correlated_neurons_l1, "
                "correlated_features_indices, correlated_features_pearson, correlated_features_l1, neg_str, "
                "neg_values, pos_str, pos_values, freq_hist_data_bar_heights, freq_hist_data_bar_values, "
                "logits_hist_data_bar_heights, logits_hist_data_bar_values, decoder_weights_dist, created_at, "
                "max_act_approx) FROM STDIN"
            ) as copy:
                empty = "\t".join(["{}"] * 20)
                buf = io.StringIO()
                for i in range(lo, hi):
                    buf.write(f"{MODEL_ID}\t{source.pk}\t{i}\tf\t{{}}\t\t\t{empty}\tnow\t1\n")
                copy.write(buf.getvalue())
        raw.commit()
        cur.execute("SELECT index, id FROM features_feature WHERE source_id = %s", [source.pk])
        ids = dict(cur.fetchall())
        # binary vector dumper on this cursor only: the ORM's connection keeps its own adapters
        register_vector_info(cur, TypeInfo.fetch(raw, "vector"))
        created = datetime.now(UTC)
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            block = vectors(rng, hi - lo, centres)
            words = rng.integers(0, VOCAB, size=(hi - lo, 5))
            # binary COPY: formatting 384 floats per row as text cost ~1.5 s per 1,000 rows in Python
            with cur.copy(
                "COPY features_explanation (id, feature_id, model_id, source_id, description, embedding, notes, "
                "score_v1, created_at, updated_at, prompt_version) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(
                    ["text", "int8", "text", "int8", "text", "vector", "text", "float8", "timestamptz",
                     "timestamptz", "text"]
                )  # fmt: skip
                for k, i in enumerate(range(lo, hi)):
                    text = " ".join(f"w{w}" for w in words[k])  # varied words, like real explanations
                    copy.write_row(
                        (f"b{i}", ids[i], MODEL_ID, source.pk, text, block[k], "", 0.0, created, created, "")
                    )
            raw.commit()
            print(f"  loaded {hi:,}/{n:,} rows ({time.perf_counter() - started:.0f} s)", flush=True)
        cur.execute(index_create_sql(FTS_INDEX))
        raw.commit()
        t = time.perf_counter()
        cur.execute(index_create_sql(INDEX))  # maintenance_work_mem and workers: the database's, see scratch_db()
        note = f"{hnsw_params()} over {n:,} rows built in {time.perf_counter() - t:.0f} s on {os.cpu_count()} cores"
        cur.execute(f"COMMENT ON INDEX {INDEX} IS '{note}'")
        cur.execute("ANALYZE features_explanation")
        raw.commit()
        print(f"  {note}; load total {time.perf_counter() - started:.0f} s")


def _migrated_index(name: str):
    """An index of Explanation as the migrations leave it (not hand SQL, not models.py)."""
    from django.db.migrations.loader import MigrationLoader

    state = MigrationLoader(None, ignore_no_migrations=True).project_state()
    return state, next(i for i in state.models["features", "explanation"].options["indexes"] if i.name == name)


def hnsw_params() -> str:
    index = _migrated_index(INDEX)[1]
    return f"HNSW (m={index.m}, ef_construction={index.ef_construction})"


def index_create_sql(name: str) -> str:
    from django.db import connection

    state, index = _migrated_index(name)
    with connection.schema_editor(atomic=False, collect_sql=True) as editor:
        return str(index.create_sql(state.apps.get_model("features", "Explanation"), editor))


def scratch_db(name: str) -> str | None:
    """Make sure the scratch database exists with index-build settings; return its HNSW index definition.

    maintenance_work_mem: the 1M-row graph (~2.2 kB a node) must fit in memory, or pgvector falls back to
    a much slower on-disk build; set on the database so that a migration that rebuilds the index (a
    keepdb run applying a new index migration to a loaded database) gets it as well as load().
    """
    import psycopg
    from django.db import connection

    with connection._nodb_cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if not cur.fetchone():
            cur.execute(f'CREATE DATABASE "{name}"')
        cur.execute(f"ALTER DATABASE \"{name}\" SET maintenance_work_mem = '4GB'")
        cur.execute(f'ALTER DATABASE "{name}" SET max_parallel_maintenance_workers = 2')
    params = {**connection.get_connection_params(), "dbname": name}
    with psycopg.connect(**params, autocommit=True) as conn:
        row = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [INDEX]).fetchone()
    return row[0] if row else None


def index_after_migrations(before: str | None, *, migrated_s: float) -> None:
    """Note the build time when a new index migration rebuilt the HNSW index over loaded rows; build the
    indexes a load dropped if it was interrupted before rebuilding them."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM features_explanation WHERE model_id = %s", [MODEL_ID])
        rows = cur.fetchone()[0]
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN (%s, %s)", [INDEX, FTS_INDEX])
        found = dict(cur.fetchall())
        if not rows:
            return
        if FTS_INDEX not in found:
            cur.execute(index_create_sql(FTS_INDEX))
        if INDEX not in found:
            t = time.perf_counter()
            cur.execute(index_create_sql(INDEX))
            what = f"built in {time.perf_counter() - t:.0f} s"
        elif before and found[INDEX] != before:
            what = f"rebuilt by migrations in {migrated_s:.0f} s"
        else:
            return
        note = f"{hnsw_params()} over {rows:,} rows {what} on {os.cpu_count()} cores"
        cur.execute(f"COMMENT ON INDEX {INDEX} IS '{note}'")
        print(f"  {note}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--ef-search", type=int, help="hnsw.ef_search for this run (AUTOINTERP_HNSW_EF_SEARCH)")
    args = parser.parse_args()
    if args.ef_search:
        os.environ["AUTOINTERP_HNSW_EF_SEARCH"] = str(args.ef_search)

    import django

    django.setup()
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client

    before = scratch_db(connection.creation._get_test_db_name())
    t = time.perf_counter()
    # serialize=False: serializing the DB (for TransactionTestCase rollbacks) would read every row
    connection.creation.create_test_db(verbosity=0, keepdb=True, serialize=False)
    index_after_migrations(before, migrated_s=time.perf_counter() - t)
    from autointerp import conf
    from autointerp.embeddings import LOCAL
    from autointerp.selectors import explanation_search_exact
    from features.models import Explanation

    rng = np.random.default_rng(7)
    centres = topic_centres(rng)
    count = Explanation.objects.filter(model_id=MODEL_ID).count()
    if args.rebuild or count != args.n:
        print(f"loading {args.n:,} explanation vectors (found {count:,})")
        load(args.n, centres, rng)
    queries = vectors(np.random.default_rng(99), args.queries, centres)

    warmed = warm_page_cache(["features_explanation", "features_feature", "features_activation", "features_source"])
    client = Client()
    latencies, results = [], []
    # The API calls run back to back, the exact scans (2 GB each at 1M rows) afterwards: interleaved,
    # each scan would evict what the next search reads and take the CPU from under it.
    for q, vec in enumerate(queries):
        text = f"w{q % VOCAB} w{(7 * q + 3) % VOCAB}"  # a two-word phrase, as users type
        key = "aiq:" + hashlib.sha256(f"{LOCAL.name}\0{text}".encode()).hexdigest()
        cache.set(key, vec.tolist(), 3600)
        t = time.perf_counter()
        response = client.post("/api/explanation/search-all", {"query": text}, content_type="application/json")
        latencies.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 200, response.content
        results.append({r["index"] for r in response.json()["results"]})
    exact_ms, recalls = [], []
    for vec, got in zip(queries, results, strict=True):
        t = time.perf_counter()
        exact = explanation_search_exact(user=None, vector=vec.tolist(), limit=20)
        exact_ms.append((time.perf_counter() - t) * 1000)
        truth = {i[1:] for i in exact}  # ids are b<index>
        recalls.append(len(got & truth) / 20)
    from inference.runtime.embedder import embed

    embed(["warm up"])
    t = time.perf_counter()
    for q in range(20):
        embed([f"features about parrots {q}"])
    embed_ms = (time.perf_counter() - t) * 1000 / 20
    lat = sorted(latencies[5:])  # the first few warm caches and connections
    p50, p95 = statistics.median(lat), lat[int(0.95 * (len(lat) - 1))]
    exact_p50 = statistics.median(exact_ms[5:])
    recall = statistics.mean(recalls)
    rows = Explanation.objects.filter(model_id=MODEL_ID).count()
    print(f"rows: {rows:,} x {DIM}-d; queries: {len(queries)}; hnsw.ef_search {conf.hnsw_ef_search()}; {build_note()}")
    print(f"search-all API latency: p50 {p50:.1f} ms, p95 {p95:.1f} ms (target p50 <= 25 ms: {_ok(p50 <= 25)})")
    print(
        f"recall@20 vs exact search: mean {recall:.3f}, min {min(recalls):.2f} (target >= 0.95: {_ok(recall >= 0.95)})"
    )
    print(
        f"baseline, same run: exact search (sequential scan, selector only) p50 {exact_p50:.0f} ms; "
        f"the whole API request over HNSW is {exact_p50 / p50:.1f}x faster"
    )
    print(f"query embedding (all-MiniLM-L6-v2, CPU, uncached): {embed_ms:.1f} ms per query")
    print(f"page cache: {warmed}")


def _ok(met: bool) -> str:
    return "met" if met else "NOT met"


def build_note() -> str:
    """The build time the last load recorded on the index (the scratch DB is kept between runs)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(f"SELECT obj_description('{INDEX}'::regclass, 'pg_class')")
        return cur.fetchone()[0] or "HNSW build time not recorded"


if __name__ == "__main__":
    main()
