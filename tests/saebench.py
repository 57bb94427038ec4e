"""SAEBench 0.6.0's own files (tests/fixtures/saebench, see its README) and the shape of an output, to compare."""

import json
from pathlib import Path

DIR = Path(__file__).parent / "fixtures" / "saebench"
FILE_NAME = "sae_bench_pythia70m_sweep_topk_ctx128_0730_blocks.4.hook_resid_post__trainer_10_eval_results.json"
# the metrics SAEBench's dataclasses mark `ui_default_display`, as /sae-bench column ids (`type||category||metric`)
DEFAULT_DISPLAY = {
    "core": {
        "core||model_behavior_preservation||kl_div_score",
        "core||model_performance_preservation||ce_loss_score",
        "core||reconstruction_quality||explained_variance",
        "core||reconstruction_quality||explained_variance_legacy",
        "core||shrinkage||l2_ratio",
        "core||sparsity||l0",
    },
    "sparse_probing": {
        f"sparse_probing||{side}||{side}_{metric}"
        for side in ("llm", "sae")
        for metric in ("test_accuracy", "top_1_test_accuracy", "top_2_test_accuracy", "top_5_test_accuracy")
    },
}


def saebench_path(eval_type: str) -> Path:
    return DIR / "eval_results" / eval_type / FILE_NAME


def saebench_output(eval_type: str) -> dict:
    return json.loads(saebench_path(eval_type).read_text())


def saebench_eval_types() -> dict[str, dict]:
    lines = (DIR / "config" / "eval_type.jsonl").read_text().splitlines()
    return {row["name"]: row for row in map(json.loads, lines)}


def field_names(output: dict) -> dict:
    """Every field name of an eval's JSON where it sits: the top level, `eval_config`, each metric category, and the
    rows of `eval_result_details`."""
    return {
        "top": sorted(output),
        "eval_config": sorted(output["eval_config"]),
        "eval_result_metrics": {name: sorted(group) for name, group in output["eval_result_metrics"].items()},
        "eval_result_details": sorted({key for row in output["eval_result_details"] for key in row}),
    }
