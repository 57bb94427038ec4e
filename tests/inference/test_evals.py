"""The `sae_evals` job on the tiny model: SAELens core metrics and k-sparse probing of Brown genres, stored as
SAEBench output JSON, shown on /sae-bench, the source page and the API."""

import re
import uuid

import pytest
from django.core.management import call_command

from features.models import Eval, Job
from features.services.evals import SAEBENCH_KEYS, eval_output_full
from features.services.jobs import job_run
from tests.factories import ModelFactory
from tests.inference.conftest import TINY_LOADER
from tests.pipeline.conftest import brown  # noqa: F401 (fixture)
from tests.saebench import field_names, saebench_output

HOOK = "blocks.1.hook_resid_pre"
D_IN = 64


def write_near_identity_sae(path, *, noise: float, seed: int = 0):
    """A ReLU SAE with latents relu(x) and relu(−x) and decoder rows ±e_i (plus noise): it reconstructs the input
    almost exactly, so its explained variance is close to 1 and its latents carry everything the residual does."""
    import torch
    from safetensors.torch import save_file

    from tests.inference.conftest import write_sae

    write_sae(path, architecture="standard", hook=HOOK, d_in=D_IN, d_sae=2 * D_IN, seed=seed)
    eye = torch.eye(D_IN)
    g = torch.Generator().manual_seed(seed)
    w_enc = torch.cat([eye, -eye], dim=1)
    tensors = {
        "W_enc": w_enc,
        "W_dec": w_enc.T.contiguous() + noise * torch.randn(2 * D_IN, D_IN, generator=g),
        "b_enc": torch.zeros(2 * D_IN),
        "b_dec": torch.zeros(D_IN),
    }
    save_file(tensors, str(path / "sae_weights.safetensors"))
    return path


@pytest.fixture
def evals_source(db, tmp_path, tiny_lm, brown):  # noqa: F811
    from inference.pipeline.services import source_register

    model = ModelFactory(id="tiny-evals", loader=TINY_LOADER, layers=2, dimension=D_IN)
    sae_dir = write_near_identity_sae(tmp_path / "sae", noise=0.02)
    return source_register(model=model, source_id="1-res-evals", sae_dir=sae_dir, dataset="brown")


SMALL = {"core_batches": 2, "max_per_class": 60, "max_tasks": 3}


def genre_contexts(tokenizer, *, docs_per_genre: int = 20, per_doc: int = 6, length: int = 32, shuffled=False):
    """Contexts whose genre is in their words: half of a text's words come from its genre's 10-word pool, half from
    its document's own 20-word pool. The tiny random model's residual stream (mostly a mean of token embeddings)
    tells the genres apart. `shuffled` deals the genre labels to the documents at random: then no word pool goes
    with a label, and a probe split by document can only guess."""
    import torch

    from inference.runtime.corpus import Contexts

    g = torch.Generator().manual_seed(0)
    names = ("alpha", "beta", "gamma")
    genres = [name for name in names for _ in range(docs_per_genre)]
    rows, doc_rows = [], []
    for d, genre in enumerate(genres):
        pool = 1000 + 10 * names.index(genre) + torch.arange(10)
        own = 5000 + 20 * d + torch.arange(20)
        for _ in range(per_doc):
            half = length // 2
            words = torch.cat(
                [
                    pool[torch.randint(10, (half,), generator=g)],
                    own[torch.randint(20, (length - 1 - half,), generator=g)],
                ]
            )
            rows.append(
                torch.cat([torch.tensor([tokenizer.bos_token_id]), words[torch.randperm(length - 1, generator=g)]])
            )
            doc_rows.append(torch.full((length,), d))
    if shuffled:
        genres = [genres[i] for i in torch.randperm(len(genres), generator=g).tolist()]
    doc_ids = [f"synthetic/{d:03d}" for d in range(len(genres))]
    return Contexts(tokens=torch.stack(rows), doc_index=torch.stack(doc_rows), doc_ids=doc_ids, genres=genres)


def test_sparse_probing_finds_the_genre_the_tokens_carry_and_nothing_where_there_is_none(tmp_path, tiny_lm):
    """The residual probe reads the genre; the near-identity SAE's latents carry what the residual does; an SAE whose
    latents are constant, and labels dealt at random to documents, leave the probes at chance."""
    from inference.runtime.evals import ProbeParams, sparse_probing_eval
    from inference.runtime.saes import SaeRef, load_sae

    params = ProbeParams(max_per_class=40, max_tasks=3)
    contexts = genre_contexts(tiny_lm.tokenizer)
    sae = load_sae(SaeRef(path=str(write_near_identity_sae(tmp_path / "sae", noise=0.02))))
    m = sparse_probing_eval(tiny_lm, sae, contexts, params=params)["metrics"]
    llm, probe = m["llm"]["llm_test_accuracy"], m["sae"]["sae_test_accuracy"]
    assert llm >= 0.9 and abs(probe - llm) <= 0.05
    assert m["sae"]["sae_top_20_test_accuracy"] >= 0.8

    dead = load_sae(SaeRef(path=str(write_near_identity_sae(tmp_path / "dead", noise=0.02))))
    dead.W_enc.data.zero_()
    dead.b_enc.data.fill_(1.0)  # every latent is 1 on every token
    m = sparse_probing_eval(tiny_lm, dead, contexts, params=params)["metrics"]
    assert m["llm"]["llm_test_accuracy"] == llm
    assert {v for k, v in m["sae"].items() if v is not None} == {0.5}

    m = sparse_probing_eval(tiny_lm, sae, genre_contexts(tiny_lm.tokenizer, shuffled=True), params=params)["metrics"]
    assert abs(m["llm"]["llm_test_accuracy"] - 0.5) <= 0.15 and abs(m["sae"]["sae_test_accuracy"] - 0.5) <= 0.15


def test_the_evals_job_stores_core_and_sparse_probing_in_saebench_format_and_they_show(evals_source, tiny_lm, client):
    from inference.pipeline.evals import evals_job_create

    job = evals_job_create(model_id="tiny-evals", source_id="1-res-evals", send=False, **SMALL)
    job = job_run(job_id=job.pk, lm=tiny_lm)
    assert job.status == Job.Status.SUCCEEDED, job.error
    rows = {e.type_id: e for e in Eval.objects.filter(source=evals_source)}
    assert set(rows) == {"core", "sparse_probing"}
    # how a rerun of the job finds the types it already stored
    assert Eval.objects.filter(source=evals_source, output__eval_result_unstructured__memicos_job=job.pk).count() == 2
    for type_name, row in rows.items():
        full = eval_output_full(row)
        assert set(full) == set(SAEBENCH_KEYS)
        assert field_names(full) == field_names(saebench_output(type_name))  # SAEBench's names, nested as it nests them
        assert full["eval_type_id"] == type_name and uuid.UUID(full["eval_id"])
        assert isinstance(full["datetime_epoch_millis"], int) and full["sae_cfg_dict"]["d_sae"] == 2 * D_IN

    core = rows["core"].output["eval_result_metrics"]
    ev = core["reconstruction_quality"]["explained_variance"]
    assert -1 <= ev <= 1 and ev > 0.9  # a near-identity SAE reconstructs almost all the variance
    assert 0 < core["sparsity"]["l0"] <= 2 * D_IN
    misc = core["misc_metrics"]
    assert misc["frac_alive"] == 1 and 0 <= misc["freq_over_10_percent"] <= misc["freq_over_1_percent"] <= 1
    assert 0 < misc["normalized_freq_over_10_percent"] <= misc["normalized_freq_over_1_percent"] <= 1
    # decoder rows ±e_i plus noise: each row's nearest other row is nearly orthogonal, the encoder's the same
    assert 0 < misc["average_max_decoder_cosine_sim"] < 0.5 and misc["average_max_encoder_cosine_sim"] == 0
    assert core["shrinkage"]["l2_ratio"] == pytest.approx(1, abs=0.05)
    perf = core["model_performance_preservation"]
    assert {"ce_loss_score", "ce_loss_with_sae", "ce_loss_without_sae", "ce_loss_with_ablation"} <= set(perf)
    assert abs(perf["ce_loss_with_sae"] - perf["ce_loss_without_sae"]) < 0.05  # spliced in, the loss barely moves
    assert "kl_div_score" in core["model_behavior_preservation"]
    assert len(rows["core"].detailed_metrics) == 2 * D_IN  # per latent: density, encoder norm, …

    probe = rows["sparse_probing"].output["eval_result_metrics"]
    for side in ("llm", "sae"):
        for k in (None, 1, 2, 5, 20):
            key = f"{side}_test_accuracy" if k is None else f"{side}_top_{k}_test_accuracy"
            assert 0 <= probe[side][key] <= 1
    # what the accuracies mean is checked on genres the tiny random model can see (Brown's are near chance for it)
    assert len(rows["sparse_probing"].detailed_metrics) == 3
    assert rows["sparse_probing"].output["eval_config"]["k_values"] == [1, 2, 5, 20]
    assert probe["sae"]["sae_top_10_test_accuracy"] is None  # a k SAEBench has a field for and this run skipped
    assert rows["sparse_probing"].output["eval_result_unstructured"]["hook_name"] == HOOK

    # the numbers appear on /sae-bench (table and plot data) and on the source's pane
    page = client.get("/sae-bench/").content.decode()
    assert "tiny-evals/1-res-evals" in page and f"{ev:.4f}" in page
    assert re.search(r'"x": [0-9.]+, "y": ' + re.escape(str(ev)), page)
    pane = client.get("/tiny-evals/1-res-evals/").content.decode()
    assert 'id="evals"' in pane and f"{ev:.4f}" in pane and 'data-eval-type="sparse_probing"' in pane
    api = client.get("/api/evals/tiny-evals/1-res-evals").json()
    assert [e["typeName"] for e in api] == ["core", "sparse_probing"]
    assert api[0]["output"]["eval_result_metrics"]["reconstruction_quality"]["explained_variance"] == ev


def test_dashboards_queue_the_evals_job_and_eval_source_runs_it_with_a_progress_bar(evals_source, capsys, tiny_lm):
    from inference.pipeline.services import dashboards_job_create

    dash = dashboards_job_create(model_id="tiny-evals", source_id="1-res-evals", tokens=2048, context_size=128,
                                 feature_batch=64, send=False)  # fmt: skip
    assert job_run(job_id=dash.pk, lm=tiny_lm).status == Job.Status.SUCCEEDED
    (queued,) = Job.objects.filter(kind="sae_evals", model_id="tiny-evals", source_name="1-res-evals")
    assert queued.status == Job.Status.PENDING and queued.params["types"] == ["core", "sparse_probing"]

    with pytest.raises(Exception, match="Unknown eval types"):
        call_command("eval_source", "tiny-evals", "1-res-evals", "--types", "core,nope")
    Job.objects.filter(pk=queued.pk).update(status=Job.Status.CANCELLED)  # the command makes and runs its own
    call_command("eval_source", "tiny-evals", "1-res-evals", "--types", "core", "--core-batches", "1")
    out = capsys.readouterr()
    assert "SUCCEEDED" in out.out and "core" in out.err  # tqdm's bar goes to stderr
    assert list(Eval.objects.filter(source=evals_source).values_list("type_id", flat=True)) == ["core"]
