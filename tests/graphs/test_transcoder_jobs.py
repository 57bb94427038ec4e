"""The train_transcoders job: per-layer progress, Sources with quality, dashboards, resume; add_source from disk."""

import json

import pytest
from django.core.management import call_command

from features.models import Feature, Job, Source, SourceSet
from features.services.jobs import JobInterrupted, job_run
from graphs.services.transcoders import transcoders_job_create
from tests.autointerp.conftest import llm_env, llm_server  # noqa: F401 (fixtures)
from tests.conftest import ROOT
from tests.graphs.conftest import TINY_ID

TINY_JOB = {"width": 64, "k": 4, "tokens": 4096, "batch_size_tokens": 256, "context_size": 32, "lr": 3e-3}


@pytest.fixture
def corpus_var(var_dir):
    (var_dir / "corpus").symlink_to(ROOT / "var" / "corpus")
    return var_dir


def test_the_training_job_registers_one_source_per_layer_with_its_quality_and_writes_their_dashboards(
    tiny_model, corpus_var, tiny_lm, client
):
    job = transcoders_job_create(model_id=TINY_ID, set_name="tc-job", dashboards=True, dashboard_tokens=2048,
                                 explain=False, send=False, **TINY_JOB)  # fmt: skip
    seen = []
    job = job_run(job_id=job.pk, lm=tiny_lm, echo=lambda d, t, m=None: seen.append((d, t, m)))
    assert job.status == Job.Status.SUCCEEDED, job.error
    source_set = SourceSet.objects.get(model_id=TINY_ID, name="tc-job")
    assert source_set.type == "transcoder"
    sources = {s.name: s for s in Source.objects.filter(source_set=source_set)}
    assert set(sources) == {"0-tc-job", "1-tc-job"}
    for source in sources.values():
        m = source.metrics
        for key in ("explained_variance", "l0", "dead_fraction", "ce_loss_replaced", "ce_loss_clean", "ce_loss_score"):
            assert isinstance(m[key], float), key
        assert 0 < m["l0"] < 64 and 0 <= m["dead_fraction"] <= 1
        assert (corpus_var / "transcoders" / TINY_ID / "tc-job" / "config.yaml").exists()
        # the batched dashboard generator ran on the transcoder (its MLP-input hook): one row per feature
        assert Feature.objects.filter(source=source).count() == 64
        assert source.has_dashboards
    training = [s for s in seen if s[2] and s[2].startswith("training: layer")]
    assert {s[2].split(",")[0] for s in training} == {"training: layer 1/2", "training: layer 2/2"}
    assert training[-1][0] == training[-1][1]  # progress reaches its total
    assert any(m and m.startswith("token pass of 2 sources") for _, _, m in seen)  # one forward for both layers
    # each layer's dashboards queued its benchmarks (tests/graphs/test_transcoder_evals.py runs them)
    queued = Job.objects.filter(kind="sae_evals", model_id=TINY_ID, status=Job.Status.PENDING)
    assert sorted(queued.values_list("source_name", flat=True)) == ["0-tc-job", "1-tc-job"]
    page = client.get(f"/{TINY_ID}/0-tc-job/").content.decode()  # the quality is shown on the source's page
    assert "explained variance" in page and "dead_fraction" in page and "ce_loss_replaced" in page


def test_an_interrupted_training_job_resumes_from_its_finished_layers(tiny_model, corpus_var, tiny_lm):
    job = transcoders_job_create(model_id=TINY_ID, set_name="tc-resume", dashboards=False, explain=False,
                                 send=False, **TINY_JOB)  # fmt: skip
    out = corpus_var / "transcoders" / TINY_ID / "tc-resume"

    def stop_in_layer_2(done, total, message=None):
        if message and message.startswith("training: layer 2/2"):
            raise JobInterrupted("stopped in layer 2")

    job = job_run(job_id=job.pk, lm=tiny_lm, echo=stop_in_layer_2)
    assert job.status == Job.Status.RUNNING  # left for a rerun
    assert (out / "layer_0" / "metrics.json").exists() and not (out / "layer_1").exists()
    first = (out / "layer_0.safetensors").stat().st_mtime_ns
    seen = []
    job = job_run(job_id=job.pk, lm=tiny_lm, echo=lambda d, t, m=None: seen.append(m or ""))
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert (out / "layer_0.safetensors").stat().st_mtime_ns == first  # layer 0 was not trained again
    assert not any(m.startswith("training: layer 1/2") for m in seen)
    assert Source.objects.filter(model_id=TINY_ID, source_set__name="tc-resume").count() == 2


def test_add_source_registers_a_transcoder_set_from_disk(tiny_model, tset_dir, corpus_var):
    call_command("add_source", TINY_ID, "--transcoder-dir", str(tset_dir), "--set-name", "tc-disk", "--queue")
    sources = Source.objects.filter(model_id=TINY_ID, source_set__name="tc-disk").order_by("name")
    assert [s.name for s in sources] == ["0-tc-disk", "1-tc-disk"]
    assert json.loads((tset_dir / "layer_1" / "cfg.json").read_text())["d_sae"] == 64
    assert all(s.sae_path.endswith(f"layer_{i}") for i, s in enumerate(sources))
    assert Job.objects.filter(kind="dashboards", model_id=TINY_ID).count() == 2


@pytest.fixture
def worker_env(transactional_db, settings, tmp_path):
    """The tiny model registered for a real worker process, the var dir it shares with the test, and its env."""
    from tests.factories import ModelFactory
    from tests.inference.conftest import TINY_LOADER

    settings.VAR_DIR = tmp_path
    (tmp_path / "corpus").symlink_to(ROOT / "var" / "corpus")
    ModelFactory(id=TINY_ID, loader=TINY_LOADER, layers=2, dimension=64)
    return {"MEMICOS_VAR_DIR": tmp_path, "MEMICOS_JOB_LEASE_TTL": 2, "MEMICOS_JOB_SWEEP_S": 1}


@pytest.mark.slow
def test_a_training_job_whose_worker_is_sigkilled_resumes_on_another_worker_after_its_finished_layers(
    worker_env, start_worker, tmp_path
):
    from features.services.jobs import job_send
    from tests.conftest import wait_until

    env = worker_env
    params = {**TINY_JOB, "tokens": 200_000}  # long enough that layer 2 is still training when the kill comes
    job = transcoders_job_create(model_id=TINY_ID, set_name="tc-kill", dashboards=False, explain=False, send=False,
                                 **params)  # fmt: skip
    out = tmp_path / "transcoders" / TINY_ID / "tc-kill"
    worker = start_worker(["gpu_batch"], name="tc-kill", **env)
    job_send(job_id=job.pk)
    wait_until(lambda: (out / "layer_0" / "metrics.json").exists(), 300, "layer 0 to finish", 0.1)
    worker.kill()  # SIGKILL while layer 1 trains
    assert not (out / "layer_1").exists() and Job.objects.get(pk=job.pk).status == Job.Status.RUNNING
    first = (out / "layer_0.safetensors").stat().st_mtime_ns
    start_worker(["gpu_batch"], name="tc-resume", wait=False, **env)
    wait_until(lambda: Job.objects.get(pk=job.pk).finished, 300, "the job to finish on the second worker", 0.5)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert (out / "layer_0.safetensors").stat().st_mtime_ns == first  # layer 0 was kept, not trained again
    assert (out / "config.yaml").exists()
    assert Source.objects.filter(model_id=TINY_ID, source_set__name="tc-kill").count() == 2


@pytest.mark.slow
def test_a_pass_of_all_layers_whose_worker_is_sigkilled_resumes_from_its_checkpoint_on_another_worker(
    worker_env, start_worker, tmp_path
):
    import torch

    from features.services.jobs import job_send
    from inference.runtime.transcoders import finished_layers
    from tests.conftest import wait_until

    env = {**worker_env, "MEMICOS_TRANSCODER_CHECKPOINT_S": 0.5}
    params = {**TINY_JOB, "tokens": 400_000, "layers_per_pass": 2}  # both layers in one pass, as the demo does
    job = transcoders_job_create(model_id=TINY_ID, set_name="tc-pass", dashboards=False, explain=False, send=False,
                                 **params)  # fmt: skip
    out = tmp_path / "transcoders" / TINY_ID / "tc-pass"
    ckpt = out / ".pass_0-1.pt"
    worker = start_worker(["gpu_batch"], name="tc-pass", **env)
    job_send(job_id=job.pk)
    wait_until(lambda: ckpt.exists() and torch.load(ckpt, weights_only=True)["step"] >= 100, 300, "step 100", 0.05)
    worker.kill()  # SIGKILL in the middle of the pass
    saved = torch.load(ckpt, weights_only=True)["step"]
    assert finished_layers(out) == [] and Job.objects.get(pk=job.pk).status == Job.Status.RUNNING
    assert saved < params["tokens"] // params["batch_size_tokens"]
    start_worker(["gpu_batch"], name="tc-pass-2", wait=False, **env)
    wait_until(lambda: Job.objects.get(pk=job.pk).finished, 300, "the job to finish on the second worker", 0.5)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    for layer in (0, 1):  # each layer went on from the last checkpoint before the kill, not from step 0
        assert json.loads((out / f"layer_{layer}" / "metrics.json").read_text())["resumed_at_step"] == saved
    assert not ckpt.exists() and Source.objects.filter(model_id=TINY_ID, source_set__name="tc-pass").count() == 2


def test_each_layer_of_a_trained_set_gets_an_autointerp_job_for_its_explanations(tiny_graph_model, user):
    from graphs.services.transcoders import transcoder_explanations_queue

    sources = list(Source.objects.filter(model=tiny_graph_model, source_set__type="transcoder").order_by("name"))
    ids = transcoder_explanations_queue(sources=sources, created_by=user)
    jobs = Job.objects.filter(pk__in=ids).order_by("source_name")
    assert [(j.kind, j.source_name, j.params["type_name"]) for j in jobs] == [
        ("autointerp", "0-tc-tiny", "np_max-act"),
        ("autointerp", "1-tc-tiny", "np_max-act"),
    ]


def test_a_shared_token_pass_gives_each_layer_the_codes_of_its_own_pass(tiny_lm, tset_dir):
    """The transcoder job's dashboards share one forward pass per batch across layers; each layer's checkpoint
    must hold exactly what a pass of its own would have found."""
    import torch

    from inference.runtime.corpus import corpus_contexts
    from inference.runtime.dashboards import DashboardParams, token_chunk, token_chunks_many
    from inference.runtime.saes import SaeRef, load_sae

    contexts = corpus_contexts(tiny_lm.tokenizer, "brown", context_size=32, max_tokens=2048)
    saes = [load_sae(SaeRef(path=str(tset_dir / f"layer_{layer}"))) for layer in range(tiny_lm.n_layers)]
    params = DashboardParams(batch_contexts=8)
    shared = token_chunks_many(tiny_lm, saes, contexts, 0, 32, params)
    for sae, mine in zip(saes, shared, strict=True):
        alone = token_chunk(tiny_lm, sae, contexts, 0, 32, params)
        assert mine["value"].numel() > 0
        for key in ("feature", "token"):
            assert torch.equal(mine[key], alone[key])
        assert torch.allclose(mine["value"], alone["value"])
        assert (mine["n_positions"], mine["n_masked"]) == (alone["n_positions"], alone["n_masked"])


@pytest.mark.slow
def test_the_demo_graphs_job_trains_traces_explains_and_labels_then_resumes_without_redoing_anything(
    tiny_model,
    corpus_var,
    llm_env,  # noqa: F811 (fixture)
    monkeypatch,
):
    """memicos_site/demo.py's `demo_graphs` job at the tiny model's sizes, with the real local LLM."""
    import gzip

    from features.models import Explanation
    from features.services.jobs import job_enqueue
    from graphs.models import Graph
    from graphs.services.graphs import graph_json_bytes
    from memicos_site import demo

    monkeypatch.setattr(demo, "demo_model", lambda: tiny_model)
    monkeypatch.setattr(demo, "DEMO_TRANSCODER_SET", "tc-demo")
    monkeypatch.setattr(demo, "DEMO_TRANSCODERS", {
        **TINY_JOB, "set_name": "tc-demo", "epochs": 2, "layers_per_pass": 2, "dashboard_tokens": 2048,
        "explain": False, "evals": False,
    })  # fmt: skip
    monkeypatch.setattr(demo, "DEMO_GRAPHS", [("capital", "The capital of France is")])
    monkeypatch.setattr(demo, "DEMO_GRAPH_EXPLAIN", 2)

    job = job_run(job_id=job_enqueue(kind="demo_graphs", model_id=TINY_ID, source="tc-demo", send=False).pk)
    assert job.status == Job.Status.SUCCEEDED, job.error
    graph = Graph.objects.get(model=tiny_model, slug="capital")
    assert graph.status == Graph.Status.READY and job.result["graphs"] == ["capital"]
    explanations = {(e.source.name.split("-")[0], e.feature.index): e.description
                    for e in Explanation.objects.filter(model=tiny_model)}  # fmt: skip
    assert len(explanations) == job.result["explained"] == 2
    assert not Job.objects.filter(kind="sae_evals", model_id=TINY_ID).exists()  # the demo's set: no benchmarks
    nodes = json.loads(gzip.decompress(graph_json_bytes(graph=graph)))["nodes"]
    labelled = [n for n in nodes if n["feature_type"] == "cross layer transcoder" and n["clerp"]]
    assert len(labelled) == job.result["labelled"] > 0
    for node in labelled:
        layer, index, _ = node["node_id"].split("_")
        assert node["clerp"] == explanations[(layer, int(index))]

    again = job_run(job_id=job_enqueue(kind="demo_graphs", model_id=TINY_ID, source="tc-demo", send=False).pk)
    assert again.status == Job.Status.SUCCEEDED, again.error
    assert again.result["train_job"] == job.result["train_job"]  # the finished training is not redone
    assert (again.result["explained"], again.result["labelled"]) == (0, 0)
    assert Graph.objects.filter(model=tiny_model).count() == 1
