import pytest

from features.models import Activation, Explanation, Feature, Job, Model, Source
from imports.models import ImportFile
from imports.services.importer import completeness_check
from tests.factories import ExplanationFactory
from tests.imports.helpers import db_counts, params, run_import

pytestmark = pytest.mark.django_db


def test_full_import_of_a_source_loads_every_row_and_counts_match(s3_endpoint, small_dataset):
    ds = small_dataset
    run = run_import(params(s3_endpoint, ds["bucket"]), "tiny-gpt", "0-res-tt")
    assert run.job.status == Job.Status.SUCCEEDED, run.job.error
    rows = ds["rows"]["0-res-tt"]
    assert db_counts("tiny-gpt", "0-res-tt") == {k: len(v) for k, v in rows.items()}
    check = completeness_check(model_id="tiny-gpt", source_id="0-res-tt")
    assert check["complete"] and all(c["match"] for c in check["kinds"].values())
    # 40 features in batches of 16 → 3 files each for features, activations, explanations
    assert ImportFile.objects.filter(source_id="0-res-tt", status="DONE").count() == 9
    # values arrive intact, under our names
    want = rows["activations"][7]
    act = Activation.objects.get(id=want["id"])
    assert act.tokens == want["tokens"] and act.values == want["values"]
    assert act.feature.index == int(want["index"]) and act.max_value == want["maxValue"]
    f = Feature.objects.get(source__name="0-res-tt", index=5)
    want_f = rows["features"][5]
    assert f.pos_str == want_f["pos_str"] and f.frac_nonzero == want_f["frac_nonzero"]
    exp = Explanation.objects.get(id=rows["explanations"][3]["id"])
    assert exp.embedding_256 is not None and len(exp.embedding_256) == 256
    assert abs(float(exp.embedding_256[0]) - float(rows["explanations"][3]["embedding"][1:].split(",")[0])) < 1e-6
    assert exp.type_id == "oai_token-act-pair" and exp.feature.index == 3
    assert Model.objects.get(pk="tiny-gpt").dimension == 16
    assert Source.objects.get(name="0-res-tt").source_set.release.name == "tiny-gpt-release"


def test_running_the_import_again_loads_nothing_and_duplicates_nothing(s3_endpoint, small_dataset):
    p = params(s3_endpoint, small_dataset["bucket"])
    run_import(p, "tiny-gpt", "1-res-tt")
    # an explanation made here (autointerp) is more than the files hold, not a row missing
    ExplanationFactory(feature=Feature.objects.get(source__name="1-res-tt", index=0), description="made here")
    before = db_counts("tiny-gpt", "1-res-tt")
    run = run_import(p, "tiny-gpt", "1-res-tt", resync=True)
    assert run.files_total == 0 and run.job.status == Job.Status.SUCCEEDED
    assert db_counts("tiny-gpt", "1-res-tt") == before
    assert run.job.result["complete"] and not Source.objects.get(name="1-res-tt").import_incomplete


@pytest.mark.django_db(transaction=True)
def test_cli_loads_files_in_parallel_processes_with_the_same_result(s3_endpoint, small_dataset):
    """import_source --jobs 3 (committed data, so its processes' connections see the run): every file DONE
    once, counts match the files, the run's Job finished with a complete check. The processes are spawned: this
    process holds open Redis and S3 connections first, which forked children once shared and hung reading."""
    from django.core.management import call_command

    from imports.models import ImportRun
    from imports.services.origin import origin_from_params
    from memicos_site.redis_client import redis_client
    from tests.imports.helpers import params

    assert redis_client().ping()
    assert origin_from_params(params(s3_endpoint, small_dataset["bucket"])).folders("")

    call_command(
        "import_source", "tiny-gpt", "0-res-tt", "--bucket", small_dataset["bucket"],
        "--endpoint-url", s3_endpoint, "--jobs", "3",
    )  # fmt: skip
    rows = small_dataset["rows"]["0-res-tt"]
    assert db_counts("tiny-gpt", "0-res-tt") == {k: len(v) for k, v in rows.items()}
    files = ImportFile.objects.filter(source_id="0-res-tt")
    assert files.count() == 9 and set(files.values_list("status", flat=True)) == {"DONE"}
    assert all(f.attempts == 1 for f in files)
    run = ImportRun.objects.select_related("job").get(source_id="0-res-tt")
    assert run.phase == ImportRun.Phase.DONE and run.job.status == Job.Status.SUCCEEDED
    assert run.job.result["complete"]


@pytest.mark.django_db(transaction=True)
def test_a_source_of_one_file_per_phase_loads_without_spawning_a_process(s3_endpoint, small_dataset, monkeypatch):
    """--jobs 3 on a source whose features and activations are one file each: this process loads both, spawning no
    helper (one costs ~1 s of CPU to set Django up, more than such a source takes to load)."""
    import concurrent.futures

    from imports.services.importer import import_run_create, import_run_inline

    spawned = []

    def no_pool(*args, **kwargs):
        spawned.append(kwargs)
        raise AssertionError("a helper process was started")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_pool)
    p = params(s3_endpoint, small_dataset["bucket"])
    run = import_run_create(params=p, model_id="tiny-gpt", source_id="1-res-tt", explanations=False, send=False)
    run = import_run_inline(run_id=run.pk, jobs=3)
    assert run.job.status == Job.Status.SUCCEEDED, run.job.error
    assert not spawned and ImportFile.objects.filter(source_id="1-res-tt", status="DONE").count() == 2
    rows = small_dataset["rows"]["1-res-tt"]
    counts = db_counts("tiny-gpt", "1-res-tt")
    assert (counts["features"], counts["activations"]) == (len(rows["features"]), len(rows["activations"]))
