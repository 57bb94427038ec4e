"""SIGTERM to a worker in the middle of SAE training (a deploy, or Ctrl-C on `make demo`): SAELens's runner
installs handlers that raised wherever training was, so the job ended FAILED (or, inside a checkpoint's files,
left one that made the resume fail), and the worker never heard its own warm-shutdown signal and trained on.
Now training stops at the next batch, the job stays RUNNING, the worker exits, and a new worker's sweep resumes
the job from its last checkpoint."""

import signal

import pytest

from features.models import Job, Model, Source
from features.services.jobs import job_send
from tests.conftest import ROOT, wait_until

pytestmark = [pytest.mark.slow]
TINY = {"kind": "tiny", "params": {"n_layers": 2, "d_model": 64, "n_ctx": 128, "seed": 0}}
TOKENS = 262_144


def test_a_worker_sigtermed_mid_training_stops_and_the_job_resumes_from_its_checkpoint(
    transactional_db, start_worker, settings, tmp_path
):
    from inference.pipeline.services import train_job_create
    from inference.runtime.training import latest_checkpoint

    settings.VAR_DIR = tmp_path
    (tmp_path / "corpus").symlink_to(ROOT / "var" / "corpus")
    Model.objects.create(id="tiny-term", display_name="Tiny", loader=TINY)
    job = train_job_create(model_id="tiny-term", hook="blocks.0.hook_resid_post", source_id="0-res-term", arch="topk",
                           width=64, k=4, tokens=TOKENS, context_size=64, batch_size_tokens=512, dashboards=False,
                           send=False)  # fmt: skip
    work = tmp_path / "saes" / "tiny-term" / "0-res-term.work"
    common = {"MEMICOS_VAR_DIR": tmp_path, "MEMICOS_JOB_LEASE_TTL": 2, "MEMICOS_JOB_SWEEP_S": 1}
    worker = start_worker(["gpu_batch"], name="term-train", **common)
    job_send(job_id=job.pk)
    wait_until(lambda: latest_checkpoint(work) is not None, 180, "a first checkpoint", 0.2)

    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(60) == 0  # a warm shutdown once the job returned, not more training
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and not job.error, (job.status, job.error)
    assert job.done < TOKENS
    checkpoint = int(latest_checkpoint(work).name)

    start_worker(["gpu_batch"], name="term-resume", wait=False, **common)
    wait_until(lambda: Job.objects.get(pk=job.pk).finished, 240, "the resumed training to finish", 0.5)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, (job.status, job.error)
    source = Source.objects.get(model_id="tiny-term", name="0-res-term")
    assert source.metrics["resumed_from_tokens"] == checkpoint > 0  # continued from the checkpoint, not from 0
