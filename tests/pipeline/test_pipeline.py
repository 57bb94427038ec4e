"""Corpus → SAE training → dashboards → rows in the DB → benchmarks, with a tiny model (a few thousand tokens)."""

import pytest
from django.core.management import call_command

from features.models import Activation, Feature, Job, Source

HOOK = "blocks.0.hook_resid_post"
CTX = 64


def _direct_codes(sae, model_loader, contexts):
    """Dense SAE codes for every dashboard context, BOS/EOS/pad masked, computed without the pipeline."""
    import torch

    from inference.runtime.dashboards import masked_token_ids
    from inference.runtime.models import ModelSpec, load_model

    lm = load_model(ModelSpec.from_loader(model_loader))
    with torch.no_grad():
        _, cache = lm.model.run_with_cache(contexts.tokens, names_filter=HOOK)
        codes = sae.encode(cache[HOOK])
    masked = torch.isin(contexts.tokens, torch.tensor(masked_token_ids(lm.tokenizer)))
    codes[masked] = 0
    return lm, codes


def test_brown_corpus_and_contexts(brown):
    from inference.runtime.corpus import brown_documents, tokenise_contexts
    from inference.runtime.models import smollm2_tokenizer

    docs = brown_documents()
    assert len(docs) == 500
    assert docs[0].doc_id == "brown/ca01" and docs[0].genre == "press: reportage"
    assert {d.genre for d in docs} >= {"religion", "science fiction", "humor", "learned"}
    first = docs[0].paragraphs[0]
    assert first.startswith("The Fulton County Grand Jury said Friday an investigation of Atlanta's")
    assert "/" not in first and '"no evidence"' in first  # tags stripped, `` '' turned into quotes
    tok = smollm2_tokenizer()
    ctx = tokenise_contexts(tok, docs[:5], context_size=32)
    assert ctx.tokens.shape[1] == 32 and (ctx.tokens[:, 0] == tok.bos_token_id).all()
    # BOS separates documents inside the stream; every other token comes from the documents' own text
    n_text = sum(len(tok(d.text, add_special_tokens=False)["input_ids"]) + 1 for d in docs[:5])
    assert ctx.tokens.shape[0] == n_text // 31


@pytest.mark.slow
def test_train_sae_command_to_dashboard_rows_and_benchmarks(brown, tiny_model, pipeline_var, client):
    import torch
    from sae_lens import SAE

    from inference.runtime.corpus import corpus_contexts
    from inference.runtime.dashboards import masked_token_ids

    call_command(
        "train_sae",
        tiny_model.id,
        "--hook",
        HOOK,
        "--arch",
        "topk",
        "--k",
        "8",
        "--width",
        "256",
        "--tokens",
        "16384",
        "--context-size",
        str(CTX),
        "--batch-size-tokens",
        "512",
        "--dashboard-tokens",
        "8192",
    )
    source = Source.objects.get(model=tiny_model, name="0-res-brown")
    sae = SAE.load_from_disk(source.sae_path)
    assert type(sae).__name__ == "TopKSAE" and sae.cfg.d_sae == 256
    assert str(pipeline_var) in source.sae_path and sae.cfg.metadata.hook_name == HOOK
    assert source.metrics["l0"] == pytest.approx(8.0)
    for key in ("explained_variance", "ce_loss_score", "num_dead_features", "train_tokens_per_second"):
        assert key in source.metrics
    jobs = Job.objects.filter(model_id=tiny_model.id, source_name="0-res-brown")
    # the finished dashboards queued the benchmarks (sent on commit, which this test's transaction never does)
    assert {j.kind: j.status for j in jobs} == {
        "train_sae": "SUCCEEDED",
        "dashboards": "SUCCEEDED",
        "sae_evals": "PENDING",
    }
    assert all(j.done == j.total > 0 for j in jobs if j.kind != "sae_evals")

    # every feature has a row; its statistics equal a direct recomputation over the same contexts
    contexts = corpus_contexts(tiny_model_tokenizer(), "brown", context_size=CTX, max_tokens=8192)
    lm, codes = _direct_codes(sae, tiny_model.loader, contexts)
    flat = codes.flatten(0, 1)
    feats = {f.index: f for f in Feature.objects.filter(source=source)}
    assert len(feats) == 256
    unmasked = (~torch.isin(contexts.tokens, torch.tensor(masked_token_ids(lm.tokenizer)))).sum().item()
    for index in range(256):
        f = feats[index]
        assert f.max_act_approx == pytest.approx(flat[:, index].max().item(), abs=1e-4)
        assert f.frac_nonzero == pytest.approx((flat[:, index] > 0).sum().item() / unmasked, abs=1e-9)

    # the strongest feature's top activation: same context, same per-token values as sae.encode gives
    best = max(feats.values(), key=lambda f: f.max_act_approx)
    top = Activation.objects.filter(feature=best, bin_min=-1).order_by("-max_value")
    assert 1 <= top.count() <= 20
    a = top.first()
    row = codes[a.data_index, :, best.index]
    q = int(row.argmax())
    assert a.max_value == pytest.approx(row.max().item(), abs=1e-4)
    assert a.values[a.max_value_token_index] == pytest.approx(row[q].item(), abs=1e-4)
    start = q - a.max_value_token_index
    assert a.values == pytest.approx(row[start : start + len(a.values)].tolist(), abs=1e-4)
    assert "".join(a.tokens) == lm.tokenizer.decode(contexts.tokens[a.data_index, start : start + len(a.tokens)])
    # top contexts are distinct and sorted; interval samples lie in their intervals
    assert len({x.data_index for x in top}) == top.count()
    for x in Activation.objects.filter(feature=best).exclude(bin_min=-1):
        assert x.bin_min - 1e-4 <= x.values[x.qualifying_token_index] <= x.bin_max + 1e-4
        assert 0 <= x.bin_contains <= 1
    # logit lens: W_dec · W_U, no final LayerNorm
    logits = sae.W_dec[best.index] @ lm.model.W_U
    assert best.pos_values[0] == pytest.approx(logits.max().item(), abs=1e-4)
    assert best.neg_values[0] == pytest.approx(logits.min().item(), abs=1e-4)
    assert sum(best.freq_hist_data_bar_heights) == (flat[:, best.index] > 0).sum().item()

    # the queued benchmarks, run as a worker runs them, on fewer contexts to keep the test short
    _run_queued_evals(tiny_model, source, client)


def _run_queued_evals(model, source, client):
    from django.contrib.auth.models import AnonymousUser

    from features.selectors import sae_bench_table
    from features.services.jobs import job_run

    queued = Job.objects.get(kind="sae_evals", model_id=model.id, source_name=source.name)
    queued.params |= {"core_batches": 1, "max_per_class": 32, "max_tasks": 2}
    queued.save(update_fields=["params"])
    assert job_run(job_id=queued.pk).status == "SUCCEEDED"
    (row,) = [r for r in sae_bench_table(user=AnonymousUser())["rows"] if r.source == source]
    core = {key.split("||")[2]: v for key, v in row.values.items() if key.startswith("core||")}
    assert core["l0"] == pytest.approx(8.0, abs=0.01) and core["explained_variance"] < 1  # a TopK SAE, k = 8
    assert {"ce_loss_score", "kl_div_score", "l2_ratio", "frac_alive"} <= set(core) and row.architecture == "topk"
    page = client.get("/sae-bench/").content.decode()
    assert f"{model.id}/{source.name}" in page and f"{core['explained_variance']:.4f}" in page
    pane = client.get(f"/{model.id}/{source.name}/").content.decode()
    assert 'data-eval-type="core"' in pane and 'data-eval-type="sparse_probing"' in pane
    assert f"{core['explained_variance']:.4f}" in pane


def tiny_model_tokenizer():
    from inference.runtime.models import smollm2_tokenizer

    return smollm2_tokenizer()


@pytest.mark.slow
def test_add_source_dashboards_interrupt_and_resume(brown, tiny_model, pipeline_var):
    import shutil

    from features.services.jobs import job_run
    from inference.pipeline.services import dashboards_job_create, work_dir
    from inference.runtime.corpus import corpus_contexts
    from inference.runtime.models import ModelSpec, load_model
    from inference.runtime.training import TrainParams, sae_train

    lm = load_model(ModelSpec.from_loader(tiny_model.loader))
    contexts = corpus_contexts(lm.tokenizer, "brown", context_size=CTX, max_tokens=40_000)
    sae_dir = pipeline_var / "my-sae"
    sae_train(
        lm,
        contexts,
        TrainParams(
            hook=HOOK,
            arch="standard",
            width=128,
            tokens=8192,
            context_size=CTX,
            batch_size_tokens=512,
            n_checkpoints=0,
            eval_batches=1,
        ),
        sae_dir,
    )

    # add_source registers the directory and generates dashboards (16,384 tokens: 2 chunks of 128 contexts)
    call_command(
        "add_source",
        tiny_model.id,
        "--sae-dir",
        str(sae_dir),
        "--source-id",
        "0-res-mine",
        "--tokens",
        "16384",
        "--context-size",
        str(CTX),
    )
    source = Source.objects.get(model=tiny_model, name="0-res-mine")
    assert source.sae_path == str(sae_dir.resolve()) and source.saelens_config["d_sae"] == 128
    assert source.hook == HOOK  # SAELens 6 keeps it under the config's metadata
    complete = set(Activation.objects.filter(feature__source=source).values_list("id", "max_value"))
    assert Feature.objects.filter(source=source).count() == 128 and complete

    # wipe rows and checkpoints, then interrupt a fresh job after 2 chunks + 1 feature batch
    Feature.objects.filter(source=source).delete()
    shutil.rmtree(work_dir(model_id=tiny_model.id, source_id="0-res-mine", what="dashboards"))
    job = dashboards_job_create(
        model_id=tiny_model.id, source_id="0-res-mine", tokens=16384, context_size=CTX, feature_batch=32, send=False
    )
    job = job_run(job_id=job.pk, lm=lm, stop_after=3)
    assert job.status == "RUNNING" and job.done == 3 and job.total == 2 + 4
    assert Feature.objects.filter(source=source).count() == 32
    partial = Activation.objects.filter(feature__source=source).count()

    # rerunning the same command resumes the unfinished job: no chunk recomputed, no duplicate rows
    call_command(
        "add_source",
        tiny_model.id,
        "--sae-dir",
        str(sae_dir),
        "--source-id",
        "0-res-mine",
        "--tokens",
        "16384",
        "--context-size",
        str(CTX),
    )
    job.refresh_from_db()
    assert job.status == "SUCCEEDED" and job.done == job.total == 6
    assert job.result["features_written"] == 96 and job.result["token_pass_seconds"] == 0
    resumed = set(Activation.objects.filter(feature__source=source).values_list("id", "max_value"))
    assert len(resumed) > partial
    assert resumed == complete  # same deterministic ids and values as the uninterrupted run
    assert Feature.objects.filter(source=source).count() == 128
    assert Job.objects.filter(kind="dashboards", model_id=tiny_model.id, source_name="0-res-mine").count() == 2


@pytest.mark.slow
def test_training_resumes_from_its_checkpoint(brown, tmp_path):
    from inference.runtime.corpus import corpus_contexts
    from inference.runtime.models import ModelSpec, load_model
    from inference.runtime.training import TrainParams, latest_checkpoint, sae_train

    lm = load_model(ModelSpec(kind="tiny"))
    contexts = corpus_contexts(lm.tokenizer, "brown", context_size=CTX, max_tokens=40_000)
    params = TrainParams(
        hook=HOOK,
        arch="topk",
        width=128,
        k=8,
        tokens=20480,
        context_size=CTX,
        batch_size_tokens=512,
        n_checkpoints=3,
        eval_batches=1,
    )

    class Stop(Exception):
        pass

    def stop_late(done, total):
        if done >= 15000:
            raise Stop

    with pytest.raises(Stop):
        sae_train(lm, contexts, params, tmp_path / "sae", progress=stop_late)
    checkpoint = latest_checkpoint(tmp_path / "sae.work")
    assert checkpoint is not None and not (tmp_path / "sae" / "cfg.json").exists()
    seen = []
    metrics = sae_train(lm, contexts, params, tmp_path / "sae", progress=lambda d, t: seen.append(d))
    assert seen[0] > int(checkpoint.name) and seen[-1] == 20480  # continued from the checkpoint, not from 0
    assert metrics["l0"] == pytest.approx(8.0) and (tmp_path / "sae" / "cfg.json").exists()
    assert not (tmp_path / "sae.work").exists()


@pytest.mark.parametrize("bf16", [False, True])
def test_logit_lens_shows_the_exact_extremes(monkeypatch, bf16):
    """The bfloat16 product only picks candidates: shown top/bottom tokens and values equal float32's."""
    import torch

    from inference.runtime import dashboards

    monkeypatch.setattr(dashboards, "_fast_bf16", lambda: bf16)
    dashboards._unembed_copies.cache_clear()
    torch.manual_seed(1)
    directions, w_u = torch.randn(64, 96) * 0.1, torch.randn(96, 5000)
    logits, (pos_v, pos_i), (neg_v, neg_i) = dashboards._logit_lens(directions, w_u, dashboards.DashboardParams())
    exact = directions @ w_u
    top_v, top_i = torch.topk(exact, 10, dim=1)
    low_v, low_i = torch.topk(-exact, 10, dim=1)
    assert torch.equal(pos_i, top_i) and torch.equal(neg_i, low_i)
    assert torch.allclose(pos_v, top_v, atol=1e-5) and torch.allclose(neg_v, low_v, atol=1e-5)
    assert logits.shape == exact.shape and torch.allclose(logits.float(), exact, atol=0.05)
