"""The embedded demo's pipeline: SmolLM2-135M-Instruct, an SAE trained here on the Brown corpus, its dashboards.

`demo_pipeline_start()` (called by `manage.py demo_prepare`) registers the model and queues one `demo` job on
gpu_batch: it runs the `train_sae` job (training → Source with metrics → dashboards), then queues the follow-ups
(`demo_followups_start`). Later runs find the finished job and reuse it; an interrupted job is sent again by the
recovery sweep and resumes from its checkpoints.

Sizes are chosen so the first run fits in 30 minutes on 2 CPU cores (measured stages in the pipeline report):
a TopK SAE (k=32, 4096 latents, ~7× d_model) on layer 9's residual stream (a third of the way up, where
SmolLM2's features are already lexical-to-semantic and the forward pass stays cheap), trained on 500k Brown
tokens (batches of 1,024, lr 1e-3: ~490 steps), dashboards over 65k tokens (512 contexts of 128).

The last follow-up, `demo_graphs`, trains SmolLM2's transcoders (DEMO_TRANSCODERS), traces DEMO_GRAPHS and has the
local LLM explain each graph's most influential features, which become the graphs' labels.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from django.conf import settings

from autointerp.jobs import AUTOINTERP_JOB, UMAP_JOB
from autointerp.services import autointerp_job_create
from autointerp.services_umap import umap_job_create
from features.models import Explanation, Job, Source
from features.services.jobs import JobContext, JobInterrupted, job_enqueue, job_resume, job_run
from graphs.jobs import KIND_TRAIN_TRANSCODERS
from graphs.models import Graph
from graphs.services.transcoders import default_set_name, transcoders_job_create
from inference.jobs import KIND_EVALS, KIND_TRAIN
from inference.pipeline.evals import evals_job_create
from inference.pipeline.services import model_ensure, train_job_create
from retrieval import services as retrieval
from retrieval.jobs import KIND_BUILD, KIND_LM_CODES, KIND_TOY

DEMO_MODEL_ID = "smollm2-135m-instruct"
DEMO = {
    "hook": "blocks.9.hook_resid_post",
    "source_id": "9-res-brown",
    "corpus": "brown",
    "arch": "topk",
    "width": 4096,
    "k": 32,
    "tokens": 500_000,
    "context_size": 128,
    "batch_size_tokens": 1024,
    "lr": 1e-3,
    "dashboard_tokens": 65_536,
}
# Attribution graphs: one transcoder per layer (30), small enough to train, dashboard and trace on 2 cores. The
# distinct tokens go through the model once (the forward pass is most of the cost on a CPU) and are replayed.
DEMO_TRANSCODERS = {
    "width": 512,
    "k": 16,
    "tokens": 196_608,
    "epochs": 6,
    "layers_per_pass": 30,
    "batch_size_tokens": 512,
    "corpus": "brown",
    "dashboard_tokens": 16_384,
    "explain": False,  # the graphs' own most influential features are explained instead (DEMO_GRAPH_EXPLAIN)
    # 30 layers' benchmarks (forward passes per layer) would hold gpu_batch long after the demo is done, and
    # a graph generated from the page would wait behind them; `manage.py eval_source` runs one layer's
    "evals": False,
}
DEMO_TRANSCODER_SET = default_set_name(arch="topk", width=DEMO_TRANSCODERS["width"], corpus="brown")
DEMO_GRAPHS = [  # (slug, prompt): a capital city, a fact about a person, and a multi-step task (indirect object)
    ("capital-of-france", "The capital of France is"),
    ("michael-jordan-sport", "Michael Jordan plays the sport of"),
    ("john-mary-drink", "When John and Mary went to the store, John gave a drink to"),
]
DEMO_GRAPH_EXPLAIN = 8  # most influential features of each graph explained by the local LLM, then its labels
KIND_DEMO_GRAPHS = "demo_graphs"
DEMO_TOY_MODEL_ID = "toy-cyclic-4x4"  # seed 003's toy; the Procfile's `toy` worker serves its interventions
DEMO_EXPLAIN = {"type_name": "np_max-act", "count": 32}  # the local SmolLM2 explains ~3 features a minute
KIND_DEMO = "demo"


def brown_ensure() -> None:
    root = Path(settings.BASE_DIR)
    subprocess.run(["bash", str(root / "scripts" / "fetch_brown.sh")], check=True)


def demo_model():
    return model_ensure(
        model_id=DEMO_MODEL_ID,
        loader={"kind": "smollm2-gguf"},
        display_name="SmolLM2-135M-Instruct",
        display_name_short="SmolLM2-135M",
        layers=30,
        neurons_per_layer=576,
        instruct=True,
        inference_enabled=True,
        owner="HuggingFaceTB",
    )


def demo_pipeline_start(*, enqueue: bool = True) -> Job:
    """Register the demo model and make sure its pipeline is done or queued. Returns its `train_sae` job."""
    model = demo_model()
    train = _latest(KIND_TRAIN, model.id, DEMO["source_id"])
    source = Source.objects.filter(model=model, name=DEMO["source_id"]).first()
    if train and train.status == Job.Status.SUCCEEDED and source and source.features.exists():
        return train
    brown_ensure()
    train = train_job_create(model_id=model.id, **DEMO, send=False)
    demo = _latest(KIND_DEMO, model.id, DEMO["source_id"])
    if enqueue and demo is None:
        job_enqueue(kind=KIND_DEMO, model_id=model.id, source=DEMO["source_id"])
    elif enqueue and demo.status in (Job.Status.FAILED, Job.Status.CANCELLED, Job.Status.SUCCEEDED):
        job_resume(job_id=demo.pk)  # PENDING or RUNNING: queued, or the sweep re-sends it if its worker died
    return train


def demo_run(job: JobContext, **inline) -> dict:
    """The `demo` job: the SAE pipeline, then the follow-ups."""
    train = train_job_create(model_id=DEMO_MODEL_ID, **DEMO, send=False)
    train = _run_inline(train)
    followups = demo_followups_start()
    job.message = f"trained {DEMO['source_id']}; {len(followups)} follow-up job(s) queued"
    return {"train_job": train.pk, "followups": [f.pk for f in followups]}


def demo_top_feature_indexes(source: Source, count: int) -> list[int]:
    """The features worth explaining first: strongest maxima among those neither dead nor dense (≤ 5%)."""
    qs = source.features.filter(frac_nonzero__gt=0, frac_nonzero__lte=0.05).order_by("-max_act_approx")
    return list(qs.values_list("index", flat=True)[:count])


def demo_followups_start(*, enqueue: bool = True) -> list[Job]:
    """Once the demo's dashboards exist, queue (each once) what makes the rest of the platform show: explanations
    of the top features and a UMAP (autointerp), then on gpu_batch the seed systems: the passage-SAE memory
    source, per-passage codes of the demo SAE for composite retrieval, and the cyclic toy model with its SAE.

    Called when the pipeline finishes and on every `demo_prepare`, so a failed follow-up is picked up again at
    the next start (each job resumes from its own checkpoints; a lost worker's job is re-sent by the sweep)."""
    train = _latest(KIND_TRAIN, DEMO_MODEL_ID, DEMO["source_id"])
    if train is None or train.status != Job.Status.SUCCEEDED:
        return []  # dashboards still being written: explaining now would pick from a partial source
    source = Source.objects.get(model_id=DEMO_MODEL_ID, name=DEMO["source_id"])
    send = {"send": enqueue}
    followups = [
        (AUTOINTERP_JOB, DEMO_MODEL_ID, source.name, lambda: autointerp_job_create(
            source=source, type_name=DEMO_EXPLAIN["type_name"],
            indexes=demo_top_feature_indexes(source, DEMO_EXPLAIN["count"]), **send)),
        (UMAP_JOB, DEMO_MODEL_ID, source.name, lambda: umap_job_create(source=source, input_kind="decoder", **send)),
        (KIND_BUILD, retrieval.EMBEDDER_MODEL_ID, retrieval.DEFAULT_SOURCE_ID,
         lambda: retrieval.memory_source_job_create(**send)),
        (KIND_LM_CODES, DEMO_MODEL_ID, source.name,
         lambda: retrieval.lm_codes_job_create(model_id=DEMO_MODEL_ID, source_id=source.name, **send)),
        (KIND_TOY, DEMO_TOY_MODEL_ID, None, lambda: retrieval.toy_job_create(model_id=DEMO_TOY_MODEL_ID, **send)),
        (KIND_EVALS, DEMO_MODEL_ID, source.name, lambda: evals_job_create(model_id=DEMO_MODEL_ID, source_id=source.name, **send)),
        (KIND_DEMO_GRAPHS, DEMO_MODEL_ID, DEMO_TRANSCODER_SET, lambda: job_enqueue(
            kind=KIND_DEMO_GRAPHS, model_id=DEMO_MODEL_ID, source=DEMO_TRANSCODER_SET, **send)),
    ]  # fmt: skip
    jobs = []
    for kind, model_id, source_name, enqueue_new in followups:
        job = _latest(kind, model_id, source_name)
        if job is None:
            jobs.append(enqueue_new())
        elif job.status in (Job.Status.FAILED, Job.Status.CANCELLED):
            jobs.append(job_resume(job_id=job.pk) if enqueue else job)
    return jobs


def demo_graphs_run(job: JobContext, **inline) -> dict:
    """The `demo_graphs` job: SmolLM2's transcoders (trained, dashboards in one shared pass), the demo's graphs,
    then explanations of each graph's most influential features, written into the graphs' empty labels.
    Resumes: finished layers, READY graphs and explained features are skipped."""
    from autointerp.services import explanation_generate
    from graphs.services.graphs import graph_generate_start
    from graphs.services.labels import graph_features, graph_labels_refresh, graph_top_features
    from inference.runtime import worker

    model = demo_model()
    lm = worker.model_for(model.id, model.loader)  # shared with the graph jobs below (one copy in memory)
    train = _latest(KIND_TRAIN_TRANSCODERS, model.id, DEMO_TRANSCODER_SET)
    if train is None or train.status != Job.Status.SUCCEEDED:
        train = transcoders_job_create(model_id=model.id, **DEMO_TRANSCODERS, send=False)
        train = _run_inline(train, lm=lm)
    graphs = []
    for slug, prompt in DEMO_GRAPHS:
        graph = Graph.objects.filter(model=model, slug=slug).first()
        if graph is None:
            graph = graph_generate_start(model=model, prompt=prompt, slug=slug, source_set_name=DEMO_TRANSCODER_SET,
                                         send=False)  # fmt: skip
        if graph.status != Graph.Status.READY:
            job.progress(message=f"tracing {prompt!r}")
            _run_inline(job_resume(job_id=graph.job_id, send=False))
            graph.refresh_from_db()
        graphs.append(graph)
    explained = labelled = 0
    for graph in graphs:
        for feature in graph_features(graph=graph, keys=graph_top_features(graph=graph, count=DEMO_GRAPH_EXPLAIN)):
            if not Explanation.objects.filter(feature=feature).exists():
                job.progress(message=f"explaining {feature.source_id}/{feature.index} of {graph.slug}")
                explanation_generate(feature=feature, type_name=DEMO_EXPLAIN["type_name"])
                explained += 1
        labelled += graph_labels_refresh(graph=graph)
    job.message = f"{len(graphs)} graphs; {explained} features explained, {labelled} labels filled"
    return {"train_job": train.pk, "graphs": [g.slug for g in graphs], "explained": explained, "labelled": labelled}


def _run_inline(job: Job, **inline) -> Job:
    job = job_run(job_id=job.pk, **inline)
    if job.status == Job.Status.RUNNING:
        raise JobInterrupted(f"its {job.kind} job {job.pk} runs elsewhere")  # the sweep sends this again
    if job.status != Job.Status.SUCCEEDED:
        raise RuntimeError(f"{job.kind} job {job.pk} {job.status}: {job.error}")
    return job


def _latest(kind: str, model_id: str, source_name: str | None) -> Job | None:
    jobs = Job.objects.filter(kind=kind, model_id=model_id)
    if source_name is not None:
        jobs = jobs.filter(source_name=source_name)
    return jobs.order_by("-pk").first()
