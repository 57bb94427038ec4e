"""Rebuild the full-text GIN index on Explanation.description with fastupdate off.

Why: with fastupdate on (Postgres' default) new explanations go to the index's unsorted pending list
(up to gin_pending_list_limit, 4 MB) until a vacuum merges it, and every exact-phrase search scans the
whole list. bench/search.py (1M explanations) measured a two-word phrase lookup at 110 buffers and 2.8 ms
with a 103-page pending list, 7 buffers and 0.12 ms without. Explanations are written a few at a time;
their index update is cheap next to the search latency it keeps flat.

Built concurrently under a temporary name, then swapped in, as in 0002.
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("features", "0002_explanation_embedding_hnsw_ef_construction_128"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="explanation",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.search.SearchVector("description", config="english"),
                fastupdate=False,
                name="explanation_fts_nofastupdate",
            ),
        ),
        RemoveIndexConcurrently(model_name="explanation", name="explanation_description_fts"),
        migrations.RenameIndex(
            model_name="explanation", new_name="explanation_description_fts", old_name="explanation_fts_nofastupdate"
        ),
    ]
