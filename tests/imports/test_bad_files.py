"""Bad files and bad metadata end their file or their run with a report; nothing is left running for ever."""

import json
from datetime import UTC, datetime

import pytest

from features.models import Activation, Explanation, Feature, Job, Model, Source, SourceRelease
from imports.models import ImportFile, ImportRun
from imports.recovery import import_runs_recover
from imports.services.importer import import_run_create
from tests.imports.dataset import DatasetSpec, SourceSpec, gz, s3_put, write_dataset
from tests.imports.helpers import params, run_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(s3_client, new_bucket, no_aws_credentials):
    bucket = new_bucket()
    spec = DatasetSpec(sources=[SourceSpec("3-res-x", n_features=6, acts_per_feature=2, batch_size=8)])
    rows = write_dataset(s3_put(s3_client, bucket, "v1/"), spec)["3-res-x"]
    return {"bucket": bucket, "rows": rows, "put": s3_put(s3_client, bucket, "v1/"), "client": s3_client}


def _file(key_tail: str) -> ImportFile:
    return ImportFile.objects.get(source_id="3-res-x", key__endswith=key_tail)


def test_odd_lines_cost_their_row_and_the_rest_of_the_file_loads(s3_endpoint, dataset):
    acts = [json.dumps(a).encode() for a in dataset["rows"]["activations"]]
    acts[1] = b"[" * 100_000 + b"]" * 100_000  # deeper than json's recursion limit
    acts[2] = json.dumps(dict(dataset["rows"]["activations"][2], values=[float("nan")] * 12)).encode()
    acts[3] = json.dumps(dict(dataset["rows"]["activations"][3], dataIndex=float("inf"))).encode()
    acts[4] = json.dumps(dict(dataset["rows"]["activations"][4], id=["x"])).encode()
    acts[5] = json.dumps(dict(dataset["rows"]["activations"][5], dataSource="br\ud800own")).encode()
    acts[6] = json.dumps(dict(dataset["rows"]["activations"][6], values=[1.0] * 3)).encode()
    dataset["put"]("tiny-gpt/3-res-x/activations/batch-0.jsonl.gz", gz([a + b"\n" for a in acts]))
    feats = [dict(f) for f in dataset["rows"]["features"]]
    feats[4]["index"], feats[5]["index"] = 7.9, -1  # activations refer to features 0-3 only
    feats.append(dict(feats[0], index="6", vector=5))
    dataset["put"]("tiny-gpt/3-res-x/features/batch-0.jsonl.gz", gz(feats))

    run = run_import(params(s3_endpoint, dataset["bucket"]), "tiny-gpt", "3-res-x")
    # the 4 activations of the two refused features cannot load: their file is not DONE, and the run says so
    assert run.job.status == Job.Status.FAILED and "activations/batch-0.jsonl.gz" in run.job.error, run.job.error

    f = _file("activations/batch-0.jsonl.gz")
    reasons = {e["line"]: e["reason"] for e in f.errors}
    assert f.status == ImportFile.Status.FAILED and (f.rows_skipped, f.rows_waiting) == (5, 4)
    assert f.rows_loaded == len(acts) - 9  # the rows that could load did
    assert f.errors[-1]["reason"].startswith("4 row(s) name features that no loaded feature file holds")
    assert reasons[2] == "malformed JSON: nested too deeply"
    assert reasons[3] == "values[0] is nan"
    assert reasons[4] == "dataIndex was inf, stored as NULL (row kept)"
    assert reasons[5].startswith("id must be a string") and "not valid UTF-8" in reasons[6]
    assert "3 values for 12 tokens" in reasons[7]
    assert Activation.objects.get(id=dataset["rows"]["activations"][3]["id"]).data_index is None
    f = _file("features/batch-0.jsonl.gz")
    assert [(e["line"], e["reason"]) for e in f.errors] == [
        (5, "non-integer index: 7.9"),
        (6, "negative index -1"),
        (7, "vector must be a list, not int"),
    ]
    assert sorted(Feature.objects.filter(source__name="3-res-x").values_list("index", flat=True)) == [0, 1, 2, 3]


def test_an_empty_gzip_file_fails_with_a_report(s3_endpoint, dataset):
    dataset["put"]("tiny-gpt/3-res-x/explanations/batch-1.jsonl.gz", b"")
    run = run_import(params(s3_endpoint, dataset["bucket"]), "tiny-gpt", "3-res-x")
    f = _file("explanations/batch-1.jsonl.gz")
    assert f.status == ImportFile.Status.FAILED and f.errors[-1]["reason"] == "bad gzip: empty file"
    assert run.job.status == Job.Status.FAILED


def test_upstream_created_at_is_kept_on_the_first_import(s3_endpoint, dataset):
    meta = "tiny-gpt/3-res-x/"
    source_row = json.loads(
        dataset["client"].get_object(Bucket=dataset["bucket"], Key=f"v1/{meta}source.jsonl")["Body"].read()
    )
    dataset["put"](meta + "source.jsonl", json.dumps(dict(source_row, createdAt="2023-02-03T04:05:06Z")).encode())
    run_import(params(s3_endpoint, dataset["bucket"]), "tiny-gpt", "3-res-x")
    assert Model.objects.get(pk="tiny-gpt").created_at == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert SourceRelease.objects.get(name="tiny-gpt-release").created_at == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert Source.objects.get(name="3-res-x").created_at == datetime(2023, 2, 3, 4, 5, 6, tzinfo=UTC)


BAD_METADATA = [
    ("tiny-gpt/3-res-x/model.jsonl", b'{"id": "tiny-gpt", "dimension": \n', "model.jsonl line 1: malformed JSON"),
    ("tiny-gpt/3-res-x/release.jsonl", b'{"visibility": "PUBLIC"}\n', "release.jsonl line 1: name is missing"),
    ("config/explanation_type.jsonl", b'{"name": "a"}\n{"name": "x"\n', "config/explanation_type.jsonl line 2"),
    ("tiny-gpt/3-res-x/model.jsonl", b'{"id": "tiny-gpt", "dimension": "wide"}\n', "model.jsonl line 1: ValueError"),
    ("tiny-gpt/3-res-x/model.jsonl", None, "model.jsonl is missing"),
]


@pytest.mark.parametrize(("key", "body", "reason"), BAD_METADATA, ids=[m[2] for m in BAD_METADATA])
def test_bad_metadata_fails_the_run_naming_the_file_and_it_is_not_sent_again(
    s3_endpoint, dataset, monkeypatch, key, body, reason, run_on_commit
):
    if body is None:
        dataset["client"].delete_object(Bucket=dataset["bucket"], Key="v1/" + key)
    else:
        dataset["put"](key, body)
    with run_on_commit():  # its task runs eagerly: the plan fails, and with it the run
        run = import_run_create(params=params(s3_endpoint, dataset["bucket"]), model_id="tiny-gpt", source_id="3-res-x")
    run.refresh_from_db()
    assert run.phase == ImportRun.Phase.DONE and run.job.status == Job.Status.FAILED
    assert run.job.error.startswith("planning failed: ") and reason in run.job.error, run.job.error
    monkeypatch.setenv("MEMICOS_IMPORT_STALL_S", "0")
    assert import_runs_recover() == []
    assert not Explanation.objects.exists() and not ImportFile.objects.filter(run=run).exists()


def test_a_feature_index_repeated_in_another_file_of_the_run_is_reported_and_a_resync_reports_nothing_new(
    s3_endpoint, s3_client, new_bucket, no_aws_credentials
):
    bucket = new_bucket()
    put = s3_put(s3_client, bucket, "v1/")
    spec = DatasetSpec(sources=[SourceSpec("4-res-dup", n_features=8, acts_per_feature=1, batch_size=4)])
    rows = write_dataset(put, spec)["4-res-dup"]
    second = [dict(f) for f in rows["features"][4:]]
    second[1] = dict(second[1], index="2", maxActApprox=99.0)  # batch-1 line 2 repeats batch-0's index 2
    put("tiny-gpt/4-res-dup/features/batch-1.jsonl.gz", gz(second))
    p = params(s3_endpoint, bucket)

    run_import(p, "tiny-gpt", "4-res-dup")
    f = ImportFile.objects.get(key="tiny-gpt/4-res-dup/features/batch-1.jsonl.gz")
    assert f.errors == [{"file": f.key, "line": 2, "reason": "duplicate index 2: already loaded from another file "
                                                             "of this import (first kept)"}]  # fmt: skip
    assert (f.rows_loaded, f.rows_skipped) == (3, 1)
    assert Feature.objects.get(source__name="4-res-dup", index=2).max_act_approx == rows["features"][2]["maxActApprox"]

    acts = ImportFile.objects.get(key="tiny-gpt/4-res-dup/activations/batch-1.jsonl.gz")
    assert acts.status == ImportFile.Status.FAILED and acts.rows_waiting == 1  # feature 5 is in no file

    second[0]["maxActApprox"] = 42.0  # batch-1 changes upstream: a re-sync reloads it over its own earlier rows
    put("tiny-gpt/4-res-dup/features/batch-1.jsonl.gz", gz(second))
    run = run_import(p, "tiny-gpt", "4-res-dup", resync=True)
    f.refresh_from_db()
    # the changed file, and the activations and explanations files that are still not fully loaded
    assert run.files_total == 3 and f.status == ImportFile.Status.DONE and f.rows_skipped == 0, f.errors
    assert f.errors == [] and Feature.objects.get(source__name="4-res-dup", index=4).max_act_approx == 42.0
