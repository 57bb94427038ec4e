"""SAE benchmarks travel with a source in the v1 layout: config/eval_type.jsonl and the source's SAEBench files."""

import json

import pytest

from features.models import Eval, EvalType, Model, Source
from features.services.evals import eval_output_build, eval_output_full, eval_store, eval_types_ensure
from imports.services.exporter import source_export
from imports.services.origin import origin_from_params
from tests.imports.helpers import params, run_import

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
