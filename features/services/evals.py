"""SAE benchmark results (Eval rows) in SAEBench's output format, and their eval types.

An eval's JSON is SAEBench's output file (`eval_type_id`, `eval_config`, `eval_id`, `datetime_epoch_millis`,
`eval_result_metrics`, `eval_result_details`, `sae_bench_commit_hash`, `sae_lens_id`, `sae_lens_release_id`,
`sae_lens_version`, `sae_cfg_dict`, `eval_result_unstructured`). As Neuronpedia does, the row keeps it in two parts:
`output` without `eval_result_details`, and the details in `detailed_metrics`; `eval_output_full` joins them.

The eval types computed here (`core`, `sparse_probing`) carry a JSON schema of their metrics in SAEBench's shape
(category → metric → title, description, `ui_default_display`), written here. It names exactly the metrics of
SAEBench 0.6.0's output dataclasses and marks the same ones for display (tests/fixtures/saebench holds the schema
SAEBench generates, to compare); an imported `config/eval_type.jsonl` row with SAEBench's own schema replaces it.
"""

from __future__ import annotations

import math
import time
import uuid
from importlib.metadata import PackageNotFoundError, version

from django.db import transaction

from features.models import Eval, EvalType, Source

SAEBENCH_KEYS = (
    "eval_type_id",
    "eval_config",
    "eval_id",
    "datetime_epoch_millis",
    "eval_result_metrics",
    "eval_result_details",
    "sae_bench_commit_hash",
    "sae_lens_id",
    "sae_lens_release_id",
    "sae_lens_version",
    "sae_cfg_dict",
    "eval_result_unstructured",
)
# the commit field names what produced the numbers: our own implementation of the recipe, not SAEBench's code
PRODUCER = "memicos"


def _metric(title: str, description: str, *, display: bool = False) -> dict:
    out = {"type": "number", "title": title, "description": description}
    if display:
        out["ui_default_display"] = True
    return out


def _category(title: str, description: str, metrics: dict) -> dict:
    return {"type": "object", "title": title, "description": description, "properties": metrics}


def _schema(title: str, categories: dict) -> dict:
    return {
        "title": title,
        "type": "object",
        "properties": {"eval_result_metrics": {"type": "object", "properties": categories}},
    }


def _probe_metrics(prefix: str, what: str, k_values=(1, 2, 5, 10, 20, 50, 100)) -> dict:
    out = {
        f"{prefix}_test_accuracy": _metric(
            f"{what} probe accuracy", f"Probe on every dimension of the {what}", display=True
        )
    }
    for k in k_values:
        out[f"{prefix}_top_{k}_test_accuracy"] = _metric(
            f"{what} top-{k} accuracy",
            f"Probe on the {k} dimension(s) of the {what} whose class means differ most",
            display=k <= 5,
        )
    return out


CORE_SCHEMA = _schema(
    "Core",
    {
        "model_behavior_preservation": _category(
            "Model behaviour preserved",
            "KL divergence of the next-token distribution with the SAE spliced in",
            {
                "kl_div_score": _metric("KL score", "(KL ablated − KL with SAE) / KL ablated", display=True),
                "kl_div_with_ablation": _metric("KL, zero-ablated", "KL divergence with the hook's output zeroed"),
                "kl_div_with_sae": _metric("KL, with SAE", "KL divergence with the SAE's reconstruction spliced in"),
            },
        ),
        "model_performance_preservation": _category(
            "Model performance preserved",
            "Next-token cross-entropy loss with the SAE spliced in",
            {
                "ce_loss_score": _metric(
                    "CE loss score", "(CE ablated − CE with SAE) / (CE ablated − CE clean)", display=True
                ),
                "ce_loss_with_ablation": _metric(
                    "CE loss, zero-ablated", "Cross-entropy with the hook's output zeroed"
                ),
                "ce_loss_with_sae": _metric("CE loss, with SAE", "Cross-entropy with the SAE's reconstruction"),
                "ce_loss_without_sae": _metric("CE loss, clean", "Cross-entropy of the unchanged model"),
            },
        ),
        "reconstruction_quality": _category(
            "Reconstruction",
            "How well the SAE reconstructs the activations it reads",
            {
                "explained_variance": _metric("Explained variance", "1 − Var(x − x̂) / Var(x)", display=True),
                "explained_variance_legacy": _metric(
                    "Explained variance (legacy)", "Per-token explained variance, averaged", display=True
                ),
                "mse": _metric("MSE", "Mean squared reconstruction error"),
                "cossim": _metric("Cosine similarity", "Cosine similarity of x and x̂"),
            },
        ),
        "shrinkage": _category(
            "Shrinkage",
            "Norm of the reconstruction against the input",
            {
                "l2_norm_in": _metric("L2 norm in", "Mean L2 norm of the input"),
                "l2_norm_out": _metric("L2 norm out", "Mean L2 norm of the reconstruction"),
                "l2_ratio": _metric("L2 ratio", "Norm out / norm in", display=True),
                "relative_reconstruction_bias": _metric("Relative reconstruction bias", "E[x̂·x] / E[x̂·x̂] scaled"),
            },
        ),
        "sparsity": _category(
            "Sparsity",
            "How many latents fire",
            {
                "l0": _metric("L0", "Mean number of latents firing per token", display=True),
                "l1": _metric("L1", "Mean L1 norm of the latents per token"),
            },
        ),
        "token_stats": _category(
            "Tokens",
            "Tokens evaluated",
            {
                "total_tokens_eval_reconstruction": _metric("Tokens (reconstruction)", "Tokens in the CE/KL batches"),
                "total_tokens_eval_sparsity_variance": _metric("Tokens (sparsity)", "Tokens in the sparsity batches"),
            },
        ),
        "misc_metrics": _category(
            "Latent health",
            "How often latents fire over the evaluated tokens, and how alike their weights are",
            {
                "freq_over_1_percent": _metric("Over 1%", "Fraction of latents firing on more than 1% of tokens"),
                "freq_over_10_percent": _metric("Over 10%", "Fraction of latents firing on more than 10% of tokens"),
                "normalized_freq_over_1_percent": _metric(
                    "Over 1%, weighted", "Share of all firings that come from latents firing on more than 1% of tokens"
                ),
                "normalized_freq_over_10_percent": _metric(
                    "Over 10%, weighted",
                    "Share of all firings that come from latents firing on more than 10% of tokens",
                ),
                "average_max_encoder_cosine_sim": _metric(
                    "Mean max encoder cosine", "Mean over latents of the largest cosine to another encoder row"
                ),
                "average_max_decoder_cosine_sim": _metric(
                    "Mean max decoder cosine", "Mean over latents of the largest cosine to another decoder row"
                ),
                "frac_alive": _metric("Alive fraction", "Fraction of latents that fired at least once"),
            },
        ),
    },
)

SPARSE_PROBING_SCHEMA = _schema(
    "Sparse probing",
    {
        "llm": _category(
            "Residual stream",
            "Probes on the model's activations at the SAE's hook",
            _probe_metrics("llm", "residual stream"),
        ),
        "sae": _category("SAE latents", "Probes on the SAE's latents", _probe_metrics("sae", "SAE latents")),
    },
)

EVAL_TYPE_DEFAULTS = {
    "core": {
        "display_name": "Core",
        "description": "Reconstruction, sparsity and downstream loss with the SAE spliced in (SAELens's evals).",
        "longer_description": (
            "Explained variance and MSE of the reconstruction, L0 and L1 of the latents, dead and dense latents, and "
            "the next-token loss and KL divergence with the SAE's reconstruction in place of the activations, "
            "scored between the clean model (1) and zero-ablation (0). Computed on held-out Brown-corpus tokens."
        ),
        "output_schema": CORE_SCHEMA,
        "featured": True,
    },
    "sparse_probing": {
        "display_name": "Sparse Probing",
        "description": "k-sparse probes for Brown-corpus genres on SAE latents against the residual stream.",
        "longer_description": (
            "For each of the largest Brown genres, a balanced genre-against-the-rest task on 127-token texts, split "
            "by document. The k latents (or residual dimensions) whose class means differ most feed a logistic "
            "regression; its test accuracy for each k says how much of the genre a handful of latents carries."
        ),
        "output_schema": SPARSE_PROBING_SCHEMA,
        "featured": True,
    },
}


def eval_types_ensure() -> None:
    """The eval types computed here exist (an imported row of the same name is left as it is)."""
    for name, fields in EVAL_TYPE_DEFAULTS.items():
        EvalType.objects.get_or_create(name=name, defaults=fields)


def _sae_lens_version() -> str | None:
    """The SAELens that ran the evaluation, as SAEBench records it (read from the install, not imported)."""
    try:
        return version("sae-lens")
    except PackageNotFoundError:
        return None


def eval_output_build(
    *, eval_type: str, config: dict, metrics: dict, details: list | None, source: Source, unstructured=None
) -> dict:
    """SAEBench's output JSON for a result computed here; `unstructured` holds what SAEBench has no field for."""
    cfg = source.saelens_config or {}
    return {
        "eval_type_id": eval_type,
        "eval_config": config,
        "eval_id": str(uuid.uuid4()),
        "datetime_epoch_millis": int(time.time() * 1000),
        "eval_result_metrics": metrics,
        "eval_result_details": details or [],
        "sae_bench_commit_hash": PRODUCER,
        "sae_lens_id": source.saelens_sae_id or source.name,
        "sae_lens_release_id": source.saelens_release or source.source_set.name,
        "sae_lens_version": _sae_lens_version(),
        "sae_cfg_dict": cfg,
        "eval_result_unstructured": unstructured if unstructured is not None else {},
    }


def _finite(value):
    """NaN and ±inf as null: SAEBench files written by Python's json may hold them, Postgres's jsonb refuses them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def eval_store(*, source: Source, output: dict) -> Eval:
    """Create or replace the source's eval of `output["eval_type_id"]` (one per source and type)."""
    output = _finite(output)
    type_name = output.get("eval_type_id")
    if not type_name or not isinstance(output.get("eval_result_metrics"), dict):
        raise ValueError("An eval needs SAEBench's eval_type_id and eval_result_metrics")
    if type_name in EVAL_TYPE_DEFAULTS:
        eval_types_ensure()
    if not EvalType.objects.filter(pk=type_name).exists():
        raise ValueError(f"Unknown eval type {type_name!r}: import config/eval_type.jsonl first")
    body = {k: v for k, v in output.items() if k != "eval_result_details"}
    with transaction.atomic():
        row, _ = Eval.objects.update_or_create(
            source=source,
            type_id=type_name,
            defaults={
                "model_id": source.model_id,
                "output": body,
                "detailed_metrics": output.get("eval_result_details"),
            },
        )
    return row


def eval_output_full(row: Eval) -> dict:
    """The SAEBench file again: `output` with `eval_result_details` put back."""
    return {**row.output, "eval_result_details": row.detailed_metrics or []}
