"""SAE benchmarks travel with a source in the v1 layout: config/eval_type.jsonl and the source's SAEBench files."""

import json

import pytest
from django.contrib.auth.models import AnonymousUser

from features.models import Eval, EvalType, Model, Source
from features.selectors import sae_bench_table
from features.services.evals import eval_output_build, eval_output_full, eval_store, eval_types_ensure
from imports.services.exporter import source_export
from imports.services.origin import origin_from_params
from tests.imports.helpers import params, run_import
from tests.saebench import DEFAULT_DISPLAY, DIR, FILE_NAME, saebench_eval_types, saebench_output, saebench_path

pytestmark = pytest.mark.django_db


def test_an_imported_eval_row_round_trips_through_export_and_import_on_s3(s3_endpoint, small_dataset, new_bucket):
    p = params(s3_endpoint, small_dataset["bucket"])
    assert run_import(p, "tiny-gpt", "0-res-tt").job.status == "SUCCEEDED"
    source = Source.objects.get(model_id="tiny-gpt", name="0-res-tt")
    eval_types_ensure()
    metrics = {"sparsity": {"l0": 12.5, "l1": 40.0}, "reconstruction_quality": {"explained_variance": 0.81}}
    details = [{"index": i, "feature_density": i / 10} for i in range(3)]
    eval_store(
        source=source,
        output=eval_output_build(eval_type="core", config={"context_size": 128}, metrics=metrics, details=details,
                                 source=source),
    )  # fmt: skip
    before = eval_output_full(Eval.objects.get(source=source, type_id="core"))
    schema_before = EvalType.objects.get(pk="core").output_schema

    out_bucket = new_bucket()
    target = origin_from_params(params(s3_endpoint, out_bucket))
    counts = source_export(model_id="tiny-gpt", source_id="0-res-tt", target=target)
    assert counts["evals"] == 1
    key = f"tiny-gpt/0-res-tt/evals/core/{before['sae_lens_release_id']}_{before['sae_lens_id']}_eval_results.json"
    assert json.loads(target.read_bytes(key)) == before  # the SAEBench file, details included
    types = [json.loads(line) for line in target.read_bytes("config/eval_type.jsonl").splitlines()]
    assert {t["name"] for t in types} == {"core", "sparse_probing"}
    assert {"displayName", "longerDescription", "outputSchema", "featured", "url", "createdAt"} <= set(types[0])

    Model.objects.filter(pk="tiny-gpt").delete()
    EvalType.objects.all().delete()
    assert not Eval.objects.exists()
    assert run_import(params(s3_endpoint, out_bucket), "tiny-gpt", "0-res-tt").job.status == "SUCCEEDED"
    after = Eval.objects.get(source__model_id="tiny-gpt", source__name="0-res-tt", type_id="core")
    assert eval_output_full(after) == before
    assert after.detailed_metrics == details and "eval_result_details" not in after.output
    assert EvalType.objects.get(pk="core").output_schema == schema_before


def test_a_saebench_file_of_an_unknown_eval_type_fails_the_import_naming_it(s3_endpoint, small_dataset, s3_client):
    bad = {"eval_type_id": "no_such_type", "eval_result_metrics": {}}
    s3_client.put_object(
        Bucket=small_dataset["bucket"], Key="v1/tiny-gpt/1-res-tt/evals/no_such_type/x_y_eval_results.json",
        Body=json.dumps(bad).encode(),
    )  # fmt: skip
    run = run_import(params(s3_endpoint, small_dataset["bucket"]), "tiny-gpt", "1-res-tt")
    assert run.job.status == "FAILED" and "no_such_type" in run.job.error


def test_saebench_files_import_show_on_sae_bench_by_their_own_schema_and_export_unchanged(
    s3_endpoint, small_dataset, s3_client, new_bucket, client
):
    """SAEBench 0.6.0's own core and sparse-probing files, with its generated schemas as eval_type.jsonl rows."""
    put = lambda key, path: s3_client.put_object(Bucket=small_dataset["bucket"], Key=key, Body=path.read_bytes())  # noqa: E731
    put("v1/config/eval_type.jsonl", DIR / "config" / "eval_type.jsonl")
    for type_name in ("core", "sparse_probing"):
        put(f"v1/tiny-gpt/1-res-tt/evals/{type_name}/{FILE_NAME}", saebench_path(type_name))
    assert run_import(params(s3_endpoint, small_dataset["bucket"]), "tiny-gpt", "1-res-tt").job.status == "SUCCEEDED"
    types = saebench_eval_types()
    assert EvalType.objects.get(pk="core").output_schema == types["core"]["outputSchema"]

    # /sae-bench: the columns are the metrics SAEBench marks for display, found through its schema's $refs
    table = sae_bench_table(user=AnonymousUser())
    (row,) = [r for r in table["rows"] if r.source.name == "1-res-tt"]
    assert {m.key for m in table["columns"]} == DEFAULT_DISPLAY["core"] | DEFAULT_DISPLAY["sparse_probing"]
    core, probe = (
        saebench_output("core")["eval_result_metrics"],
        saebench_output("sparse_probing")["eval_result_metrics"],
    )
    assert row.values["core||sparsity||l0"] == core["sparsity"]["l0"] == 40.0
    assert row.values["core||model_behavior_preservation||kl_div_score"] == 0.9765625
    assert row.values["sparse_probing||sae||sae_top_5_test_accuracy"] == probe["sae"]["sae_top_5_test_accuracy"]
    assert "sparse_probing||sae||sae_top_10_test_accuracy" not in row.values  # null in the file
    page = client.get("/sae-bench/").content.decode()
    for title in ("KL Divergence Score", "Explained Variance (Legacy)", "L0 Sparsity", "SAE Top 5 Test Accuracy"):
        assert title in page  # SAEBench's titles, from its schema
    assert "tiny-gpt/1-res-tt" in page and "0.9766" in page

    # exported: the same files, byte for byte as JSON, and the same schemas
    target = origin_from_params(params(s3_endpoint, new_bucket()))
    assert source_export(model_id="tiny-gpt", source_id="1-res-tt", target=target)["evals"] == 2
    for type_name in ("core", "sparse_probing"):
        key = f"tiny-gpt/1-res-tt/evals/{type_name}/{FILE_NAME}"
        assert json.loads(target.read_bytes(key)) == saebench_output(type_name)
    exported = {t["name"]: t for t in map(json.loads, target.read_bytes("config/eval_type.jsonl").splitlines())}
    assert {name: exported[name]["outputSchema"] for name in types} == {n: t["outputSchema"] for n, t in types.items()}
