"""Rebuild the HNSW index on Explanation.embedding with ef_construction 128 (was 64); m stays 16.

Why: explanation embeddings cluster by topic, and with ef_construction 64 an HNSW graph over them falls
apart into per-topic islands that a search reaches only through a few links. bench/search.py (1M
clustered 384-d vectors, 200 queries) measured ~2.5% of queries ending in a wrong island (recall@20 ≈ 0)
at any affordable ef_search: mean recall@20 0.937 at ef_search 200, 0.953 at 400. Over 300k of the same
vectors and 1,000 queries, ef_construction 128 raised recall@20 at ef_search 200 from 0.966 to 0.981
(m 24 or 32 at ef_construction 64: 0.972, 0.974, with a dearer walk per query); search cost does not
depend on ef_construction, build time about doubles.

The new index is built concurrently under a temporary name (writes go on, and searches keep using the
old index meanwhile), then swapped in under the old name. Give the session building it enough
maintenance_work_mem for the graph (about 2.2 kB per 384-d row), or pgvector switches to a far slower
on-disk build.
"""

import pgvector.django.indexes
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("features", "0001_initial"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="explanation",
            index=pgvector.django.indexes.HnswIndex(
                ef_construction=128,
                fields=["embedding"],
                m=16,
                name="explanation_emb_hnsw_efc128",
                opclasses=["vector_cosine_ops"],
            ),
        ),
        RemoveIndexConcurrently(model_name="explanation", name="explanation_embedding_hnsw"),
        migrations.RenameIndex(
            model_name="explanation", new_name="explanation_embedding_hnsw", old_name="explanation_emb_hnsw_efc128"
        ),
    ]
