import io

import pytest
from django.core.management import call_command
from django.db import transaction

from features.models import Activation, ExplanationType, Feature
from imports.services.loader import LoadResult, records_load
from tests.factories import ModelFactory, SourceFactory, SourceSetFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def source():
    model = ModelFactory(dimension=4)
    return SourceFactory(source_set=SourceSetFactory(model=model), model=model)


def test_records_load_upserts_wire_records_inside_the_callers_transaction(source):
    feats = [{"index": i, "maxActApprox": 1.0 + i, "pos_str": [" a"], "vector": []} for i in range(3)]
    acts = [{"id": f"a{i}", "index": i % 3, "tokens": [" x", " y"], "values": [0.5, 2.0 + i]} for i in range(6)]
    with transaction.atomic():
        r = records_load(kind="features", model_id=source.model_id, source_id=source.name, records=feats)
        assert isinstance(r, LoadResult) and (r.rows_read, r.rows_loaded, r.rows_skipped) == (3, 3, 0)
        r = records_load(kind="activations", model_id=source.model_id, source_id=source.name, records=acts)
        assert r.rows_loaded == 6
    assert Activation.objects.get(id="a4").feature.index == 1
    acts[4]["values"] = [9.0, 9.5]
    acts.append({"id": "orphan", "index": 77, "tokens": ["z"], "values": [1.0]})
    r = records_load(kind="activations", model_id=source.model_id, source_id=source.name, records=acts)
    assert (r.rows_loaded, r.rows_unchanged, r.rows_skipped) == (1, 5, 1)
    assert r.errors == [{"line": 7, "reason": f"feature 77 does not exist in {source.model_id}/{source.name}"}]
    assert Activation.objects.get(id="a4").values == [9.0, 9.5]


def test_records_load_ignores_an_unknown_column_and_names_it_once(source):
    """Neuronpedia adds columns to its exports over time: a new column is a warning, never the batch's end."""
    feats = [{"index": 0, "bogus": 1}, {"index": 1, "bogus": 2, "newer": "x"}, {"index": 2}]
    r = records_load(kind="features", model_id=source.model_id, source_id=source.name, records=feats)
    assert (r.rows_loaded, r.rows_skipped, r.errors) == (3, 0, [])
    assert r.warnings == ["unknown column(s) bogus, newer for features ignored"]
    assert Feature.objects.filter(source=source).count() == 3


def test_records_load_checks_vector_dimension_and_strips_nul(source):
    feats = [{"index": 0, "vector": [1.0, 2.0]}, {"index": 1, "pos_str": ["a\x00b"], "vector": [1, 2, 3, 4]}]
    r = records_load(kind="features", model_id=source.model_id, source_id=source.name, records=feats)
    assert r.rows_skipped == 1 and "model dimension is 4" in r.errors[0]["reason"]
    assert Feature.objects.get(source=source, index=1).pos_str == ["ab"]


def test_token_arrays_keep_every_character_and_a_malformed_array_skips_only_its_row(source):
    """Tokens and values are staged as Postgres array literals made from orjson's text (quotes, backslashes,
    control characters, braces, commas, the word NULL and non-ASCII must come back as they went in)."""
    records_load(kind="features", model_id=source.model_id, source_id=source.name, records=[{"index": 0}])
    odd = ['a"b', "c\\d", "\\n", "tab\there", "nl\nx", "cr\r", "", " ", "é 😀", "NULL", "null", "{", "}", ",", "[x]"]
    acts = [
        {"id": "odd", "index": 0, "tokens": odd, "values": [0.5, -1e-05, 3.25e10] + [0.0] * 12},
        {"id": "plain", "index": 0, "tokens": ["x", None], "values": [1.0, 0.0]},
        {"id": "nested", "index": 0, "tokens": [["x"]], "values": [1.0]},
        {"id": "text", "index": 0, "tokens": "x y", "values": [1.0]},
    ]
    r = records_load(kind="activations", model_id=source.model_id, source_id=source.name, records=acts)
    assert (r.rows_loaded, r.rows_skipped) == (2, 2)
    assert [e["line"] for e in r.errors] == [3, 4] and "flat list" in r.errors[0]["reason"]
    assert "must be a list, not str" in r.errors[1]["reason"]
    stored = Activation.objects.get(id="odd")
    assert stored.tokens == odd and stored.values == [0.5, -1e-05, 3.25e10] + [0.0] * 12
    assert Activation.objects.get(id="plain").tokens == ["x", None]


def test_cli_lists_remote_sources_and_imports_config(s3_endpoint, small_dataset):
    origin = ["--bucket", small_dataset["bucket"], "--prefix", "v1/", "--endpoint-url", s3_endpoint]
    out = io.StringIO()
    call_command("list_remote", *origin, stdout=out)
    assert out.getvalue().split() == ["tiny-gpt"]
    out = io.StringIO()
    call_command("list_remote", "tiny-gpt", *origin, stdout=out)
    text = out.getvalue()
    assert "res-tt  (0 of 2 downloaded)" in text and "0-att-tt" in text and "absent" in text
    out = io.StringIO()
    call_command("import_config", *origin, stdout=out)
    assert "explanation_type.jsonl: 1 row(s)" in out.getvalue()
    assert ExplanationType.objects.get(name="oai_token-act-pair").display_name == "OpenAI token-activation pairs"
