import time

import pytest

from features.models import Activation, Feature, Job
from features.services.jobs import job_send
from imports.models import ImportFile
from imports.services.importer import completeness_check, import_run_create, import_run_progress
from tests.imports.dataset import DatasetSpec, SourceSpec, s3_put, write_dataset
from tests.imports.helpers import db_counts, params, run_import


def test_an_import_through_tasks_finishes_its_job(s3_endpoint, small_dataset, db, run_on_commit):
    with run_on_commit():  # eager in unit tests: the plan, then the per-file tasks, run inline phase by phase
        run = import_run_create(
            params=params(s3_endpoint, small_dataset["bucket"]), model_id="tiny-gpt", source_id="0-att-tt"
        )
    run.refresh_from_db()
    assert run.job.status == Job.Status.SUCCEEDED and run.phase == "DONE"
    assert run.job.done == run.files_total == 6  # 3 feature files, 3 activation files
    assert db_counts("tiny-gpt", "0-att-tt") == {"features": 10, "activations": 20, "explanations": 0}


def test_a_worker_dying_as_it_finishes_the_run_leaves_it_for_the_next_advance(
    s3_endpoint, small_dataset, db, monkeypatch, run_on_commit
):
    """The run's DONE phase and its Job's SUCCEEDED commit together: a reader never sees a DONE run with a RUNNING
    Job, and a crash between the two leaves the run in ROWS, which the redelivered file task's advance finishes."""
    from imports.services import importer

    run = import_run_create(
        params=params(s3_endpoint, small_dataset["bucket"]), model_id="tiny-gpt", source_id="0-att-tt", send=False
    )
    real_finish = importer._run_finish

    def crash(*args, **kwargs):
        real_finish(*args, **kwargs)  # the Job row is written ...
        raise RuntimeError("worker lost")  # ... and the process dies before the transaction commits

    monkeypatch.setattr(importer, "_run_finish", crash)
    with pytest.raises(RuntimeError, match="worker lost"), run_on_commit():
        job_send(job_id=run.job_id)
    run.refresh_from_db()
    assert run.phase == "ROWS" and run.job.status == Job.Status.RUNNING  # neither half committed
    assert not ImportFile.objects.filter(run=run).exclude(status="DONE").exists()
    monkeypatch.setattr(importer, "_run_finish", real_finish)
    importer.import_run_advance(run_id=run.pk)  # what the redelivered task does after finding its file DONE
    run.refresh_from_db()
    assert run.phase == "DONE" and run.job.status == Job.Status.SUCCEEDED


@pytest.mark.slow
def test_a_worker_killed_mid_file_leaves_nothing_and_the_next_run_resumes_without_duplicates(
    s3_endpoint, s3_client, new_bucket, no_aws_credentials, start_worker
):
    bucket = new_bucket()
    spec = DatasetSpec(
        model_id="kill-gpt", sources=[SourceSpec("2-res-kill", n_features=300, acts_per_feature=20, explanations=False)]
    )
    write_dataset(s3_put(s3_client, bucket, "v1/"), spec)  # one features file (300 rows), one activations file (6000)
    worker = start_worker(
        ["imports"], name="importkill", MEMICOS_IMPORT_PAUSE_AFTER_ROWS=3000, MEMICOS_IMPORT_PAUSE_SECONDS=300
    )
    p = params(s3_endpoint, bucket)
    run = import_run_create(params=p, model_id="kill-gpt", source_id="2-res-kill")  # sent: transactional_db
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        progress = import_run_progress(run_id=run.pk)
        if progress["rows"] >= 300 + 2999:  # features file committed, activations file paused mid-way
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"worker never reached the middle of the activations file: {progress}")
    worker.proc.kill()  # SIGKILL, mid-transaction
    worker.proc.wait(10)

    acts_file = ImportFile.objects.get(model_id="kill-gpt", kind="activations")
    assert acts_file.status == "PENDING" and acts_file.rows_read == 0
    assert ImportFile.objects.get(model_id="kill-gpt", kind="features").status == "DONE"
    assert Feature.objects.filter(model_id="kill-gpt").count() == 300
    assert Activation.objects.filter(feature__model_id="kill-gpt").count() == 0  # nothing half-written

    resumed = run_import(p, "kill-gpt", "2-res-kill")
    assert resumed.files_total == 1  # only the interrupted file is redone
    assert resumed.job.status == Job.Status.SUCCEEDED
    assert db_counts("kill-gpt", "2-res-kill") == {"features": 300, "activations": 6000, "explanations": 0}
    assert completeness_check(model_id="kill-gpt", source_id="2-res-kill")["complete"]
