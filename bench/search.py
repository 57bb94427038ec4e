"""Explanation search at scale: p50/p95 latency of POST /api/explanation/search-all and recall@20 of its
HNSW results against exact (sequential-scan) search, measured in the same run.

    python bench/search.py [--n 1000000] [--queries 200] [--rebuild]

Uses a scratch database (`bench_search`, kept between runs; `--rebuild` reloads it). Data: N synthetic
384-d unit vectors drawn around 2,000 topic centres grouped in 50 themes (explanation embeddings are
clustered by topic; uniform random vectors would be an unrealistically hard case for any ANN index), loaded with COPY, then
the HNSW index (m=16, ef_construction=64, the migration's) built with maintenance_work_mem and parallel
workers. Queries are held-out points from the same distribution. The API is called in-process through
Django's test client (full middleware + DRF + visibility joins, no network); the query embedding comes from
the API's query cache, pre-filled with the query vector, so the latency is the search itself (one
all-MiniLM-L6-v2 query embedding on CPU is measured separately and printed). Targets: p50 ≤ 25 ms,
recall@20 ≥ 0.95.
"""

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MEMICOS_ENV", "test")
os.environ.setdefault("MEMICOS_TEST_DB", "bench_search")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memicos_site.settings")

import numpy as np  # noqa: E402

DIM = 384
MODEL_ID = "bench-search"
VOCAB = 20_000  # synthetic description words
SOURCE = "0-bench"


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

    from features.models import Model, Source, SourceSet

    model, _ = Model.objects.get_or_create(id=MODEL_ID, defaults={"display_name": "bench (synthetic vectors)"})
    sset, _ = SourceSet.objects.get_or_create(model=model, name="bench")
    source, _ = Source.objects.get_or_create(model=model, name=SOURCE, source_set=sset)
    with connection.cursor() as cur:
        cur.execute("DELETE FROM features_explanation WHERE source_id = %s", [source.pk])
        cur.execute("DELETE FROM features_feature WHERE source_id = %s", [source.pk])
        cur.execute("DROP INDEX IF EXISTS explanation_embedding_hnsw")
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
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            block = vectors(rng, hi - lo, centres)
            words = rng.integers(0, VOCAB, size=(hi - lo, 5))
            buf = io.StringIO()
            for k, i in enumerate(range(lo, hi)):
                vec = "[" + ",".join(f"{x:.5f}" for x in block[k]) + "]"
                text = " ".join(f"w{w}" for w in words[k])  # varied words, like real explanations
                buf.write(f"b{i}\t{ids[i]}\t{MODEL_ID}\t{source.pk}\t{text}\t{vec}\t\t0\tnow\tnow\t\n")
            with cur.copy(
                "COPY features_explanation (id, feature_id, model_id, source_id, description, embedding, notes, "
                "score_v1, created_at, updated_at, prompt_version) FROM STDIN"
            ) as copy:
                copy.write(buf.getvalue())
            raw.commit()
            print(f"  loaded {hi:,}/{n:,} rows ({time.perf_counter() - started:.0f} s)", flush=True)
        t = time.perf_counter()
        cur.execute("SET maintenance_work_mem = '2GB'")
        cur.execute("SET max_parallel_maintenance_workers = 2")
        cur.execute(
            "CREATE INDEX explanation_embedding_hnsw ON features_explanation USING hnsw (embedding vector_cosine_ops) "
            "WITH (m = 16, ef_construction = 64)"
        )
        cur.execute("ANALYZE features_explanation")
        raw.commit()
        print(f"  HNSW built in {time.perf_counter() - t:.0f} s; load total {time.perf_counter() - started:.0f} s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client

    connection.creation.create_test_db(verbosity=0, keepdb=True)
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

    client = Client()
    latencies, recalls = [], []
    import hashlib

    for q, vec in enumerate(queries):
        text = f"w{q % VOCAB} w{(7 * q + 3) % VOCAB}"  # a two-word phrase, as users type
        key = "aiq:" + hashlib.sha256(f"{LOCAL.name}\0{text}".encode()).hexdigest()
        cache.set(key, vec.tolist(), 3600)
        t = time.perf_counter()
        response = client.post("/api/explanation/search-all", {"query": text}, content_type="application/json")
        latencies.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 200, response.content
        got = {r["index"] for r in response.json()["results"]}
        exact = explanation_search_exact(user=None, vector=vec.tolist(), limit=20)
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
    print(f"rows: {Explanation.objects.filter(model_id=MODEL_ID).count():,} x {DIM}-d; queries: {len(queries)}")
    print(f"search-all API latency: p50 {p50:.1f} ms, p95 {p95:.1f} ms (target p50 <= 25 ms)")
    print(f"recall@20 vs exact search: mean {statistics.mean(recalls):.3f}, min {min(recalls):.2f} (target >= 0.95)")
    print(f"query embedding (all-MiniLM-L6-v2, CPU, uncached): {embed_ms:.1f} ms per query")


if __name__ == "__main__":
    main()
