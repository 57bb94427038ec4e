"""Batch work under faults: a dashboard worker SIGKILLed mid-batch, an import while Redis crashes and restarts."""

import shutil
import subprocess
import sys

import pytest

from features.models import Activation, Feature, Job
from features.services.jobs import job_run
from inference.pipeline.services import dashboards_job_create, source_register, work_dir
from memicos_site.queues import Queue
from tests.conftest import ROOT, WorkerProcess, subprocess_env
from tests.faults.conftest import wait_until
from tests.inference.conftest import write_sae

pytestmark = [pytest.mark.slow]
TINY = {"kind": "tiny", "params": {"n_layers": 2, "d_model": 64, "n_ctx": 128, "seed": 0}}
D_SAE, BATCH = 256, 32  # 8 feature batches


def _rows(source):
    return set(Activation.objects.filter(feature__source=source).values_list("id", "feature__index", "max_value"))


def test_a_dashboard_worker_killed_mid_batch_is_requeued_and_resumes_to_the_rows_of_a_clean_run(
    transactional_db, start_worker, settings, tmp_path
):
    subprocess_env = {"MEMICOS_VAR_DIR": tmp_path, "MEMICOS_JOB_LEASE_TTL": 2, "MEMICOS_JOB_SWEEP_S": 1}
    settings.VAR_DIR = tmp_path
    (tmp_path / "corpus").symlink_to(ROOT / "var" / "corpus")  # the Brown corpus (tests/pipeline's `brown`)
    from features.models import Model

    model = Model.objects.create(id="tiny-faults", display_name="Tiny", loader=TINY)
    sae_dir = write_sae(tmp_path / "sae", architecture="standard", hook="blocks.0.hook_resid_post", d_in=64,
                        d_sae=D_SAE, seed=3)  # fmt: skip
    source = source_register(model=model, source_id="0-res-faults", sae_dir=sae_dir, dataset="brown")
    job = dashboards_job_create(model_id=model.id, source_id=source.name, tokens=4096, context_size=64,
                                feature_batch=BATCH, send=False)  # fmt: skip
    from features.services.jobs import job_lease_key, job_send
    from inference.selectors import redis_client

    redis_client().delete(job_lease_key(job.pk), f"{job_lease_key(job.pk)}:requeued")  # an earlier test DB's ids

    worker = start_worker([Queue.GPU_BATCH.value], name="batch-kill", MEMICOS_DASHBOARDS_PAUSE_AT_BATCH=4,
                          **subprocess_env)  # fmt: skip
    job_send(job_id=job.pk)  # transactional_db: sent at once
    work = work_dir(model_id=model.id, source_id=source.name, what="dashboards")
    wait_until(lambda: (work / "paused").exists(), 120, "the worker to pause inside batch 4's transaction")
    worker.kill()  # SIGKILL with batch 4's features written but not committed

    assert Feature.objects.filter(source=source).count() == 3 * BATCH  # batches 1-3 committed, 4 rolled back
    partial = Activation.objects.filter(feature__source=source).count()
    assert partial and Job.objects.get(pk=job.pk).status == Job.Status.RUNNING

    # a restarted batch worker notices the lapsed lease and re-queues the job, which resumes from its
    # checkpoints (the killed message itself stays unacked until Redis's hour-long visibility timeout)
    start_worker([Queue.GPU_BATCH.value], name="batch-new", **subprocess_env)
    wait_until(lambda: Job.objects.get(pk=job.pk).status != Job.Status.RUNNING, 120, "the job to finish", 0.5)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.done == job.total
    assert job.result["token_pass_seconds"] == 0  # the chunk files were reused, not recomputed
    assert job.result["features_written"] == D_SAE - 3 * BATCH  # only the unfinished batches were written
    resumed = _rows(source)
    assert Feature.objects.filter(source=source).count() == D_SAE
    assert len(resumed) == Activation.objects.filter(feature__source=source).count() > partial

    # a clean, uninterrupted run of the same job gives the same rows: no duplicates, none missing
    Feature.objects.filter(source=source).delete()
    shutil.rmtree(work)
    clean = dashboards_job_create(model_id=model.id, source_id=source.name, tokens=4096, context_size=64,
                                  feature_batch=BATCH, send=False)  # fmt: skip
    assert job_run(job_id=clean.pk).status == Job.Status.SUCCEEDED
    assert _rows(source) == resumed


def test_an_import_survives_a_redis_crash_mid_run_and_the_site_answers_again_without_a_restart(
    client,
    tiny_db,
    real_celery,
    transactional_db,
    private_redis,
    s3_endpoint,
    s3_client,
    new_bucket,
    no_aws_credentials,
    settings,
    request,
):
    """Queued file tasks outlive a Redis crash because Redis keeps an append-only file (the guarantee is the
    broker's: docker-compose runs Redis with --appendonly yes, as scripts/ensure_redis.sh does for the demo); one
    the crash lost in flight is sent again by the imports worker's sweep."""
    from features.tasks import job_run_task
    from imports.models import ImportFile
    from imports.services.importer import completeness_check, import_run_create
    from memicos_site.celery import app
    from tests.imports.dataset import DatasetSpec, SourceSpec, s3_put, write_dataset
    from tests.imports.helpers import db_counts, params

    bucket = new_bucket()
    spec = DatasetSpec(model_id="redis-gpt", sources=[
        SourceSpec("0-res-rr", n_features=160, acts_per_feature=4, batch_size=40, explanations=False)])  # fmt: skip
    write_dataset(s3_put(s3_client, bucket, "v1/"), spec)  # 4 feature files, 4 activation files
    settings.REDIS_URL = private_redis.url
    # a message the crash takes with it (popped by the worker's BRPOP, not yet recorded as unacknowledged) is sent
    # again by the worker's sweep once the run has not moved for MEMICOS_IMPORT_STALL_S (imports/recovery.py)
    worker = BrokerWorker(["imports"], "imports-redis", broker_url=private_redis.url,
                          MEMICOS_IMPORT_PAUSE_AFTER_ROWS=20, MEMICOS_IMPORT_PAUSE_SECONDS=1.5,
                          MEMICOS_IMPORT_STALL_S=6, MEMICOS_JOB_SWEEP_S=1)  # fmt: skip
    request.addfinalizer(worker.stop)
    worker.start()
    run = import_run_create(params=params(s3_endpoint, bucket), model_id="redis-gpt", source_id="0-res-rr", send=False)
    with app.connection_for_write(private_redis.url) as conn:
        job_run_task.apply_async(kwargs={"job_id": run.job_id}, queue="imports", connection=conn)
    import redis

    broker = redis.Redis.from_url(private_redis.url)
    wait_until(lambda: broker.llen("imports") >= 2, 60, "feature files queued behind the one in progress")

    private_redis.kill()  # a crash while files wait in the queue and one is being loaded
    outage = client.get("/healthz")
    assert outage.status_code == 503 and not outage.json()["redis"]["ok"]
    busy = client.post("/api/activation/source", {"modelId": "tiny-inference", "source": "0-res-std",
                                                   "customText": "x"}, content_type="application/json")  # fmt: skip
    assert busy.status_code == 503 and "Redis" in busy.json()["message"] and busy["Retry-After"]
    private_redis.start()  # same port and data directory: the AOF brings the queue back

    wait_until(lambda: import_run_done(run.pk), 120, "the import to finish", 0.5)
    run.job.refresh_from_db()
    assert run.job.status == Job.Status.SUCCEEDED
    assert db_counts("redis-gpt", "0-res-rr") == {"features": 160, "activations": 640, "explanations": 0}
    assert completeness_check(model_id="redis-gpt", source_id="0-res-rr")["complete"]
    assert ImportFile.objects.filter(model_id="redis-gpt", status="DONE").count() == 8
    healthy = client.get("/healthz")
    assert healthy.status_code == 200 and healthy.json()["redis"]["ok"]


def import_run_done(run_id: int) -> bool:
    from imports.models import ImportRun

    return ImportRun.objects.get(pk=run_id).phase == ImportRun.Phase.DONE


class BrokerWorker(WorkerProcess):
    """A worker on another broker than this process's Celery app: ready once it blocks on its queue there
    (a control ping from this process would go to the app's own broker)."""

    def __init__(self, queues, name, *, broker_url, **env):
        super().__init__(queues, name, REDIS_URL=broker_url, **env)
        self.broker_url = broker_url

    def start(self, timeout: float = 60.0):
        import redis

        cmd = [sys.executable, "-m", "celery", "-A", "memicos_site", "worker", "-Q", ",".join(self.queues),
               "-n", f"{self.name}@%h", "-P", "solo", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(**self.env))
        broker = redis.Redis.from_url(self.broker_url)
        wait_until(lambda: any(c.get("cmd") == "brpop" for c in broker.client_list()), timeout, f"worker {self.name}")
        return self
