"""The one-step pipeline: train an SAE, register it as a Source, generate its dashboards into the DB.

Jobs (`features.Job`, kinds `train_sae` and `dashboards`, declared in inference/jobs.py) carry their parameters,
so a worker, a management command or the admin form runs the same `job_run(job_id=...)`. Work directories are deterministic per
(model, source), so re-running an interrupted job continues where it stopped: SAELens checkpoints for
training, chunk and batch files for dashboards, and deterministic activation ids for the rows.

torch and friends are imported lazily inside the job bodies (they run in workers and commands only).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction

from features.models import Job, Model, Source, SourceSet
from features.services.jobs import JobContext, JobInterrupted, job_enqueue, job_run
from inference.jobs import KIND_DASHBOARDS, KIND_TRAIN
from inference.pipeline.evals import evals_job_create

HOOK_KINDS = {"hook_resid_post": "res", "hook_resid_pre": "res-pre", "hook_mlp_out": "mlp", "hook_attn_out": "att"}


def var_dir() -> Path:
    return Path(getattr(settings, "VAR_DIR", Path(settings.BASE_DIR) / "var"))


def saes_dir() -> Path:
    return var_dir() / "saes"


def work_dir(*, model_id: str, source_id: str, what: str) -> Path:
    return var_dir() / "work" / what / model_id / source_id


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:24] or "corpus"


def default_source_id(*, hook: str, corpus: str) -> str:
    """Neuronpedia-style `<layer>-<set>`: blocks.10.hook_resid_post on brown → `10-res-brown`."""
    parts = hook.split(".")
    layer = parts[1] if len(parts) > 1 and parts[1].isdigit() else "0"
    kind = HOOK_KINDS.get(parts[-1], _slug(parts[-1]))
    return f"{layer}-{kind}-{_slug(Path(corpus).stem if '/' in corpus else corpus)}"


def model_ensure(*, model_id: str, loader: dict, display_name: str = "", **fields) -> Model:
    model, _ = Model.objects.get_or_create(
        id=model_id, defaults={"loader": loader, "display_name": display_name or model_id, **fields}
    )
    return model


def source_register(
    *,
    model: Model,
    source_id: str,
    sae_dir: Path,
    metrics: dict | None = None,
    dataset: str = "",
    description: str = "",
) -> Source:
    """Create or update the SourceSet + Source rows for a SAELens directory (Source.sae_path → the dir)."""
    cfg = json.loads((Path(sae_dir) / "cfg.json").read_text())
    set_name = source_id.split("-", 1)[1] if "-" in source_id else source_id
    with transaction.atomic():
        source_set, _ = SourceSet.objects.get_or_create(
            model=model,
            name=set_name,
            defaults={
                "description": description or f"SAEs trained or added in memicos ({set_name})",
                "type": "sae",
                "creator_name": "memicos",
            },
        )
        updates = {
            "source_set": source_set,
            "sae_path": str(Path(sae_dir).resolve()),
            "saelens_config": cfg,
            "inference_enabled": True,
            "has_dashboards": True,
        }
        if metrics is not None:
            updates["metrics"] = metrics
        if dataset:
            updates["dataset"] = dataset
        source, _ = Source.objects.update_or_create(model=model, name=source_id, defaults=updates)
        if not model.default_source_id:
            Model.objects.filter(pk=model.pk).update(default_source_id=source_id, default_source_set_name=set_name)
    return source


def records_write(*, kind: str, model_id: str, source_id: str, records: list[dict]) -> None:
    """Dashboard rows go through the importer's loader, so generated and imported data are the same rows."""
    from imports.services import loader

    result = loader.records_load(kind=kind, model_id=model_id, source_id=source_id, records=records)
    if result.rows_skipped:
        raise RuntimeError(f"The loader skipped {result.rows_skipped} generated {kind} rows: {result.errors[:3]}")


def _load_model(model: Model):
    from inference.runtime.models import ModelSpec, load_model

    return load_model(ModelSpec.from_loader(model.loader))


def _contexts(lm, corpus: str, *, context_size: int, max_tokens: int | None):
    from inference.runtime.corpus import corpus_contexts

    return corpus_contexts(lm.tokenizer, corpus, context_size=context_size, max_tokens=max_tokens)


# ---- training ------------------------------------------------------------------------------------------


def train_job_create(
    *,
    model_id: str,
    hook: str,
    corpus: str = "brown",
    source_id: str = "",
    arch: str = "topk",
    width: int = 4608,
    k: int = 32,
    l1_coefficient: float = 5.0,
    tokens: int = 2_000_000,
    context_size: int = 128,
    batch_size_tokens: int = 4096,
    lr: float = 3e-4,
    dashboards: bool = True,
    dashboard_tokens: int = 262_144,
    created_by=None,
    send: bool = True,
) -> Job:
    """Queue (or, send=False, prepare for an inline run) the training job of this source; an unfinished one is
    resumed instead, with the parameters it started with."""
    Model.objects.get(pk=model_id)  # raises DoesNotExist for an unknown model
    source_id = source_id or default_source_id(hook=hook, corpus=corpus)
    params = {
        "model_id": model_id,
        "source_id": source_id,
        "hook": hook,
        "corpus": corpus,
        "arch": arch,
        "width": width,
        "k": k,
        "l1_coefficient": l1_coefficient,
        "tokens": tokens,
        "context_size": context_size,
        "batch_size_tokens": batch_size_tokens,
        "lr": lr,
        "dashboards": dashboards,
        "dashboard_tokens": dashboard_tokens,
    }
    return job_enqueue(
        kind=KIND_TRAIN, model_id=model_id, source=source_id, params=params, created_by=created_by,
        reuse_unfinished=True, send=send,
    )  # fmt: skip


def train_run(job: JobContext, *, echo=None, lm=None) -> dict:
    """The `train_sae` job: train (resuming), register the Source with its metrics, then run its dashboards job."""
    from inference.runtime.training import TrainingInterrupted, TrainParams, sae_train

    p = job.params
    job.progress(message="loading model")
    model = Model.objects.get(pk=p["model_id"])
    lm = lm or _load_model(model)
    job.progress(message="tokenising corpus")
    contexts = _contexts(lm, p["corpus"], context_size=p["context_size"], max_tokens=None)
    out = saes_dir() / model.id / p["source_id"]
    params = TrainParams(
        hook=p["hook"],
        arch=p["arch"],
        width=p["width"],
        k=p["k"],
        l1_coefficient=p["l1_coefficient"],
        tokens=p["tokens"],
        context_size=p["context_size"],
        batch_size_tokens=p["batch_size_tokens"],
        lr=p.get("lr", 3e-4),
    )
    progress = job.reporter(echo)
    try:
        metrics = sae_train(
            lm,
            contexts,
            params,
            out,
            model_name=model.id,
            dataset_name=p["corpus"],
            progress=lambda d, t: progress(d, t, f"training: {d:,}/{t:,} tokens"),
        )
    except TrainingInterrupted as exc:  # a worker shutting down: RUNNING, resumed from the checkpoint
        raise JobInterrupted(str(exc)) from None
    source_register(model=model, source_id=p["source_id"], sae_dir=out, metrics=metrics, dataset=p["corpus"])
    result = {"source_id": p["source_id"], "sae_path": str(out), "metrics": metrics}
    if p.get("dashboards", True):
        dash = dashboards_job_create(
            model_id=model.id,
            source_id=p["source_id"],
            corpus=p["corpus"],
            tokens=p["dashboard_tokens"],
            context_size=p["context_size"],
            send=False,
        )
        job.progress(message=f"dashboards (job {dash.pk})")
        dash = job_run(job_id=dash.pk, echo=echo, lm=lm)
        if dash.status != Job.Status.SUCCEEDED:
            raise RuntimeError(f"its dashboards job {dash.pk} ended {dash.status}: {dash.error or dash.message}")
        result["dashboards_job"] = dash.pk
    else:  # with dashboards, their job queues the evals
        evals_job_create(model_id=model.id, source_id=p["source_id"])
    job.message = f"trained {p['source_id']}"
    return result


# ---- dashboards ----------------------------------------------------------------------------------------


def dashboards_job_create(
    *,
    model_id: str,
    source_id: str,
    corpus: str = "brown",
    tokens: int = 262_144,
    context_size: int = 128,
    feature_batch: int = 256,
    evals: bool = True,
    created_by=None,
    send: bool = True,
) -> Job:
    """Queue a source's dashboards; `evals` queues its benchmarks (`sae_evals`) when they are written."""
    Source.objects.get(model_id=model_id, name=source_id)
    params = {
        "model_id": model_id,
        "source_id": source_id,
        "corpus": corpus,
        "tokens": tokens,
        "context_size": context_size,
        "feature_batch": feature_batch,
        "evals": evals,
    }
    return job_enqueue(
        kind=KIND_DASHBOARDS, model_id=model_id, source=source_id, params=params, created_by=created_by,
        reuse_unfinished=True, send=send,
    )  # fmt: skip


def dashboards_work_prepare(*, source: Source, params: dict) -> Path:
    """The dashboards checkpoint directory of `source` for these job params, emptied if it holds another
    SAE's or corpus's checkpoints."""
    work = work_dir(model_id=source.model_id, source_id=source.name, what="dashboards")
    stamp = {
        "sae_path": source.sae_path,
        "corpus": params["corpus"],
        "tokens": params["tokens"],
        "context_size": params["context_size"],
        "feature_batch": params["feature_batch"],
        "sae_mtime": (Path(source.sae_path) / "sae_weights.safetensors").stat().st_mtime,
    }
    stamp_file = work / "params.json"
    if stamp_file.exists() and json.loads(stamp_file.read_text()) != stamp:
        shutil.rmtree(work)  # another SAE or corpus: the checkpoints are not ours
    work.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(json.dumps(stamp))
    return work


def dashboards_token_pass_shared(*, jobs: list[Job], lm, progress=None) -> None:
    """Fill the token-pass checkpoints of several `dashboards` jobs of one model and corpus (a transcoder set's
    layers) with one forward pass per batch; each job then only writes its feature records."""
    from inference.runtime.dashboards import token_pass_many
    from inference.runtime.saes import SaeRef, load_sae

    p = jobs[0].params
    if any({k: j.params[k] for k in ("model_id", "corpus", "tokens", "context_size")} != {
        k: p[k] for k in ("model_id", "corpus", "tokens", "context_size")} for j in jobs):  # fmt: skip
        raise ValueError("A shared token pass needs one model, corpus and size for every dashboards job")
    sources = [Source.objects.get(model_id=j.params["model_id"], name=j.params["source_id"]) for j in jobs]
    works = [dashboards_work_prepare(source=s, params=j.params) for s, j in zip(sources, jobs, strict=True)]
    saes = [load_sae(SaeRef(path=s.sae_path)) for s in sources]
    contexts = _contexts(lm, p["corpus"], context_size=p["context_size"], max_tokens=p["tokens"])
    token_pass_many(lm, saes, contexts, works, progress=progress)


def dashboards_run(job: JobContext, *, echo=None, lm=None, stop_after: int | None = None) -> dict:
    """The `dashboards` job: every feature's dashboard into the DB. `stop_after` (tests) interrupts after N units."""
    p = job.params
    job.progress(message="loading model and SAE")
    from inference.runtime.dashboards import DashboardParams, dashboards_generate
    from inference.runtime.saes import SaeRef, load_sae

    source = Source.objects.select_related("model", "source_set").get(model_id=p["model_id"], name=p["source_id"])
    lm = lm or _load_model(source.model)
    sae = load_sae(SaeRef(path=source.sae_path))
    contexts = _contexts(lm, p["corpus"], context_size=p["context_size"], max_tokens=p["tokens"])
    work = dashboards_work_prepare(source=source, params=p)
    progress = job.reporter(echo)
    units = {"n": 0}

    def on_progress(done, total, message):
        progress(done, total, message)
        units["n"] += 1
        if stop_after is not None and units["n"] >= stop_after:
            raise JobInterrupted(f"stopped after {stop_after} units")

    batches_written = {"n": 0}

    def write(features, activations):
        batches_written["n"] += 1
        with transaction.atomic():
            records_write(kind="features", model_id=source.model_id, source_id=source.name, records=features)
            _test_pause(work, batches_written["n"])
            records_write(kind="activations", model_id=source.model_id, source_id=source.name, records=activations)

    result = dashboards_generate(
        lm,
        sae,
        contexts,
        work,
        model_id=source.model_id,
        source_id=source.name,
        write=write,
        params=DashboardParams(feature_batch=p["feature_batch"]),
        progress=on_progress,
    )
    Source.objects.filter(pk=source.pk).update(
        has_dashboards=True,
        num_prompts=result["n_contexts"],
        num_tokens_in_prompt=result["context_size"],
        dataset=p["corpus"],
    )
    if p.get("evals", True):
        evals_job_create(model_id=source.model_id, source_id=source.name)  # benchmarks (transcoders too): `sae_evals`
    job.message = f"{sae.cfg.d_sae} dashboards"
    return result


def _test_pause(work: Path, batch: int) -> None:
    """Test hook: MEMICOS_DASHBOARDS_PAUSE_AT_BATCH=N holds the Nth batch this process writes inside its
    transaction (features written, activations not) and touches `work/paused`, so a test can SIGKILL the
    worker mid-batch deterministically. Unset everywhere else."""
    if int(os.environ.get("MEMICOS_DASHBOARDS_PAUSE_AT_BATCH") or 0) == batch:
        (work / "paused").touch()
        time.sleep(300)


def add_source_job_create(
    *,
    model_id: str,
    sae_dir: str,
    source_id: str = "",
    corpus: str = "brown",
    tokens: int = 262_144,
    context_size: int = 128,
    created_by=None,
    send: bool = True,
) -> Job:
    """Register an existing SAELens directory as a Source and queue its dashboards."""
    model = Model.objects.get(pk=model_id)
    cfg = json.loads((Path(sae_dir) / "cfg.json").read_text())
    hook = (cfg.get("metadata") or {}).get("hook_name") or cfg.get("hook_name") or ""
    if not hook:
        raise ValueError("The SAE's cfg.json names no hook (metadata.hook_name)")
    source_id = source_id or default_source_id(hook=hook, corpus="sae")
    source_register(model=model, source_id=source_id, sae_dir=Path(sae_dir), dataset=corpus)
    return dashboards_job_create(
        model_id=model_id,
        source_id=source_id,
        corpus=corpus,
        tokens=tokens,
        context_size=context_size,
        created_by=created_by,
        send=send,
    )
