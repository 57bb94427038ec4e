"""Rows the loader must refuse one by one (never the whole file), and values it must not change without a word."""

import math

import pytest

from features.models import Activation, Explanation, Feature
from imports.services.loader import records_load
from tests.factories import ModelFactory, SourceFactory, SourceSetFactory

pytestmark = pytest.mark.django_db

EMBEDDING = "[" + ",".join(["0.1"] * 256) + "]"


@pytest.fixture
def source():
    model = ModelFactory(dimension=4)
    return SourceFactory(source_set=SourceSetFactory(model=model), model=model)


def _load(source, kind, records):
    return records_load(kind=kind, model_id=source.model_id, source_id=source.name, records=records)


def _features(source, n=3):
    return _load(source, "features", [{"index": i, "maxActApprox": 1.0} for i in range(n)])


def _act(i, **kw):
    return {"id": f"a{i}", "index": 0, "tokens": [" x", " y"], "values": [0.5, 1.0], **kw}


def _exp(i, **kw):
    return {"id": f"e{i}", "index": 0, "description": "birds", "embedding": EMBEDDING, **kw}


# Values json.loads lets through (NaN/Infinity, 1e400, lone surrogates) reach the loader only by the fallback
# parser or a caller's dicts; each used to raise out of the loader and fail (or, under Celery, hang) the file.
BAD_ROWS = [
    ("features", {"index": 1, "vector": 5}, "vector must be a list"),
    ("features", {"index": math.inf}, "non-integer index"),
    ("features", {"index": 1, "vector": [1.0, math.nan, 0.0, 0.0]}, "vector[1] is nan"),
    ("features", {"index": 1, "freq_hist_data_bar_heights": [1, -math.inf]}, "freq_hist_data_bar_heights[1]"),
    ("features", {"index": 1, "pos_str": ["ok", "b\ud800d"]}, "pos_str[1] is not valid UTF-8"),
    ("activations", _act(1, id=["x"]), "id must be a string"),
    ("activations", _act(1, dataSource="br\ud800own"), "dataSource is not valid UTF-8"),
    ("activations", _act(1, values=[math.nan, 1.0]), "values[0] is nan"),
    ("activations", _act(1, maxValue=math.inf), "maxValue is inf"),
    ("activations", _act(1, dataIndex=7.9), "non-integer dataIndex"),
    ("explanations", _exp(1, description="\ud800 birds"), "description is not valid UTF-8"),
    ("explanations", _exp(1, embedding=["x"] * 256), "embedding[0] is not a number"),
    ("explanations", _exp(1, embedding=[None] * 256), "embedding[0] is null"),
    ("explanations", _exp(1, embedding=[0.1] * 255 + [math.nan]), "embedding[255] is nan"),
    ("explanations", _exp(1, embedding="[" + ",".join(["0.1"] * 255) + ",NaN]"), "embedding[255] is nan"),
    ("explanations", _exp(1, typeName=["a"]), "typeName must be a string"),
    ("explanations", _exp(1, scoreV1=math.nan), "scoreV1 is nan"),
]


@pytest.mark.parametrize(("kind", "bad", "reason"), BAD_ROWS, ids=[r[2] for r in BAD_ROWS])
def test_a_bad_value_costs_its_row_with_a_reason_and_the_rest_of_the_file_loads(source, kind, bad, reason):
    _features(source)
    good = {
        "features": [{"index": 0}, {"index": 2}],
        "activations": [_act(0), _act(2)],
        "explanations": [_exp(0), _exp(2)],
    }[kind]
    r = _load(source, kind, [good[0], bad, good[1]])
    assert (r.rows_read, r.rows_skipped) == (3, 1)
    assert len(r.errors) == 1 and r.errors[0]["line"] == 2 and reason in r.errors[0]["reason"], r.errors
    if kind == "activations":
        assert set(Activation.objects.values_list("id", flat=True)) == {"a0", "a2"}
    elif kind == "explanations":
        assert set(Explanation.objects.values_list("id", flat=True)) == {"e0", "e2"}


def test_a_non_finite_nullable_number_is_stored_as_null_and_reported(source):
    r = _load(source, "features", [{"index": 0, "maxActApprox": math.nan, "frac_nonzero": "Infinity"}])
    assert r.rows_skipped == 0 and r.notes == 1
    assert [e["reason"] for e in r.errors] == [
        "maxActApprox was nan, stored as NULL (row kept)",
        "frac_nonzero was Infinity, stored as NULL (row kept)",
    ]
    f = Feature.objects.get(source=source, index=0)
    assert f.max_act_approx is None and f.frac_nonzero is None
    r = _load(source, "activations", [_act(0, dataIndex=math.inf, binMin=-math.inf)])
    assert r.rows_skipped == 0 and {e["line"] for e in r.errors} == {1} and len(r.errors) == 2
    act = Activation.objects.get(id="a0")
    assert act.data_index is None and act.bin_min is None and act.values == [0.5, 1.0]


@pytest.mark.parametrize("index", [7.9, 7.0, True, "7.9", "seven", [7]])
def test_a_fractional_boolean_or_text_index_is_refused_not_truncated(source, index):
    r = _load(source, "features", [{"index": index}])
    assert r.rows_skipped == 1 and r.errors[0]["reason"].startswith("non-integer index")
    assert not Feature.objects.filter(source=source).exists()


def test_an_index_given_as_digits_still_loads(source):
    r = _load(source, "features", [{"index": "7"}, {"index": 8}])
    assert (r.rows_loaded, r.rows_skipped) == (2, 0)


def test_a_negative_index_is_refused(source):
    r = _load(source, "features", [{"index": -1}, {"index": "-2"}, {"index": 0}])
    assert r.rows_skipped == 2 and [e["reason"] for e in r.errors] == ["negative index -1", "negative index -2"]
    assert list(Feature.objects.filter(source=source).values_list("index", flat=True)) == [0]


@pytest.mark.parametrize(
    ("tokens", "values", "reason"),
    [
        ([" a"] * 12, [1.0] * 3, "3 values for 12 tokens"),
        (None, [1.0] * 12, "tokens must be a list, missing"),
        ([" a"] * 12, None, "values must be a list, missing"),
    ],
)
def test_an_activation_needs_one_value_per_token(source, tokens, values, reason):
    _features(source)
    rec = {"id": "a0", "index": 0, "tokens": tokens, "values": values}
    r = _load(source, "activations", [{k: v for k, v in rec.items() if v is not None}])
    assert r.rows_skipped == 1 and reason in r.errors[0]["reason"]
    assert not Activation.objects.filter(id="a0").exists()


def test_an_id_of_another_source_is_reported_and_left_where_it_is(source):
    other = SourceFactory(source_set=source.source_set, model=source.model)
    _features(source)
    _features(other)
    assert _load(source, "activations", [_act(0)]).rows_loaded == 1
    assert _load(source, "explanations", [_exp(0)]).rows_loaded == 1

    r = _load(other, "activations", [_act(0, values=[9.0, 9.0]), _act(1)])
    assert (r.rows_loaded, r.rows_skipped, r.rows_unchanged) == (1, 1, 0)
    assert r.errors == [{"line": 1, "reason": f"id 'a0' already belongs to source {source.model_id}/{source.name} "
                                              "(row not loaded)"}]  # fmt: skip
    r = _load(other, "explanations", [_exp(0, description="moved")])
    assert r.rows_skipped == 1 and "already belongs to source" in r.errors[0]["reason"]

    act, exp = Activation.objects.get(id="a0"), Explanation.objects.get(id="e0")
    assert act.feature.source == source and act.values == [0.5, 1.0]
    assert exp.feature.source == source and exp.source == source and exp.description == "birds"
    # the owner can still update its own rows
    assert _load(source, "activations", [_act(0, values=[2.0, 2.0])]).rows_loaded == 1
