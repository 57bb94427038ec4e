"""Transcoder sets: train one per layer (job `train_transcoders`), register it as a SourceSet of type
"transcoder" with one Source per layer (`<layer>-<set>`, sae_path → the layer's SAELens directory), then run the
layers' dashboards and queue their explanations, so every graph node opens a real dashboard.

The model code is in inference/runtime/transcoders.py; it is imported lazily (workers and commands only).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from django.db import transaction

from features.models import Job, Model, Source, SourceSet
from features.services.jobs import JobContext, job_enqueue, job_run
from graphs.jobs import KIND_TRAIN_TRANSCODERS
from inference.pipeline.services import (
    _contexts,
    _load_model,
    _slug,
    dashboards_job_create,
    dashboards_token_pass_shared,
    var_dir,
)

SOURCE_SET_TYPE = "transcoder"
DEFAULT_EXPLAIN_TYPE = "np_max-act"


def transcoders_dir() -> Path:
    return var_dir() / "transcoders"


def default_set_name(*, arch: str, width: int, corpus: str) -> str:
    """`tc-topk-2048-brown`: the Source names are then `<layer>-tc-topk-2048-brown`."""
    return f"tc-{arch}-{width}-{_slug(Path(corpus).stem if '/' in corpus else corpus)}"


def transcoders_job_create(
    *, model_id: str, width: int = 2048, k: int = 32, tokens: int = 200_000, corpus: str = "brown",
    skip: bool = False, arch: str = "topk", context_size: int = 128, batch_size_tokens: int = 1024,
    lr: float = 1e-3, set_name: str = "", dashboards: bool = True, dashboard_tokens: int = 65_536,
    explain: bool = True, evals: bool = True, epochs: int = 1, layers_per_pass: int = 1, created_by=None,
    send: bool = True,
) -> Job:  # fmt: skip
    """Queue (or, send=False, prepare for an inline run) a set's training; an unfinished one of the same set
    is resumed instead, with the parameters it started with (its finished layers belong to them)."""
    Model.objects.get(pk=model_id)  # DoesNotExist for an unknown model
    if arch not in ("topk", "jumprelu"):
        raise ValueError(f"arch must be topk or jumprelu (got {arch!r})")
    if epochs < 1 or layers_per_pass < 1:
        raise ValueError(f"epochs and layers_per_pass must be ≥ 1 (got {epochs}, {layers_per_pass})")
    set_name = set_name or default_set_name(arch=arch, width=width, corpus=corpus)
    params = {
        "model_id": model_id, "set_name": set_name, "width": width, "k": k, "tokens": tokens, "corpus": corpus,
        "skip": skip, "arch": arch, "context_size": context_size, "batch_size_tokens": batch_size_tokens,
        "lr": lr, "dashboards": dashboards, "dashboard_tokens": dashboard_tokens, "explain": explain,
        "evals": evals,
        "epochs": epochs, "layers_per_pass": layers_per_pass,
    }  # fmt: skip
    return job_enqueue(
        kind=KIND_TRAIN_TRANSCODERS, model_id=model_id, source=set_name, params=params, created_by=created_by,
        reuse_unfinished=True, send=send,
    )  # fmt: skip


def _layer_metrics(layer_quality, set_quality) -> dict:
    m = {
        "explained_variance": layer_quality.explained_variance,
        "l0": layer_quality.l0,
        "dead_fraction": layer_quality.dead_fraction,
        "dense_fraction": layer_quality.dense_fraction,
        "mse": layer_quality.mse,
        "first_loss": layer_quality.first_loss,
        "last_loss": layer_quality.last_loss,
        "tokens_per_second": layer_quality.tokens_per_second,
    }
    if set_quality is not None:
        # the CE loss is a property of the whole set (every MLP replaced at once): the same on every layer
        m.update(
            ce_loss_clean=set_quality.ce_loss_clean,
            ce_loss_replaced=set_quality.ce_loss_replaced,
            ce_loss_zero_ablated=set_quality.ce_loss_zero_ablated,
            ce_loss_score=set_quality.ce_loss_score,
        )
    return m


def transcoder_set_register(*, model: Model, set_dir: Path, set_name: str = "", dataset: str = "") -> list[Source]:
    """SourceSet (type transcoder) + one Source per finished layer, with the layer's quality as its metrics."""
    from inference.runtime.transcoders import transcoder_set_info

    info = transcoder_set_info(Path(set_dir))
    if not info.complete:
        raise ValueError(f"{set_dir} is not a finished transcoder set (layers done: {info.finished_layers})")
    set_name = set_name or Path(set_dir).name
    by_layer = {q.layer: q for q in (info.quality.layers if info.quality else [])}
    sources = []
    with transaction.atomic():
        source_set, _ = SourceSet.objects.update_or_create(
            model=model, name=set_name,
            defaults={
                "type": SOURCE_SET_TYPE, "creator_name": "memicos",
                "description": f"Transcoders ({info.arch}, width {info.width}{', skip' if info.skip else ''}) "
                f"from {info.feature_input_hook} to {info.feature_output_hook}, trained in memicos",
            },
        )  # fmt: skip
        for layer in info.finished_layers:
            layer_dir = (Path(set_dir) / f"layer_{layer}").resolve()
            cfg = json.loads((layer_dir / "cfg.json").read_text())
            metrics = _layer_metrics(by_layer[layer], info.quality) if layer in by_layer else {}
            metrics["transcoder_set_path"] = str(Path(set_dir).resolve())
            defaults = {
                "source_set": source_set, "sae_path": str(layer_dir), "saelens_config": cfg,
                "inference_enabled": True, "metrics": metrics,
            }  # fmt: skip
            if dataset:
                defaults["dataset"] = dataset
            source, _ = Source.objects.update_or_create(model=model, name=f"{layer}-{set_name}", defaults=defaults)
            sources.append(source)
    return sources


def transcoder_set_path(*, source_set: SourceSet) -> Path:
    source = source_set.sources.exclude(metrics__transcoder_set_path=None).first()
    if source is None or not source.metrics.get("transcoder_set_path"):
        raise ValueError(f"Source set {source_set.name!r} is not a registered transcoder set")
    return Path(source.metrics["transcoder_set_path"])


def _checkpoint_seconds() -> float:
    """How often a pass of several layers saves its state (MEMICOS_TRANSCODER_CHECKPOINT_S, default 60)."""
    return float(os.environ.get("MEMICOS_TRANSCODER_CHECKPOINT_S", "60"))


def transcoders_run(job: JobContext, *, echo=None, lm=None) -> dict:
    """The `train_transcoders` job: train (resuming from finished layers), register, dashboards, explanations."""
    from inference.runtime.transcoders import TranscoderParams, finished_layers, transcoders_train

    p = job.params
    job.progress(message="loading model")
    model = Model.objects.get(pk=p["model_id"])
    lm = lm or _load_model(model)
    job.progress(message="tokenising corpus")
    contexts = _contexts(lm, p["corpus"], context_size=p["context_size"], max_tokens=None)
    out = transcoders_dir() / model.id / p["set_name"]
    params = TranscoderParams(
        width=p["width"], arch=p["arch"], k=p["k"], skip=p["skip"], tokens=p["tokens"],
        batch_size_tokens=p["batch_size_tokens"], lr=p["lr"], epochs=p.get("epochs", 1),
        layers_per_pass=p.get("layers_per_pass", 1),
    )  # fmt: skip
    report = job.reporter(echo)
    n_layers = lm.n_layers

    # layers trained together (layers_per_pass) report in turn: the fraction is the sum over layers, not the last
    tokens_done = dict.fromkeys(finished_layers(out), params.tokens)

    def progress(layer: int, done: int, total: int):
        tokens_done[layer] = done
        report(
            sum(tokens_done.values()), n_layers * total,
            f"training: layer {layer + 1}/{n_layers}, {done:,}/{total:,} tokens",
        )  # fmt: skip

    quality = transcoders_train(
        lm, contexts, params, out, model_name=model.id, progress=progress, checkpoint_every=_checkpoint_seconds()
    )
    sources = transcoder_set_register(model=model, set_dir=out, set_name=p["set_name"], dataset=p["corpus"])
    result = {
        "set_name": p["set_name"], "path": str(out), "sources": [s.name for s in sources],
        "ce_loss_score": quality.ce_loss_score, "dashboards_jobs": [], "autointerp_jobs": [],
    }  # fmt: skip
    if p.get("dashboards", True):
        dashboards = [
            dashboards_job_create(
                model_id=model.id,
                source_id=source.name,
                corpus=p["corpus"],
                tokens=p["dashboard_tokens"],
                context_size=p["context_size"],
                evals=p.get("evals", True),
                send=False,
            )  # fmt: skip
            for source in sources
        ]
        # dashboards_job_create gives unfinished jobs only; one forward pass per batch serves every layer
        dashboards_token_pass_shared(jobs=dashboards, lm=lm, progress=report)
        for source, dash in zip(sources, dashboards, strict=True):
            job.progress(message=f"dashboards of {source.name} (job {dash.pk})")
            dash = job_run(job_id=dash.pk, echo=echo, lm=lm)
            if dash.status != Job.Status.SUCCEEDED:
                raise RuntimeError(f"dashboards job {dash.pk} of {source.name} ended {dash.status}: {dash.error}")
            result["dashboards_jobs"].append(dash.pk)
        if p.get("explain", True):
            result["autointerp_jobs"] = transcoder_explanations_queue(sources=sources, created_by=job.job.created_by)
    job.message = f"trained {len(sources)} transcoders ({p['set_name']}), CE loss score {quality.ce_loss_score:.3f}"
    return result


def transcoder_explanations_queue(*, sources: list[Source], created_by=None) -> list[int]:
    """One autointerp job per layer (explanations become the graph's clerp labels)."""
    from autointerp.services import autointerp_job_create

    return [
        autointerp_job_create(source=source, type_name=DEFAULT_EXPLAIN_TYPE, user=created_by).pk for source in sources
    ]


def transcoder_set_add(
    *, model_id: str, set_dir: str, set_name: str = "", corpus: str = "brown", tokens: int = 65_536,
    context_size: int = 128, created_by=None, send: bool = True,
) -> list[Job]:  # fmt: skip
    """Register a finished transcoder set from disk (ours, or any in the same layout) and queue its layers'
    dashboards jobs."""
    model = Model.objects.get(pk=model_id)
    if not (Path(set_dir) / "config.yaml").exists():
        raise FileNotFoundError(f"{set_dir} is not a transcoder set directory (no config.yaml)")
    sources = transcoder_set_register(model=model, set_dir=Path(set_dir), set_name=set_name, dataset=corpus)
    return [
        dashboards_job_create(
            model_id=model_id,
            source_id=s.name,
            corpus=corpus,
            tokens=tokens,
            context_size=context_size,
            created_by=created_by,
            send=send,
        )  # fmt: skip
        for s in sources
    ]
