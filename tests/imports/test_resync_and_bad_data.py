import gzip
import json

import pytest
from django.core.management import call_command

from features.models import Activation, Explanation, Feature, Job
from imports.models import ImportFile
from imports.selectors import remote_sources, source_status
from imports.services.importer import completeness_check, source_files_list
from imports.services.origin import origin_from_params
from tests.imports.dataset import DatasetSpec, SourceSpec, gz, s3_put, write_dataset
from tests.imports.helpers import db_counts, params, run_import

pytestmark = pytest.mark.django_db


def _lines(s3_client, bucket, key):
    raw = gzip.decompress(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    return [json.loads(line) for line in raw.splitlines()]


def test_resync_after_an_upstream_change_updates_exactly_the_changed_rows(s3_endpoint, s3_client, small_dataset):
    ds = small_dataset
    p = params(s3_endpoint, ds["bucket"])
    run_import(p, "tiny-gpt", "0-res-tt")
    untouched = {a.id: (a.values, a.tokens) for a in Activation.objects.filter(feature__source__name="0-res-tt")}
    key = "v1/tiny-gpt/0-res-tt/activations/batch-1.jsonl.gz"
    rows = _lines(s3_client, ds["bucket"], key)
    rows[0]["values"] = [v + 100 for v in rows[0]["values"]]
    rows[5]["maxValue"] = 123.5
    s3_client.put_object(Bucket=ds["bucket"], Key=key, Body=gz(rows))
    origin = origin_from_params(p)
    assert source_status(origin=origin, model_id="tiny-gpt", source_id="0-res-tt")["status"] == "outdated"

    run = run_import(p, "tiny-gpt", "0-res-tt", resync=True)
    assert run.job.status == Job.Status.SUCCEEDED
    assert run.files_total == 1  # only the changed file was fetched
    f = ImportFile.objects.get(key="tiny-gpt/0-res-tt/activations/batch-1.jsonl.gz")
    assert (f.rows_loaded, f.rows_unchanged) == (2, len(rows) - 2)
    assert Activation.objects.get(id=rows[0]["id"]).values == rows[0]["values"]
    assert Activation.objects.get(id=rows[5]["id"]).max_value == 123.5
    changed = {rows[0]["id"], rows[5]["id"]}
    for act in Activation.objects.filter(feature__source__name="0-res-tt").exclude(id__in=changed):
        assert (act.values, act.tokens) == untouched[act.id]
    assert source_status(origin=origin, model_id="tiny-gpt", source_id="0-res-tt")["status"] == "complete"


def test_each_kind_of_bad_data_is_reported_with_file_line_and_reason(
    s3_endpoint, s3_client, new_bucket, no_aws_credentials
):
    bucket = new_bucket()
    spec = DatasetSpec(sources=[SourceSpec("3-res-bad", n_features=8, acts_per_feature=2, batch_size=8)])
    rows = write_dataset(s3_put(s3_client, bucket, "v1/"), spec)["3-res-bad"]
    base = "v1/tiny-gpt/3-res-bad/"
    acts = [json.dumps(a).encode() for a in rows["activations"]]
    acts[2] = b'{"id": "broken", "tokens": ['  # malformed JSON line (line 3)
    nul = dict(rows["activations"][4], tokens=["a\u0000b", " c"], values=[1.0, 2.0])
    acts[4] = json.dumps(nul).encode()  # json writes the \u0000 escape, as in real exports
    s3_client.put_object(Bucket=bucket, Key=base + "activations/batch-0.jsonl.gz", Body=gz([a + b"\n" for a in acts]))
    exps = [dict(r) for r in rows["explanations"]]
    exps[1]["embedding"] = "[" + ",".join(["0.1"] * 255) + "]"  # wrong dimension (line 2)
    s3_client.put_object(Bucket=bucket, Key=base + "explanations/batch-0.jsonl.gz", Body=gz(exps))
    s3_client.put_object(Bucket=bucket, Key=base + "explanations/batch-1.jsonl.gz", Body=b"this is not gzip")
    feats = [dict(rows["features"][0], index="100", surpriseColumn=1)]
    s3_client.put_object(Bucket=bucket, Key=base + "features/batch-1.jsonl.gz", Body=gz(feats))

    run = run_import(params(s3_endpoint, bucket), "tiny-gpt", "3-res-bad")
    assert run.job.status == Job.Status.FAILED  # a file failed, the others went on

    files = {f.key.rsplit("3-res-bad/", 1)[1]: f for f in ImportFile.objects.filter(source_id="3-res-bad")}
    acts_file = files["activations/batch-0.jsonl.gz"]
    assert acts_file.status == "DONE" and acts_file.rows_skipped == 1
    reasons = {e["line"]: e["reason"] for e in acts_file.errors}
    assert "malformed JSON" in reasons[3] and "\\u0000 stripped" in reasons[5]
    assert all(e["file"] == "tiny-gpt/3-res-bad/activations/batch-0.jsonl.gz" for e in acts_file.errors)
    assert Activation.objects.get(id=nul["id"]).tokens == ["ab", " c"]
    assert not Activation.objects.filter(id="broken").exists()

    exp_file = files["explanations/batch-0.jsonl.gz"]
    assert exp_file.status == "DONE" and exp_file.rows_skipped == 1
    assert exp_file.errors[0]["line"] == 2 and "255 dimensions" in exp_file.errors[0]["reason"]
    assert not Explanation.objects.filter(id=exps[1]["id"]).exists()

    gz_file = files["explanations/batch-1.jsonl.gz"]
    assert gz_file.status == "FAILED" and "bad gzip" in gz_file.errors[-1]["reason"]
    col_file = files["features/batch-1.jsonl.gz"]  # an unknown column is a warning: the file loads
    assert col_file.status == "DONE" and col_file.errors == []
    assert col_file.warnings == ["unknown column(s) surpriseColumn for features ignored"]
    assert Feature.objects.filter(source__name="3-res-bad", index=100).exists()
    assert db_counts("tiny-gpt", "3-res-bad") == {"features": 9, "activations": 15, "explanations": 7}
    check = completeness_check(model_id="tiny-gpt", source_id="3-res-bad")
    assert not check["complete"] and check["files_failed"] == 1
    assert check["files_to_resync"] == [
        {"key": gz_file.key, "status": "FAILED", "reason": gz_file.errors[-1]["reason"]}
    ]
    assert check["kinds"]["features"]["match"] and check["kinds"]["activations"]["match"]
    explanations = check["kinds"]["explanations"]  # the counts agree, but a file is not loaded
    assert (explanations["rows_in_database"], explanations["rows_expected"], explanations["match"]) == (7, 7, False)
    assert explanations["files_unread"] == 1


def test_listing_handles_folders_with_more_than_1000_objects(s3_endpoint, s3_client, new_bucket, no_aws_credentials):
    bucket = new_bucket()
    spec = DatasetSpec(
        sources=[SourceSpec("5-res-big", n_features=1005, acts_per_feature=0, batch_size=1, explanations=False)]
    )
    # 1005 feature files in one folder
    write_dataset(s3_put(s3_client, bucket, "v1/"), spec)
    origin = origin_from_params(params(s3_endpoint, bucket))
    listed = source_files_list(origin=origin, model_id="tiny-gpt", source_id="5-res-big")
    assert sum(1 for kind, _ in listed if kind == "features") == 1005
    groups = remote_sources(origin=origin, model_id="tiny-gpt")
    assert groups[0]["set"] == "res-big" and groups[0]["sources"][0]["status"] == "absent"


def test_export_then_import_into_an_empty_database_reproduces_the_rows(
    s3_endpoint, small_dataset, tmp_path, django_db_blocker
):
    p = params(s3_endpoint, small_dataset["bucket"])
    run_import(p, "tiny-gpt", "0-res-tt")

    def snapshot():
        feats = {f["index"]: f for f in Feature.objects.filter(source__name="0-res-tt").values()}
        for f in feats.values():
            f.pop("id"), f.pop("source_id")
        acts = {a["id"]: a for a in Activation.objects.filter(feature__source__name="0-res-tt").values()}
        idx = dict(Feature.objects.values_list("id", "index"))
        for a in acts.values():
            a["feature_id"] = idx[a["feature_id"]]
        exps = {}
        for e in Explanation.objects.filter(source__name="0-res-tt").values():
            e["feature_id"] = idx[e["feature_id"]]
            e["embedding_256"] = list(e["embedding_256"])
            e.pop("source_id"), e.pop("updated_at")
            exps[e["id"]] = e
        return feats, acts, exps

    before = snapshot()
    call_command("export_source", "tiny-gpt", "0-res-tt", "--to", str(tmp_path / "v1"))
    assert (tmp_path / "v1/tiny-gpt/0-res-tt/activations/batch-0.jsonl.gz").exists()
    Feature.objects.filter(source__name="0-res-tt").delete()
    assert db_counts("tiny-gpt", "0-res-tt") == {"features": 0, "activations": 0, "explanations": 0}
    call_command("import_source", "tiny-gpt", "0-res-tt", "--dir", str(tmp_path / "v1"))
    after = snapshot()
    assert after[0] == before[0]
    assert after[1] == before[1]
    assert after[2] == before[2]


def test_files_loaded_before_rows_waited_for_features_are_marked_for_the_next_resync():
    """A database from before this change holds activation files marked DONE with every row dropped as "feature N
    does not exist": the migration marks them retryable, so a Re-sync loads them again."""
    import importlib

    from django.apps import apps

    from imports.services.importer import file_needs_load

    migration = importlib.import_module("imports.migrations.0003_importfile_waiting_rows_and_warnings")
    common = {"origin": "dir:/x", "model_id": "m", "source_id": "s", "kind": "activations", "status": "DONE"}
    dropped = ImportFile.objects.create(
        key="m/s/activations/batch-0.jsonl.gz", rows_read=4, rows_skipped=4,
        errors=[{"file": "m/s/activations/batch-0.jsonl.gz", "line": 1, "reason": "feature 0 does not exist in m/s"}],
        **common,
    )  # fmt: skip
    bad_row = ImportFile.objects.create(
        key="m/s/activations/batch-1.jsonl.gz", rows_read=4, rows_skipped=1,
        errors=[{"file": "m/s/activations/batch-1.jsonl.gz", "line": 2, "reason": "malformed JSON: x"}], **common,
    )  # fmt: skip
    migration.legacy_dropped_rows_retryable(apps, None)
    dropped.refresh_from_db(), bad_row.refresh_from_db()
    assert (dropped.rows_retryable, bad_row.rows_retryable) == (4, 0)
    assert file_needs_load(dropped) and not file_needs_load(bad_row)
