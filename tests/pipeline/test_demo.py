"""`make demo`'s bookkeeping: the pipeline job is queued once, reused when done, and followed by explanations
of the demo source's top features, a UMAP and the seed systems' jobs, each queued once (the jobs themselves are
tested in tests/pipeline, tests/autointerp and tests/retrieval)."""

import pytest
from django.core.management import call_command

from features.models import Job, Model, Source
from features.services.jobs import job_finish
from memicos_site.demo import DEMO, DEMO_MODEL_ID, demo_followups_start, demo_pipeline_start
from tests.factories import FeatureFactory, SourceSetFactory

pytestmark = pytest.mark.django_db


def test_the_pipeline_job_is_created_once_with_the_demo_parameters(brown):
    job = demo_pipeline_start(enqueue=False)
    assert job.kind == "train_sae" and job.subject == f"{DEMO_MODEL_ID}/{DEMO['source_id']}"
    assert job.params["hook"] == DEMO["hook"] and job.params["tokens"] == DEMO["tokens"]
    assert demo_pipeline_start(enqueue=False).pk == job.pk
    assert Job.objects.filter(kind="train_sae").count() == 1


def test_the_demo_job_that_runs_the_pipeline_is_queued_once_and_sent_on_commit(
    brown, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as sent:
        demo_pipeline_start()
    assert len(sent) == 1  # the `demo` job's task; the train job runs inside it
    (demo,) = Job.objects.filter(kind="demo")
    assert demo.status == "PENDING" and demo.subject == f"{DEMO_MODEL_ID}/{DEMO['source_id']}"
    with django_capture_on_commit_callbacks() as sent:
        demo_pipeline_start()  # queued already: the sweep re-sends it if its worker dies
    assert sent == [] and Job.objects.filter(kind="demo").count() == 1


def test_followups_wait_for_the_pipeline_then_explain_the_top_features_once(brown):
    job = demo_pipeline_start(enqueue=False)
    assert demo_followups_start(enqueue=False) == []  # no dashboards yet

    source_set = SourceSetFactory(model=Model.objects.get(pk=DEMO_MODEL_ID), name="res-brown")
    source = Source.objects.create(
        model_id=DEMO_MODEL_ID, source_set=source_set, name=DEMO["source_id"], sae_path="/var/saes/demo"
    )
    FeatureFactory(source=source, index=0, max_act_approx=50.0, frac_nonzero=0.4)  # dense: skipped
    FeatureFactory(source=source, index=1, max_act_approx=3.0, frac_nonzero=0.01)
    FeatureFactory(source=source, index=2, max_act_approx=9.0, frac_nonzero=0.002)
    FeatureFactory(source=source, index=3, max_act_approx=7.0, frac_nonzero=0.0)  # dead: skipped
    assert demo_followups_start(enqueue=False) == []  # the train job has not finished
    job_finish(job_id=job.pk, message="trained")

    explain, umap, memory, codes, toy, evals, graphs = demo_followups_start(enqueue=False)
    assert explain.kind == "autointerp" and explain.params["indexes"] == [1, 2]
    assert explain.params["type_name"] == "np_max-act"
    assert umap.kind == "umap" and umap.params["input"] == "decoder"
    assert memory.subject == "all-minilm-l6-v2/0-passage-sae" and memory.params["corpus"] == "brown"
    assert codes.kind == "passage_codes" and codes.subject == f"{DEMO_MODEL_ID}/{DEMO['source_id']}"
    assert toy.kind == "toy_model" and toy.params["model_id"] == "toy-cyclic-4x4"
    assert evals.kind == "sae_evals" and evals.params["types"] == ["core", "sparse_probing"]
    assert graphs.kind == "demo_graphs" and graphs.subject == f"{DEMO_MODEL_ID}/tc-topk-512-brown"
    assert demo_followups_start(enqueue=False) == []  # queued ones are not queued twice

    # a failed follow-up is picked up again at the next start (a lost worker's job is the sweep's: tests/features)
    Job.objects.filter(pk=explain.pk).update(status="FAILED")
    (again,) = demo_followups_start()
    assert again.pk == explain.pk and again.status == "PENDING"


def test_demo_prepare_reports_what_it_queued(brown, capsys, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    call_command("demo_prepare", "--no-pipeline")
    assert "database: 0 models, 0 features" in capsys.readouterr().out
