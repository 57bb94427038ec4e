"""An import ends with every row of every file, or says loudly which rows are missing and how to get them.

A v1 source on a real S3 server (moto on loopback): 48 features in 3 feature files, 144 activations in 3 files,
48 explanations in 3 files. One feature file is a truncated gzip (an interrupted upload): the import fails naming
it, no activation or explanation file is DONE with rows dropped, the source says it is incomplete on its pages and
in the API, and after the upstream fix a Re-sync loads every row — through the CLI, the admin panel and Celery.
"""

import io
import json
import time
from collections import Counter

import pytest
from django.core.management import CommandError, call_command

from features.models import Activation, Explanation, Feature, Job, Source
from imports.models import ImportFile, ImportRun
from imports.selectors import source_status
from imports.services.importer import completeness_check, import_run_create, import_run_progress
from imports.services.origin import origin_from_params
from tests.imports.dataset import CONFIG_ROWS, DatasetSpec, SourceSpec, gz, metadata, s3_put, write_dataset
from tests.imports.helpers import db_counts, params, run_import

MODEL, SOURCE = "tiny-gpt", "2-res-cut"
BROKEN = f"{MODEL}/{SOURCE}/features/batch-1.jsonl.gz"
ALL_ROWS = {"features": 48, "activations": 144, "explanations": 48}


@pytest.fixture
def cut_dataset(s3_client, new_bucket, no_aws_credentials):
    """The dataset with feature file batch-1 cut in half; fix() puts the whole file back upstream."""
    bucket = new_bucket()
    put = s3_put(s3_client, bucket, "v1/")
    spec = DatasetSpec(sources=[SourceSpec(SOURCE, n_features=48, acts_per_feature=3, batch_size=16)])
    rows = write_dataset(put, spec)[SOURCE]
    whole = gz(rows["features"][16:32])
    put(BROKEN, whole[: len(whole) // 2])
    return {"bucket": bucket, "rows": rows, "fix": lambda: put(BROKEN, whole), "put": put, "whole": whole}


def _cli(s3_endpoint, bucket, *extra, source=SOURCE) -> tuple[str, CommandError | None]:
    out = io.StringIO()
    try:
        call_command(
            "import_source", MODEL, source, "--bucket", bucket, "--endpoint-url", s3_endpoint, *extra, stdout=out
        )
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def _assert_nothing_dropped_quietly():
    """No activation or explanation file of the source is DONE with rows dropped: they wait, unread."""
    rows_files = ImportFile.objects.filter(source_id=SOURCE).exclude(kind="features")
    assert rows_files.count() == 6
    for f in rows_files:
        assert f.status == ImportFile.Status.WAITING, (f.key, f.status, f.errors)
        assert f.rows_loaded == 0 and f.rows_skipped == 0
        assert f.errors[-1]["reason"].startswith("not read: waiting for feature file(s) that did not load: " + BROKEN)
    assert db_counts(MODEL, SOURCE)["activations"] == db_counts(MODEL, SOURCE)["explanations"] == 0


def _assert_says_incomplete(client, incomplete: bool):
    """The source page, a feature page and the feature API say whether the source's import is incomplete."""
    assert Source.objects.get(name=SOURCE).import_incomplete is incomplete
    body = client.get(f"/api/feature/{MODEL}/{SOURCE}/0").json()
    assert body["source"]["importIncomplete"] is incomplete
    for url in (f"/{MODEL}/{SOURCE}/", f"/{MODEL}/{SOURCE}/0/"):
        page = client.get(url)
        assert page.status_code == 200, url
        assert ('id="import-incomplete"' in page.content.decode()) is incomplete, url


def _assert_every_row(rows):
    assert db_counts(MODEL, SOURCE) == ALL_ROWS == {k: len(v) for k, v in rows.items()}
    check = completeness_check(model_id=MODEL, source_id=SOURCE)
    assert check["complete"] and check["files_to_resync_count"] == 0
    assert set(ImportFile.objects.filter(source_id=SOURCE).values_list("status", flat=True)) == {"DONE"}


@pytest.mark.django_db
def test_an_unknown_column_loads_its_file_and_is_named_once_in_the_report(
    s3_endpoint, s3_client, new_bucket, no_aws_credentials
):
    bucket = new_bucket()
    put = s3_put(s3_client, bucket, "v1/")
    spec = DatasetSpec(sources=[SourceSpec("5-res-new", n_features=6, acts_per_feature=2, batch_size=8)])
    rows = write_dataset(put, spec)["5-res-new"]
    # a newer export's columns, on some rows only, in features and activations
    feats = [dict(f, steeringHint="up", **({"umapGroup": 3} if i % 2 else {})) for i, f in enumerate(rows["features"])]
    put(f"{MODEL}/5-res-new/features/batch-0.jsonl.gz", gz(feats))
    acts = [dict(a, attribution=[0.5]) if i == 3 else a for i, a in enumerate(rows["activations"])]
    put(f"{MODEL}/5-res-new/activations/batch-0.jsonl.gz", gz(acts))

    out = io.StringIO()
    call_command("import_source", MODEL, "5-res-new", "--bucket", bucket, "--endpoint-url", s3_endpoint, stdout=out)

    assert db_counts(MODEL, "5-res-new") == {"features": 6, "activations": 12, "explanations": 6}
    feature_file = ImportFile.objects.get(key=f"{MODEL}/5-res-new/features/batch-0.jsonl.gz")
    assert feature_file.status == "DONE" and feature_file.errors == [] and feature_file.rows_skipped == 0
    assert feature_file.warnings == ["unknown column(s) steeringHint, umapGroup for features ignored"]
    acts_file = ImportFile.objects.get(key=f"{MODEL}/5-res-new/activations/batch-0.jsonl.gz")
    assert acts_file.warnings == ["unknown column(s) attribution for activations ignored"]
    run = ImportRun.objects.select_related("job").get(source_id="5-res-new")
    assert run.job.status == Job.Status.SUCCEEDED and run.job.result["complete"]
    assert run.job.result["warnings"] == [
        {"file": feature_file.key, "warning": feature_file.warnings[0]},
        {"file": acts_file.key, "warning": acts_file.warnings[0]},
    ]
    text = out.getvalue()
    assert text.count("steeringHint") == 1  # once per file, not once per row
    assert f"warning: {feature_file.key}: unknown column(s) steeringHint, umapGroup for features ignored" in text
    assert Feature.objects.get(source__name="5-res-new", index=1).max_act_approx == feats[1]["maxActApprox"]


@pytest.mark.django_db
def test_unknown_columns_of_the_metadata_and_config_files_are_warnings_in_the_runs_report(
    s3_endpoint, s3_client, new_bucket, no_aws_credentials
):
    bucket = new_bucket()
    put = s3_put(s3_client, bucket, "v1/")
    write_dataset(put, DatasetSpec(sources=[SourceSpec("5-res-meta", n_features=4, acts_per_feature=1)]))
    meta = metadata(MODEL, 16, "5-res-meta")

    def jsonl(*rows):
        return b"".join(json.dumps(r).encode() + b"\n" for r in rows)

    # a newer export's columns; creatorId and explainerModelSettingsId are Neuronpedia's, known and not kept
    put(f"{MODEL}/5-res-meta/source.jsonl", jsonl(dict(meta["source.jsonl"], steeringHint="up", creatorId="x")))
    put(f"{MODEL}/5-res-meta/model.jsonl", jsonl(dict(meta["model.jsonl"], contextLength=2048)))
    explanation_type = CONFIG_ROWS["explanation_type.jsonl"][0]
    put(
        "config/explanation_type.jsonl",
        jsonl(dict(explanation_type, explainerModelSettingsId="s1"), dict(explanation_type, name="b", tags=["new"])),
    )
    put("config/eval_type.jsonl", jsonl(dict(CONFIG_ROWS["eval_type.jsonl"][0], priority=1)))

    text, error = _cli(s3_endpoint, bucket, source="5-res-meta")
    assert error is None, (error, text)
    warnings = [
        {"file": "config/explanation_type.jsonl", "warning": "unknown column(s) tags ignored"},
        {"file": "config/eval_type.jsonl", "warning": "unknown column(s) priority ignored"},
        {"file": f"{MODEL}/5-res-meta/model.jsonl", "warning": "unknown column(s) contextLength ignored"},
        {"file": f"{MODEL}/5-res-meta/source.jsonl", "warning": "unknown column(s) steeringHint ignored"},
    ]
    run = ImportRun.objects.select_related("job").get(source_id="5-res-meta")
    assert run.job.status == Job.Status.SUCCEEDED and run.job.result["complete"]
    assert run.job.result["warnings"] == warnings
    for w in warnings:
        assert f"warning: {w['file']}: {w['warning']}" in text
    assert Source.objects.get(name="5-res-meta").num_prompts == 24576  # the known columns are read as before


@pytest.mark.django_db
def test_a_truncated_feature_file_fails_the_cli_naming_it_and_a_resync_after_the_fix_loads_every_row(
    s3_endpoint, cut_dataset, client
):
    text, error = _cli(s3_endpoint, cut_dataset["bucket"])
    assert error is not None and BROKEN in str(error) and "--resync" in str(error)  # non-zero, naming the file
    broken = ImportFile.objects.get(key=BROKEN)
    assert broken.status == "FAILED" and broken.errors[-1]["reason"].startswith("bad gzip: compressed file ended")
    _assert_nothing_dropped_quietly()
    # files vs database per kind; the waiting files' rows are not counted as if they were 0
    assert (
        "features: 32 rows in database, 32 in files (2 of 3 file(s) loaded, 1 not read to the end: rows not counted"
        in text
    )
    assert "3 file(s) read, 1 failed" in text  # the six that wait were not read
    for kind in ("activations", "explanations"):  # never read: no "0 in files", but what they wait for
        assert (
            f"{kind}: 0 rows in database (0 of 3 file(s) loaded, 3 not read: waiting for feature file(s) {BROKEN})"
            in text
        )
    assert f"to re-sync: {BROKEN} [FAILED] bad gzip" in text
    assert f"to re-sync: {MODEL}/{SOURCE}/activations/batch-2.jsonl.gz [WAITING]" in text
    run = ImportRun.objects.select_related("job").get(source_id=SOURCE)
    assert run.job.status == Job.Status.FAILED and BROKEN in run.job.error
    result = run.job.result
    assert not result["complete"] and result["files_to_resync_count"] == 7 and result["files_waiting"] == 6
    assert result["waiting_for"] == [BROKEN]
    assert result["kinds"]["activations"] == {
        "files": 3, "files_done": 0, "files_unread": 3, "files_gated": 3, "rows_in_files": 0, "rows_expected": 0,
        "rows_loaded_expected": 0, "rows_in_database": 0, "match": False,
    }  # fmt: skip
    _assert_says_incomplete(client, True)

    text, error = _cli(s3_endpoint, cut_dataset["bucket"], "--resync")  # not fixed yet: still non-zero
    assert error is not None and BROKEN in str(error)
    _assert_nothing_dropped_quietly()

    cut_dataset["fix"]()
    text, error = _cli(s3_endpoint, cut_dataset["bucket"], "--resync")
    assert error is None, (error, text)
    _assert_every_row(cut_dataset["rows"])
    assert "activations: 144 rows in database, 144 in files (3 of 3 file(s) loaded)" in text
    _assert_says_incomplete(client, False)


@pytest.mark.django_db
def test_a_broken_feature_file_replaced_upstream_under_a_new_name_is_left_out_and_the_resync_ends_complete(
    s3_endpoint, s3_client, cut_dataset
):
    assert _cli(s3_endpoint, cut_dataset["bucket"])[1] is not None
    renamed = f"{MODEL}/{SOURCE}/features/batch-1-fixed.jsonl.gz"
    cut_dataset["put"](renamed, cut_dataset["whole"])
    s3_client.delete_object(Bucket=cut_dataset["bucket"], Key=f"v1/{BROKEN}")

    text, error = _cli(s3_endpoint, cut_dataset["bucket"], "--resync")
    assert error is None, (error, text)  # exit 0
    assert db_counts(MODEL, SOURCE) == ALL_ROWS
    assert ImportFile.objects.get(key=BROKEN).status == ImportFile.Status.REMOVED
    assert set(ImportFile.objects.exclude(key=BROKEN).values_list("status", flat=True)) == {"DONE"}
    check = ImportRun.objects.select_related("job").latest("created_at").job.result
    assert check["complete"] and check["files_total"] == 9 and check["files_to_resync_count"] == 0
    assert check["files_removed"] == [BROKEN] and check["kinds"]["features"]["files"] == 3
    assert f"removed upstream: {BROKEN}" in text
    assert "features: 48 rows in database, 48 in files (3 of 3 file(s) loaded)" in text


@pytest.mark.django_db
def test_the_admin_panels_resync_after_the_fix_loads_every_row(
    s3_endpoint, cut_dataset, client, staff_user, run_on_commit
):
    client.force_login(staff_user)
    origin = {"bucket": cut_dataset["bucket"], "prefix": "v1/", "endpoint_url": s3_endpoint}
    panel = f"/imports/?bucket={origin['bucket']}&prefix=v1/&endpoint_url={s3_endpoint}&model={MODEL}"

    with run_on_commit():  # Download: its job is sent on commit and runs eagerly here
        r = client.post("/imports/start", {"model_id": MODEL, "source_id": SOURCE, **origin})
    first = r.json()["runs"][0]
    progress = client.get(f"/imports/progress/{first}.json").json()
    assert progress["status"] == "FAILED" and BROKEN in progress["error"]
    assert progress["result"]["kinds"]["activations"]["files_unread"] == 3
    _assert_nothing_dropped_quietly()
    html = client.get(panel).content.decode()
    assert (
        f"activations: 0 rows in database (0 of 3 file(s) loaded, 3 not read: waiting for feature file(s) {BROKEN})"
        in html
    )
    assert f"to re-sync: {BROKEN} [FAILED]" in html
    assert 'data-resync="1">Re-sync</button>' in html  # the panel offers Re-sync for the partial source
    _assert_says_incomplete(client, True)

    cut_dataset["fix"]()
    with run_on_commit():
        r = client.post("/imports/start", {"model_id": MODEL, "source_id": SOURCE, "resync": "1", **origin})
    progress = client.get(f"/imports/progress/{r.json()['runs'][0]}.json").json()
    assert progress["status"] == "SUCCEEDED" and progress["result"]["complete"], progress
    _assert_every_row(cut_dataset["rows"])
    html = client.get(panel).content.decode()
    assert "activations: 144 rows in database, 144 in files (3 of 3 file(s) loaded)" in html
    _assert_says_incomplete(client, False)


def _wait_for_run(run_id: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = import_run_progress(run_id=run_id)
        if p["status"] in (Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED):
            return p
        time.sleep(0.3)
    pytest.fail(f"run {run_id} did not finish: {import_run_progress(run_id=run_id)}")


@pytest.mark.slow
def test_through_a_celery_worker_the_import_fails_naming_the_file_and_a_resync_after_the_fix_loads_every_row(
    s3_endpoint, cut_dataset, start_worker, client
):
    start_worker(["imports"], name="importcut")
    p = params(s3_endpoint, cut_dataset["bucket"])
    run = import_run_create(params=p, model_id=MODEL, source_id=SOURCE)
    progress = _wait_for_run(run.pk)
    assert progress["status"] == "FAILED" and BROKEN in progress["error"]
    assert progress["result"]["files_to_resync"][0]["key"] == BROKEN
    _assert_nothing_dropped_quietly()
    _assert_says_incomplete(client, True)

    cut_dataset["fix"]()
    run = import_run_create(params=p, model_id=MODEL, source_id=SOURCE, resync=True)
    progress = _wait_for_run(run.pk)
    assert progress["status"] == "SUCCEEDED", progress
    run.refresh_from_db()
    assert run.files_total == 7  # the fixed feature file and the six that waited for it
    _assert_every_row(cut_dataset["rows"])
    _assert_says_incomplete(client, False)


@pytest.mark.slow
def test_a_worker_killed_while_loading_the_rows_that_waited_leaves_no_duplicates_after_resume(
    s3_endpoint, s3_client, new_bucket, no_aws_credentials, start_worker
):
    """The rows files waited behind a broken feature file; the Re-sync's worker is SIGKILLed in the middle of one
    of them; the next run loads it again, and every row is there exactly once."""
    bucket = new_bucket()
    put = s3_put(s3_client, bucket, "v1/")
    spec = DatasetSpec(model_id="kill-gpt", sources=[SourceSpec("3-res-wait", n_features=300, acts_per_feature=20)])
    rows = write_dataset(put, spec)["3-res-wait"]  # one file of each kind: 300 features, 6000 activations
    key = "kill-gpt/3-res-wait/features/batch-0.jsonl.gz"
    whole = gz(rows["features"])
    put(key, whole[: len(whole) // 2])
    p = params(s3_endpoint, bucket)
    first = run_import(p, "kill-gpt", "3-res-wait")
    assert first.job.status == Job.Status.FAILED
    assert set(
        ImportFile.objects.exclude(kind="features").filter(model_id="kill-gpt").values_list("status", flat=True)
    ) == {"WAITING"}  # noqa: E501

    put(key, whole)
    worker = start_worker(
        ["imports"], name="importwait", MEMICOS_IMPORT_PAUSE_AFTER_ROWS=3000, MEMICOS_IMPORT_PAUSE_SECONDS=300
    )
    run = import_run_create(params=p, model_id="kill-gpt", source_id="3-res-wait", resync=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        progress = import_run_progress(run_id=run.pk)
        if progress["rows"] >= 300 + 2999:  # features committed, the activations file paused half-way
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"worker never reached the middle of the activations file: {progress}")
    worker.proc.kill()
    worker.proc.wait(10)
    killed = ImportFile.objects.get(key="kill-gpt/3-res-wait/activations/batch-0.jsonl.gz")
    assert killed.status != ImportFile.Status.DONE, killed.status  # its transaction died with the worker
    assert Activation.objects.filter(feature__model_id="kill-gpt").count() == 0  # nothing half-written

    resumed = run_import(p, "kill-gpt", "3-res-wait")
    assert resumed.job.status == Job.Status.SUCCEEDED, resumed.job.error
    assert db_counts("kill-gpt", "3-res-wait") == {kind: len(r) for kind, r in rows.items()}
    # each row of the files once, told apart by its content rather than by its id (a primary key cannot repeat)
    acts = Activation.objects.filter(feature__model_id="kill-gpt").values_list("feature__index", "tokens", "values")
    assert Counter((i, tuple(t), tuple(v)) for i, t, v in acts) == Counter(
        (int(a["index"]), tuple(a["tokens"]), tuple(a["values"])) for a in rows["activations"]
    )
    exps = Explanation.objects.filter(model_id="kill-gpt").values_list("feature__index", "description")
    assert Counter(exps) == Counter((int(e["index"]), e["description"]) for e in rows["explanations"])
    assert completeness_check(model_id="kill-gpt", source_id="3-res-wait")["complete"]
    assert not Source.objects.get(name="3-res-wait").import_incomplete


@pytest.mark.django_db
def test_a_resync_loads_again_the_files_of_rows_that_went_missing_and_of_rows_refused_for_a_reason_now_gone(
    s3_endpoint, s3_client, new_bucket, no_aws_credentials
):
    """Missing, failed, waiting and changed files are re-planned; so is a DONE file whose rows are gone from the
    database, and one whose rows were refused because another source owned their ids (now deleted)."""
    bucket = new_bucket()
    put = s3_put(s3_client, bucket, "v1/")
    spec = DatasetSpec(sources=[SourceSpec("6-res-a", n_features=8, acts_per_feature=2, batch_size=8)])
    rows = write_dataset(put, spec)["6-res-a"]
    # 6-res-b's activation file holds two ids that are 6-res-a's: refused while 6-res-a owns them
    b = SourceSpec("6-res-b", n_features=8, acts_per_feature=2, batch_size=8, seed=1)
    write_dataset(put, DatasetSpec(sources=[b]))
    b_acts = [dict(a) for a in _json_lines(s3_client, bucket, f"v1/{MODEL}/6-res-b/activations/batch-0.jsonl.gz")]
    b_acts[0]["id"], b_acts[1]["id"] = rows["activations"][0]["id"], rows["activations"][1]["id"]
    put(f"{MODEL}/6-res-b/activations/batch-0.jsonl.gz", gz(b_acts))
    p = params(s3_endpoint, bucket)
    run_import(p, MODEL, "6-res-a")
    run_import(p, MODEL, "6-res-b")
    b_file = ImportFile.objects.get(key=f"{MODEL}/6-res-b/activations/batch-0.jsonl.gz")
    assert b_file.status == "DONE" and b_file.rows_retryable == 2 and "already belongs" in b_file.errors[0]["reason"]
    check = completeness_check(model_id=MODEL, source_id="6-res-b")  # two of its rows are not in the database
    assert not check["complete"] and [f["key"] for f in check["files_to_resync"]] == [b_file.key]
    assert Source.objects.get(name="6-res-b").import_incomplete
    assert source_status(origin=origin_from_params(p), model_id=MODEL, source_id="6-res-b")["status"] == "partial"

    Source.objects.filter(name="6-res-a").delete()  # the owner goes: the refused rows can now load
    run = run_import(p, MODEL, "6-res-b", resync=True)
    assert run.files_total == 1 and run.job.status == Job.Status.SUCCEEDED, run.job.error
    b_file.refresh_from_db()
    assert b_file.rows_retryable == 0 and b_file.errors == []
    assert completeness_check(model_id=MODEL, source_id="6-res-b")["complete"]
    assert db_counts(MODEL, "6-res-b")["activations"] == 16

    Activation.objects.filter(feature__source__name="6-res-b").delete()  # rows lost from the database
    run = run_import(p, MODEL, "6-res-b")  # a plain import sees every file DONE, and says the rows are missing
    assert run.job.status == Job.Status.FAILED, run.job.result
    assert "fewer activations in the database than in the files: re-sync" in run.job.error
    assert Source.objects.get(name="6-res-b").import_incomplete
    run = run_import(p, MODEL, "6-res-b", resync=True)
    assert run.files_total == 1 and run.job.status == Job.Status.SUCCEEDED
    assert db_counts(MODEL, "6-res-b") == {"features": 8, "activations": 16, "explanations": 8}
    assert not Source.objects.get(name="6-res-b").import_incomplete


@pytest.mark.django_db
def test_the_cli_names_the_kinds_whose_rows_the_database_lost_and_says_to_resync_when_every_file_is_loaded(
    s3_endpoint, s3_client, new_bucket, no_aws_credentials
):
    bucket = new_bucket()
    spec = DatasetSpec(sources=[SourceSpec("9-res-lost", n_features=8, acts_per_feature=2, batch_size=8)])
    write_dataset(s3_put(s3_client, bucket, "v1/"), spec)
    assert _cli(s3_endpoint, bucket, source="9-res-lost")[1] is None
    Activation.objects.filter(feature__source__name="9-res-lost").delete()
    Explanation.objects.filter(source__name="9-res-lost").delete()

    text, error = _cli(s3_endpoint, bucket, source="9-res-lost")  # every file is DONE: nothing to load
    assert error is not None, text
    message = str(error)
    assert "activations: 0 rows in database, 16 in files; explanations: 0 rows in database, 8 in files" in message
    assert "features:" not in message and "file(s) not loaded" not in message
    assert "Nothing to fix upstream: run this command again with --resync" in message
    text, error = _cli(s3_endpoint, bucket, "--resync", source="9-res-lost")
    assert error is None, (error, text)
    assert db_counts(MODEL, "9-res-lost") == {"features": 8, "activations": 16, "explanations": 8}


@pytest.mark.django_db
def test_the_panel_never_calls_complete_a_source_whose_banner_says_incomplete_and_download_all_resyncs_it(
    s3_endpoint, s3_client, new_bucket, no_aws_credentials, client, staff_user, run_on_commit
):
    """Every file of both sources is DONE, but one lost its activations from the database and the other's last import
    ended incomplete (its pages' banner): neither is 'complete' on the panel, and Download all re-syncs both back."""
    bucket = new_bucket()
    spec = DatasetSpec(
        sources=[
            SourceSpec("7-res-p", n_features=8, acts_per_feature=2, batch_size=8),
            SourceSpec("8-res-p", n_features=8, acts_per_feature=2, batch_size=8, seed=1),
        ]
    )
    write_dataset(s3_put(s3_client, bucket, "v1/"), spec)
    p = params(s3_endpoint, bucket)
    run_import(p, MODEL, "7-res-p")
    run_import(p, MODEL, "8-res-p")

    def status(source_id):
        return source_status(origin=origin_from_params(p), model_id=MODEL, source_id=source_id)["status"]

    assert status("7-res-p") == status("8-res-p") == "complete"
    Activation.objects.filter(feature__source__name="7-res-p").delete()
    Source.objects.filter(name="8-res-p").update(import_incomplete=True)
    assert status("7-res-p") == status("8-res-p") == "incomplete"
    client.force_login(staff_user)
    origin = {"bucket": bucket, "prefix": "v1/", "endpoint_url": s3_endpoint}
    html = client.get(f"/imports/?bucket={bucket}&prefix=v1/&endpoint_url={s3_endpoint}&model={MODEL}").content.decode()
    assert html.count('status-incomplete">incomplete') == 2 and "0 of 2 downloaded" in html

    with run_on_commit():
        r = client.post("/imports/start", {"model_id": MODEL, "set": "res-p", **origin})
    runs = ImportRun.objects.filter(pk__in=r.json()["runs"]).select_related("job").order_by("source_id")
    assert [(run.source_id, run.resync, run.job.status) for run in runs] == [
        ("7-res-p", True, Job.Status.SUCCEEDED),
        ("8-res-p", True, Job.Status.SUCCEEDED),
    ]
    assert db_counts(MODEL, "7-res-p") == {"features": 8, "activations": 16, "explanations": 8}
    assert status("7-res-p") == status("8-res-p") == "complete"
    assert not Source.objects.filter(model_id=MODEL, import_incomplete=True).exists()


def _json_lines(s3_client, bucket, key):
    import gzip

    raw = gzip.decompress(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    return [json.loads(line) for line in raw.splitlines()]
