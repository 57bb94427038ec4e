"""A first import's activations go straight into their table by one COPY; anything that COPY refuses must still end
as the checked path ends: each refused row reported with its line, the rest loaded, or the whole file refused."""

import pytest
from django.db import connection

from features.models import Activation
from imports.services import loader
from imports.services.loader import LoadError
from tests.factories import ModelFactory, SourceFactory, SourceSetFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def source():
    model = ModelFactory(dimension=4)
    return SourceFactory(source_set=SourceSetFactory(model=model), model=model)


def _load(source, kind, records, creator_id=None):
    return loader.rows_load(kind=kind, model_id=source.model_id, source_id=source.name,
                            numbered=enumerate(records, 1), creator_id=creator_id, direct_copy=True)  # fmt: skip


def _act(i, **kw):
    return {"id": f"a{i}", "index": i % 3, "tokens": [" x", " y"], "values": [0.5, 1.0], **kw}


def _features(source):
    assert _load(source, "features", [{"index": i} for i in range(3)]).rows_loaded == 3


def _rows(ids):
    fields = ("id", "feature__index", "tokens", "values", "data_source", "max_value", "dfa_values", "creator_id")
    return list(Activation.objects.filter(id__in=ids).order_by("id").values_list(*fields))


def _spy(monkeypatch) -> list:
    """The direct COPY's outcomes: the row count, or None when it fell back to the stage."""
    outcomes, real = [], loader._copy_direct

    def spy(*args):
        loaded, spool = real(*args)
        outcomes.append(loaded)
        return loaded, spool

    monkeypatch.setattr(loader, "_copy_direct", spy)
    return outcomes


def test_the_direct_copy_stores_what_the_staged_insert_stores(source, monkeypatch):
    """Same rows, one file through the direct COPY (no creator) and one through the stage (a creator): the defaults
    filled in for missing values and the timestamps agree."""
    _features(source)
    direct_copies = _spy(monkeypatch)
    sparse = [{"id": f"{p}{i}", "index": i, "tokens": [" a\tb"], "values": [1.5]} for p in "ds" for i in range(3)]
    r = _load(source, "activations", sparse[:3])
    assert (r.rows_loaded, r.rows_unchanged, r.errors) == (3, 0, [])
    assert direct_copies == [3]
    user = UserFactory()
    assert _load(source, "activations", sparse[3:], creator_id=user.pk).rows_loaded == 3
    direct, staged = _rows(["d0", "d1", "d2"]), _rows(["s0", "s1", "s2"])
    assert [row[1:-1] for row in direct] == [row[1:-1] for row in staged]
    assert direct[0][2:7] == ([" a\tb"], [1.5], "", 0.0, [])
    assert {row[-1] for row in direct} == {None} and {row[-1] for row in staged} == {user.pk}
    with connection.cursor() as c:  # created_at is the loading transaction's now(), as the INSERT's default was
        c.execute(f"SELECT count(DISTINCT created_at) FROM {Activation._meta.db_table} WHERE id IN ('d0','d1','d2')")
        assert c.fetchone()[0] == 1
    # a re-run is a no-op through the fallback
    r = _load(source, "activations", sparse[:3])
    assert (r.rows_loaded, r.rows_unchanged, r.rows_skipped) == (0, 3, 0) and direct_copies == [3, None]


@pytest.mark.parametrize("spool_memory", [loader.SPOOL_MEMORY, 4096], ids=["in memory", "spilled to disk"])
def test_an_id_of_another_source_deep_in_a_first_import_is_refused_with_its_line(source, monkeypatch, spool_memory):
    """The taken id sits past the first COPY messages, so the direct COPY fails mid-file; every row still reaches
    the stage, the taken one is reported with its line and the others load."""
    monkeypatch.setattr(loader, "SPOOL_MEMORY", spool_memory)
    direct_copies = _spy(monkeypatch)
    other = SourceFactory(source_set=source.source_set, model=source.model)
    _features(source)
    _features(other)
    assert _load(other, "activations", [_act(5000)]).rows_loaded == 1
    n = 6000  # ~100 bytes a row: a few COPY_CHUNKs
    r = _load(source, "activations", [_act(i) for i in range(n)])
    assert (r.rows_read, r.rows_loaded, r.rows_skipped, r.rows_retryable) == (n, n - 1, 1, 1)
    assert direct_copies == [1, None]
    assert r.errors == [{"line": 5001, "reason": f"id 'a5000' already belongs to source {other.model_id}/{other.name} "
                                                 "(row not loaded)"}]  # fmt: skip
    assert Activation.objects.filter(feature__source=source).count() == n - 1
    assert Activation.objects.get(id="a5000").feature.source == other


def test_a_value_postgres_refuses_in_a_first_import_fails_the_file_naming_its_line(source, monkeypatch):
    """data_source is varchar(255): the direct COPY refuses the row, the stage COPY refuses it again and names the
    file's line; nothing of the file is written."""
    _features(source)
    rows = [_act(i) for i in range(5)]
    rows[3]["dataSource"] = "x" * 300
    direct_copies = _spy(monkeypatch)
    with pytest.raises(LoadError) as err:
        _load(source, "activations", rows)
    assert "too long" in err.value.reason and "(file line 4)" in err.value.reason
    assert not Activation.objects.filter(feature__source=source).exists() and direct_copies == [None]
