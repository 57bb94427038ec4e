"""imports/recovery.py: a run whose file messages the broker lost (a Redis crash) is finished by the `imports`
workers' sweep, and a duplicate file task never waits on, or redoes, a file another transaction is loading."""

import threading
import time

import pytest
from django.db import connection, connections

from features.models import Job
from features.services.jobs import job_claim, job_run
from imports.models import ImportFile, ImportRun
from imports.recovery import import_runs_recover
from imports.services import importer
from tests.imports.helpers import db_counts, params


def _planned_run(s3_endpoint, small_dataset) -> ImportRun:
    """A run planned (phase FEATURES, files PENDING) whose file tasks never reached a worker."""
    run = importer.import_run_create(
        params=params(s3_endpoint, small_dataset["bucket"]), model_id="tiny-gpt", source_id="0-att-tt", send=False
    )
    with job_claim(job_id=run.job_id, lease=False):  # as the job's task claims it before planning
        importer.import_run_prepare(run_id=run.pk)
    run.refresh_from_db()
    assert run.phase == ImportRun.Phase.FEATURES and run.job.status == Job.Status.RUNNING
    return run


def test_a_run_whose_file_messages_were_lost_is_finished_by_the_sweep_once_it_stalls(
    s3_endpoint, small_dataset, db, monkeypatch
):
    run = _planned_run(s3_endpoint, small_dataset)
    monkeypatch.setenv("MEMICOS_IMPORT_STALL_S", "3600")
    assert import_runs_recover() == []  # it moved a moment ago: its tasks may just be waiting in the queue
    monkeypatch.setenv("MEMICOS_IMPORT_STALL_S", "0")
    assert import_runs_recover() == [run.pk]  # tasks are eager here: the resent files load inline, phase by phase
    run.refresh_from_db()
    assert run.phase == ImportRun.Phase.DONE and run.job.status == Job.Status.SUCCEEDED
    assert db_counts("tiny-gpt", "0-att-tt") == {"features": 10, "activations": 20, "explanations": 0}
    assert import_runs_recover() == []  # a finished run is left alone


def test_a_stalled_run_is_sent_again_at_most_once_per_quiet_period(s3_endpoint, small_dataset, db, monkeypatch):
    from imports import tasks

    run = _planned_run(s3_endpoint, small_dataset)
    sent = []
    monkeypatch.setattr(tasks.import_file_task, "delay", lambda *args: sent.append(args))
    monkeypatch.setenv("MEMICOS_IMPORT_STALL_S", "0")
    assert import_runs_recover() == [run.pk]
    feature_files = list(
        ImportFile.objects.filter(run=run, kind="features").order_by("id").values_list("pk", flat=True)
    )
    assert sent == [(pk, run.pk) for pk in feature_files]  # the phase's pending files, not the activations yet
    assert import_runs_recover() == [] and len(sent) == len(feature_files)  # another sweep soon after: nothing


def test_a_duplicate_plan_task_leaves_a_planned_run_as_it_is(s3_endpoint, small_dataset, db):
    run = _planned_run(s3_endpoint, small_dataset)
    f = ImportFile.objects.filter(run=run, kind="features").order_by("id").first()
    importer.import_file_load(file_id=f.pk, run_id=run.pk)
    importer.import_run_advance(run_id=run.pk)  # one file done: the Job says 1 of 6
    job_run(job_id=run.job_id)  # a redelivered or re-sent copy of the plan: the job is claimed already
    run.refresh_from_db()
    assert (run.phase, run.files_total, run.job.done, run.job.total) == (ImportRun.Phase.FEATURES, 6, 1, 6)


def test_a_run_stalled_after_its_last_file_is_finished_by_an_advance(s3_endpoint, small_dataset, db, monkeypatch):
    run = _planned_run(s3_endpoint, small_dataset)
    for f in ImportFile.objects.filter(run=run).order_by("id"):  # planned features first, as the phases load them
        importer.import_file_load(file_id=f.pk, run_id=run.pk)  # every file loaded, no advance ran: it was lost
    monkeypatch.setenv("MEMICOS_IMPORT_STALL_S", "0")
    assert import_runs_recover() == [run.pk]
    run.refresh_from_db()
    assert run.phase == ImportRun.Phase.DONE and run.job.status == Job.Status.SUCCEEDED


def test_a_duplicate_file_task_skips_a_file_another_transaction_is_loading(
    s3_endpoint, small_dataset, transactional_db
):
    run = _planned_run(s3_endpoint, small_dataset)
    f = ImportFile.objects.filter(run=run, kind="features").order_by("id").first()
    locked, release = threading.Event(), threading.Event()

    def loader_in_progress():  # another worker's transaction, holding the file's row lock
        with connections["default"].cursor() as cur:  # this thread's own connection
            cur.execute("BEGIN")
            cur.execute("SELECT 1 FROM imports_importfile WHERE id = %s FOR UPDATE", [f.pk])
            locked.set()
            release.wait(10)
            cur.execute("ROLLBACK")
        connections["default"].close()

    other = threading.Thread(target=loader_in_progress)
    other.start()
    assert locked.wait(10)
    try:
        duplicate = importer.import_file_load(file_id=f.pk, run_id=run.pk)  # returns at once instead of waiting
        assert duplicate.status == ImportFile.Status.PENDING and duplicate.attempts == 0
    finally:
        release.set()
        other.join(10)
    assert importer.import_file_load(file_id=f.pk, run_id=run.pk).status == ImportFile.Status.DONE
    assert connection.connection is not None


@pytest.mark.slow
def test_an_imports_worker_sweeps_at_start_and_finishes_a_run_whose_messages_were_lost(
    s3_endpoint, small_dataset, start_worker
):
    run = _planned_run(s3_endpoint, small_dataset)  # planned, its file messages lost with a crashed Redis
    start_worker(["imports"], name="importsweep", MEMICOS_IMPORT_STALL_S=1, MEMICOS_JOB_SWEEP_S=1)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.phase == ImportRun.Phase.DONE:
            break
        time.sleep(0.5)
    assert run.phase == ImportRun.Phase.DONE and Job.objects.get(pk=run.job_id).status == Job.Status.SUCCEEDED
    assert db_counts("tiny-gpt", "0-att-tt") == {"features": 10, "activations": 20, "explanations": 0}
