"""The `sae_evals` job: SAE benchmarks of a source, stored as SAEBench output JSON (features/services/evals.py).

Eval types: `core` (SAELens's metrics on held-out Brown tokens) and `sparse_probing` (k-sparse probes of Brown
genres on SAE latents against the residual stream), computed by inference/runtime/evals.py. A transcoder layer
(a source of a `transcoder` set) gets the same two types: its core metrics are of the MLP output it predicts, with
that layer's MLP replaced, and its probes read the MLP input it encodes; `eval_result_unstructured.sae_kind` says
`transcoder` (`eval_config` keeps SAEBench's fields only). It is queued when a training or a dashboards job
finishes, by `manage.py eval_source`, and by the demo. Each type is stored as soon as it is computed, so a rerun
after an interruption skips the types already stored by this job.
"""

from __future__ import annotations

from features.models import Eval, Job, Source
from features.services.evals import eval_output_build, eval_store
from features.services.jobs import JobContext, job_enqueue
from inference.jobs import KIND_EVALS

EVAL_TYPES = ("core", "sparse_probing")
DEFAULTS = {
    "corpus": "brown",
    "context_size": 128,
    "core_batches": 10,
    "batch_size_prompts": 8,
    "k_values": [1, 2, 5, 20],
    "max_per_class": 120,
    "max_tasks": 8,
}


def evals_job_create(
    *, model_id: str, source_id: str, types: list[str] | tuple[str, ...] = EVAL_TYPES, created_by=None,
    send: bool = True, **overrides,
) -> Job:  # fmt: skip
    """Queue (or, send=False, prepare for an inline run) the benchmarks of a source that has SAE weights here."""
    source = Source.objects.get(model_id=model_id, name=source_id)
    if not source.sae_path:
        raise ValueError(f"{model_id}/{source_id} has no SAE weights here (sae_path): nothing to evaluate")
    unknown = sorted(set(types) - set(EVAL_TYPES))
    if unknown:
        raise ValueError(f"Unknown eval types {unknown}: choose from {', '.join(EVAL_TYPES)}")
    params = {"model_id": model_id, "source_id": source_id, "types": list(types), **DEFAULTS, **overrides}
    return job_enqueue(
        kind=KIND_EVALS, model_id=model_id, source=source_id, params=params, created_by=created_by,
        reuse_unfinished=True, send=send,
    )  # fmt: skip


def evals_run(job: JobContext, *, echo=None, lm=None) -> dict:
    from inference.pipeline.services import _contexts, _load_model
    from inference.runtime.evals import CoreParams, ProbeParams, core_eval, sparse_probing_eval
    from inference.runtime.saes import SaeRef, load_sae

    p = job.params
    source = Source.objects.select_related("model", "source_set").get(model_id=p["model_id"], name=p["source_id"])
    job.progress(message="loading model and SAE")
    lm = lm or _load_model(source.model)
    sae = load_sae(SaeRef(path=source.sae_path))
    contexts = _contexts(lm, p["corpus"], context_size=p["context_size"], max_tokens=None)
    report = job.reporter(echo)
    done_before = set(
        Eval.objects.filter(source=source, output__eval_result_unstructured__memicos_job=job.job_id).values_list(
            "type_id", flat=True
        )
    )
    stored = {}
    for eval_type in p["types"]:
        if eval_type in done_before:
            continue
        if eval_type == "core":
            core = CoreParams(
                n_eval_reconstruction_batches=p["core_batches"],
                n_eval_sparsity_variance_batches=p["core_batches"],
                batch_size_prompts=p["batch_size_prompts"],
            )
            result = core_eval(lm, sae, contexts, params=core, progress=report)
        else:
            if not any(contexts.genres):
                stored[eval_type] = f"skipped: corpus {p['corpus']!r} has no genres"
                continue
            probe = ProbeParams(k_values=p["k_values"], max_per_class=p["max_per_class"], max_tasks=p["max_tasks"])
            result = sparse_probing_eval(lm, sae, contexts, params=probe, progress=report)
        output = eval_output_build(
            eval_type=eval_type,
            config=result["config"],
            metrics=result["metrics"],
            details=result["details"],
            source=source,
            unstructured={**result["unstructured"], "memicos_job": job.job_id},
        )
        stored[eval_type] = eval_store(source=source, output=output).pk
    job.message = f"evals of {source.name}: {', '.join(stored) or 'already stored'}"
    return {"source_id": source.name, "evals": stored}
