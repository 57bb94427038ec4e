"""Every kind of job recovers after its worker is SIGKILLed mid-job: the one recovery sweep of a fresh worker sends
it again and it finishes (leased kinds once the dead worker's lease lapses, unleased ones once they stall). While
the job runs, `manage.py health worker` stays green for a solo worker that holds its lease.

Mid-job here is right after the claim (MEMICOS_JOB_PAUSE_KIND): the job is RUNNING and leased, and the killed
message stays unacked for the broker's hour-long visibility timeout. Kills in the middle of the work itself, with
their checkpoints, are tested per kind: dashboards (test_batch.py), imports (tests/imports/test_worker_resume.py),
autointerp (tests/autointerp/test_jobs_and_scores.py). The `demo` kind runs `train_sae` inline and recovers the
same way; it is left out here because it trains the real SmolLM2 SAE.
"""

import socket

import pytest
from django.core.management import call_command

from features.models import Feature, Job, Model, Source
from features.services.jobs import job_kind, job_lease_key, job_send
from tests.autointerp.conftest import llm_server  # noqa: F401 (fixture)
from tests.conftest import ROOT, wait_until
from tests.factories import ActivationFactory, FeatureFactory
from tests.imports.conftest import small_dataset  # noqa: F401 (fixture)
from tests.inference.conftest import write_sae

pytestmark = [pytest.mark.slow]
TINY = {"kind": "tiny", "params": {"n_layers": 2, "d_model": 64, "n_ctx": 128, "seed": 0}}
HOOK = "blocks.0.hook_resid_post"


def _tiny_source(tmp_path, name="0-res-kill", d_sae=64):
    from inference.pipeline.services import source_register

    model, _ = Model.objects.get_or_create(id="tiny-kill", defaults={"display_name": "Tiny", "loader": TINY})
    sae_dir = write_sae(tmp_path / "sae", architecture="standard", hook=HOOK, d_in=64, d_sae=d_sae, seed=1)
    return source_register(model=model, source_id=name, sae_dir=sae_dir, dataset="brown")


def refresh_max_act(tmp_path, request):
    feature = FeatureFactory(max_act_approx=None)
    ActivationFactory(feature=feature, max_value=4.5)
    from features.services.jobs import job_enqueue

    job = job_enqueue(kind="refresh_max_act", model_id=feature.model_id, params={"source_id": feature.source_id},
                      send=False)  # fmt: skip
    return job, {}, lambda: Feature.objects.get(pk=feature.pk).max_act_approx == 4.5


def train_sae(tmp_path, request):
    from inference.pipeline.services import train_job_create

    Model.objects.create(id="tiny-kill", display_name="Tiny", loader=TINY)
    job = train_job_create(model_id="tiny-kill", hook=HOOK, source_id="0-res-kill", arch="topk", width=64, k=4,
                           tokens=4096, context_size=64, batch_size_tokens=512, dashboards=False, send=False)  # fmt: skip
    return job, {}, lambda: Source.objects.filter(model_id="tiny-kill", name="0-res-kill").exclude(sae_path="").exists()


def dashboards(tmp_path, request):
    from inference.pipeline.services import dashboards_job_create

    source = _tiny_source(tmp_path)
    job = dashboards_job_create(model_id=source.model_id, source_id=source.name, tokens=2048, context_size=64,
                                send=False)  # fmt: skip
    return job, {}, lambda: Feature.objects.filter(source=source).count() == 64


def sae_evals(tmp_path, request):
    from features.models import Eval
    from inference.pipeline.evals import evals_job_create

    source = _tiny_source(tmp_path)
    job = evals_job_create(model_id=source.model_id, source_id=source.name, core_batches=1, max_per_class=24,
                           max_tasks=2, send=False)  # fmt: skip
    return job, {}, lambda: Eval.objects.filter(source=source).count() == 2


def passage_codes(tmp_path, request):
    from retrieval.models import PassageCode
    from retrieval.services import lm_codes_job_create

    source = _tiny_source(tmp_path)
    job = lm_codes_job_create(model_id=source.model_id, source_id=source.name, max_passages=8, max_tokens=24,
                              send=False)  # fmt: skip
    return job, {}, lambda: PassageCode.objects.filter(source=source).exists()


def toy_model(tmp_path, request):
    from retrieval.services import toy_job_create

    job = toy_job_create(model_id="toy-kill", steps=20, sae_tokens=4096, dashboards=False, send=False)
    return job, {}, lambda: Source.objects.filter(model_id="toy-kill").exists()


def memory_source(tmp_path, request):
    from retrieval.models import Passage
    from retrieval.services import memory_source_job_create

    job = memory_source_job_create(source_id="0-passage-kill", max_passages=40, width=32, k=4, steps=20,
                                   batch_size=16, send=False)  # fmt: skip
    return job, {}, lambda: Passage.objects.filter(source__name="0-passage-kill").count() == 40


def umap(tmp_path, request):
    from autointerp.services_umap import umap_job_create

    source = _tiny_source(tmp_path, d_sae=32)
    for i in range(32):
        FeatureFactory(source=source, model=source.model, index=i)
    job = umap_job_create(source=source, input_kind="decoder", send=False)
    return job, {}, lambda: Feature.objects.filter(source=source, umap_x__isnull=False).count() == 32


def autointerp(tmp_path, request):
    from autointerp.services import autointerp_job_create
    from features.models import Explanation
    from tests.autointerp.planted import planted_source

    llm = request.getfixturevalue("llm_server")
    source, _ = planted_source()
    job = autointerp_job_create(source=source, type_name="np_max-act", chunk_size=1, send=False)
    env = {"OPENAI_BASE_URL": llm, "OPENAI_API_KEY": "test", "AUTOINTERP_LLM_RETRIES": "0"}
    return job, env, lambda: Explanation.objects.filter(source=source).count() == 3


def explain_feature(tmp_path, request):
    from autointerp.services import explain_feature_job_create
    from features.models import Explanation
    from tests.autointerp.planted import planted_source

    llm = request.getfixturevalue("llm_server")
    _, features = planted_source()
    job = explain_feature_job_create(user=None, feature=features["birds"], type_name="np_max-act", send=False)
    env = {"OPENAI_BASE_URL": llm, "OPENAI_API_KEY": "test", "AUTOINTERP_LLM_RETRIES": "0"}
    return job, env, lambda: Explanation.objects.filter(feature=features["birds"]).count() == 1


def score_explanation(tmp_path, request):
    from autointerp.services import score_job_create
    from features.models import Explanation, ExplanationScore
    from tests.autointerp.planted import planted_source

    llm = request.getfixturevalue("llm_server")
    source, features = planted_source()
    explanation = Explanation.objects.create(feature=features["birds"], model_id=source.model_id, source=source,
                                             description="names of birds")  # fmt: skip
    job = score_job_create(user=None, explanation=explanation, score_type="detection", send=False)
    env = {"OPENAI_BASE_URL": llm, "OPENAI_API_KEY": "test", "AUTOINTERP_LLM_RETRIES": "0",
           "AUTOINTERP_SCORER_N_ACTIVATING": "2", "AUTOINTERP_SCORER_N_NON_ACTIVATING": "2"}  # fmt: skip
    return job, env, lambda: ExplanationScore.objects.filter(explanation=explanation).count() == 1


def import_(tmp_path, request):
    from imports.services.importer import import_run_create
    from tests.imports.helpers import db_counts, params

    endpoint, dataset = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("small_dataset")
    run = import_run_create(params=params(endpoint, dataset["bucket"]), model_id="tiny-gpt", source_id="0-att-tt",
                            send=False)  # fmt: skip
    expected = {"features": 10, "activations": 20, "explanations": 0}
    return run.job, {}, lambda: db_counts("tiny-gpt", "0-att-tt") == expected


KINDS = [refresh_max_act, train_sae, dashboards, sae_evals, passage_codes, toy_model, memory_source, umap, autointerp,
         explain_feature, score_explanation, import_]  # fmt: skip


@pytest.mark.parametrize("setup", KINDS, ids=[k.__name__.rstrip("_") for k in KINDS])
def test_a_job_whose_worker_is_sigkilled_mid_job_is_recovered_by_the_sweep_and_finishes(
    setup, transactional_db, start_worker, settings, tmp_path, request
):
    settings.VAR_DIR = tmp_path
    (tmp_path / "corpus").symlink_to(ROOT / "var" / "corpus")
    job, env, finished_work = setup(tmp_path, request)
    kind = job_kind(job.kind)
    from memicos_site.redis_client import redis_client

    redis_client().delete(job_lease_key(job.pk), f"{job_lease_key(job.pk)}:requeued")  # an earlier test DB's ids
    common = {"MEMICOS_VAR_DIR": tmp_path, "MEMICOS_JOB_LEASE_TTL": 2, "MEMICOS_JOB_SWEEP_S": 1, **env}
    worker = start_worker([kind.queue], name=f"kill-{job.kind}", MEMICOS_JOB_PAUSE_KIND=job.kind, **common)
    job_send(job_id=job.pk)  # transactional_db: sent at once
    wait_until(lambda: (tmp_path / f"paused-job-{job.pk}").exists(), 60, "the worker to claim the job")
    assert Job.objects.get(pk=job.pk).status == Job.Status.RUNNING
    if kind.lease:  # a solo worker busy with a job answers no ping; its lease says it is alive
        call_command("health", "worker", "--node", f"{worker.name}@{socket.gethostname()}", "--timeout", "0.5")
    worker.kill()

    # the unacked message waits an hour; the new worker's sweep sends the job again at once (leased: the lease
    # lapsed after 2 s) or once it has not moved for the stall time (unleased)
    start_worker([kind.queue], name=f"resume-{job.kind}", wait=False, MEMICOS_JOB_STALL_S=3, MEMICOS_IMPORT_STALL_S=3,
                 **common)  # fmt: skip
    wait_until(lambda: Job.objects.get(pk=job.pk).finished, 240, f"the {job.kind} job to finish", 0.5)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, (job.status, job.error)
    assert finished_work()
