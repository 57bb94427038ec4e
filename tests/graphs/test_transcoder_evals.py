"""SAE benchmarks of a transcoder layer (the `sae_evals` job): SAEBench's core output where the fields fit, with the
MLP output as the reconstruction target and the layer's MLP replaced for CE/KL, and sparse probing from the MLP
input; the rows show on /sae-bench as transcoders and on the layer's source page."""

import pytest

from features.models import Eval, Job
from features.services.evals import SAEBENCH_KEYS, eval_output_full
from features.services.jobs import job_run
from tests.graphs.conftest import SET_NAME, TINY_ID
from tests.pipeline.conftest import brown  # noqa: F401 (fixture)
from tests.saebench import field_names, saebench_output

SMALL = {"core_batches": 2, "max_per_class": 60, "max_tasks": 3}
LAYER = 1
SOURCE = f"{LAYER}-{SET_NAME}"


@pytest.fixture
def tc_evals(tiny_graph_model, tiny_lm, brown):  # noqa: F811
    from inference.pipeline.evals import evals_job_create

    job = evals_job_create(model_id=TINY_ID, source_id=SOURCE, send=False, **SMALL)
    job = job_run(job_id=job.pk, lm=tiny_lm)
    assert job.status == Job.Status.SUCCEEDED, job.error
    return {e.type_id: e for e in Eval.objects.filter(source__name=SOURCE)}


def _held_contexts(tiny_lm, output):
    from inference.pipeline.services import _contexts

    contexts = _contexts(tiny_lm, "brown", context_size=output["eval_config"]["context_size"], max_tokens=None)
    n = int(output["eval_result_unstructured"]["held_out"].split()[2])
    return contexts.tokens[-n:]


def test_a_transcoder_layer_gets_core_and_sparse_probing_evals_in_saebench_format(tc_evals, tiny_lm, tset_dir):
    import torch

    from inference.runtime import transcoders as T

    assert set(tc_evals) == {"core", "sparse_probing"}
    for type_name, row in tc_evals.items():
        full = eval_output_full(row)
        assert set(full) == set(SAEBENCH_KEYS) and full["eval_type_id"] == type_name
        assert field_names(full) == field_names(saebench_output(type_name))
        assert full["eval_result_unstructured"]["sae_kind"] == "transcoder"
        assert full["sae_cfg_dict"]["architecture"] == "jumprelu_transcoder" and full["sae_cfg_dict"]["d_sae"] == 64
    core = tc_evals["core"].output
    m = core["eval_result_metrics"]
    assert core["eval_result_unstructured"]["hook_name"] == f"blocks.{LAYER}.hook_resid_mid"
    assert core["eval_result_unstructured"]["hook_name_out"] == f"blocks.{LAYER}.hook_mlp_out"

    # the reconstruction is of the MLP output, scored by the trainer's own function on the trainer's own file
    held = _held_contexts(tiny_lm, core)
    x, y = T.mlp_io(tiny_lm, held, [LAYER])[LAYER]
    expected = T.layer_quality_eval(T.load_layer_weights(tset_dir, LAYER), x, y)
    assert m["reconstruction_quality"]["explained_variance"] == pytest.approx(expected["explained_variance"], abs=1e-5)
    assert m["sparsity"]["l0"] == pytest.approx(expected["l0"], abs=1e-4)
    assert m["reconstruction_quality"]["mse"] == pytest.approx(expected["mse"] * 64, rel=1e-4)
    assert -1 <= m["reconstruction_quality"]["cossim"] <= 1 and m["sparsity"]["l1"] > 0
    assert m["token_stats"]["total_tokens_eval_sparsity_variance"] == x.shape[0] == held.shape[0] * (held.shape[1] - 1)
    misc = m["misc_metrics"]
    assert 1 - misc["frac_alive"] == pytest.approx(expected["dead_fraction"], abs=1e-6)
    assert 0 <= misc["freq_over_10_percent"] <= misc["freq_over_1_percent"] <= 1
    assert -1 <= misc["average_max_decoder_cosine_sim"] <= 1 and -1 <= misc["average_max_encoder_cosine_sim"] <= 1
    details = tc_evals["core"].detailed_metrics
    density = [d["feature_density"] for d in details]
    assert len(density) == 64 and sum(density) == pytest.approx(expected["l0"], rel=1e-4)  # mean L0 = Σ densities
    for d in details:  # a latent that fires fires on at least one token of each prompt it fires in
        assert (d["consistent_activation_heuristic"] or 1) >= 1 and -1 <= d["encoder_decoder_cosine_sim"] <= 1

    # CE loss: the clean figure is the model's own loss on those contexts; the score is SAEBench's formula
    perf = m["model_performance_preservation"]
    with torch.no_grad():
        clean = float(tiny_lm.model(held, return_type="loss"))
    assert perf["ce_loss_without_sae"] == pytest.approx(clean, abs=1e-4)
    assert perf["ce_loss_with_sae"] != perf["ce_loss_without_sae"] != perf["ce_loss_with_ablation"]
    ablated, spliced = perf["ce_loss_with_ablation"], perf["ce_loss_with_sae"]
    assert perf["ce_loss_score"] == pytest.approx((ablated - spliced) / (ablated - clean), abs=1e-4)
    kl = m["model_behavior_preservation"]
    assert kl["kl_div_with_sae"] > 0 and kl["kl_div_with_ablation"] > 0

    probe = tc_evals["sparse_probing"].output
    assert probe["eval_result_unstructured"]["hook_name"] == f"blocks.{LAYER}.hook_resid_mid"  # the MLP input
    for side in ("llm", "sae"):
        for key in (f"{side}_test_accuracy", f"{side}_top_1_test_accuracy", f"{side}_top_20_test_accuracy"):
            assert 0 <= probe["eval_result_metrics"][side][key] <= 1
    assert len(tc_evals["sparse_probing"].detailed_metrics) == 3


def test_a_transcoder_that_outputs_nothing_scores_as_the_zero_ablation(tiny_graph_model, tiny_lm, brown):  # noqa: F811
    """The splice is where the score says: a transcoder whose output is 0 is exactly the zero-ablated MLP."""
    from features.models import Source
    from inference.pipeline.services import _contexts
    from inference.runtime.evals import CoreParams, transcoder_core_eval
    from inference.runtime.saes import SaeRef, load_sae

    sae = load_sae(SaeRef(path=Source.objects.get(name=SOURCE).sae_path))
    sae.W_dec.data.zero_()
    sae.b_dec.data.zero_()
    contexts = _contexts(tiny_lm, "brown", context_size=64, max_tokens=None)
    params = CoreParams(n_eval_reconstruction_batches=1, n_eval_sparsity_variance_batches=1, batch_size_prompts=4)
    m = transcoder_core_eval(tiny_lm, sae, contexts, params=params)["metrics"]
    perf = m["model_performance_preservation"]
    assert perf["ce_loss_with_sae"] == pytest.approx(perf["ce_loss_with_ablation"], abs=1e-5)
    assert perf["ce_loss_score"] == pytest.approx(0, abs=1e-4)
    assert m["model_behavior_preservation"]["kl_div_score"] == pytest.approx(0, abs=1e-4)
    assert m["shrinkage"]["l2_norm_out"] == 0


def test_transcoder_evals_show_as_transcoders_on_sae_bench_and_the_source_page(tc_evals, client):
    ev = tc_evals["core"].output["eval_result_metrics"]["reconstruction_quality"]["explained_variance"]
    page = client.get("/sae-bench/").content.decode()
    assert f"{TINY_ID}/{SOURCE}" in page and f"{ev:.4f}" in page
    assert 'value="transcoder"' in page  # a choice of the architecture filter
    filtered = client.get("/sae-bench/?saeClass=transcoder").content.decode()
    assert f'/{SOURCE}"' in filtered and '"group": "transcoder"' in filtered
    assert f'/{SOURCE}"' not in client.get("/sae-bench/?saeClass=topk").content.decode()
    pane = client.get(f"/{TINY_ID}/{SOURCE}/").content.decode()
    assert 'id="evals"' in pane and f"{ev:.4f}" in pane
    assert 'data-eval-type="core" data-sae-kind="transcoder"' in pane
    assert 'data-eval-type="sparse_probing" data-sae-kind="transcoder"' in pane
    api = client.get(f"/api/evals/{TINY_ID}/{SOURCE}").json()
    assert [e["typeName"] for e in api] == ["core", "sparse_probing"]
    assert api[0]["output"]["eval_result_unstructured"]["sae_kind"] == "transcoder"
