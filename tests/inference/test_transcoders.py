"""Transcoder training on the tiny model: loss, quality, the saved layout (circuit-tracer and SAELens), resume."""

import json

import pytest
import torch

from inference.runtime import transcoders as T

SMALL = {"width": 64, "k": 4, "tokens": 8192, "batch_size_tokens": 256, "eval_contexts": 8, "lr": 3e-3}


@pytest.fixture(scope="module")
def contexts(tiny_lm):
    from inference.runtime.corpus import corpus_contexts

    return corpus_contexts(tiny_lm.tokenizer, "brown", context_size=32, max_tokens=16_384)


@pytest.fixture(scope="module")
def topk_set(tiny_lm, contexts, tmp_path_factory):
    out = tmp_path_factory.mktemp("tc") / "topk"
    calls = []
    quality = T.transcoders_train(
        tiny_lm, contexts, T.TranscoderParams(**SMALL), out, model_name="tiny", progress=lambda *a: calls.append(a)
    )
    return out, quality, calls


@pytest.fixture(scope="module")
def skip_set(tiny_lm, contexts, tmp_path_factory):
    out = tmp_path_factory.mktemp("tc") / "jumprelu-skip"
    params = T.TranscoderParams(**{**SMALL, "tokens": 4096}, arch="jumprelu", skip=True, layers_per_pass=2)
    return out, T.transcoders_train(tiny_lm, contexts, params, out, model_name="tiny")


def held_out_io(lm, contexts, layer):
    x, y = T.mlp_io(lm, contexts.tokens[-4:], [layer])[layer]
    return x, y


def test_training_loss_falls_on_every_layer_and_quality_is_recorded(topk_set, tiny_lm):
    out, quality, _ = topk_set
    assert [row.layer for row in quality.layers] == list(range(tiny_lm.n_layers))
    for row in quality.layers:
        assert row.last_loss < 0.9 * row.first_loss
        assert 0 < row.l0 <= 2 * SMALL["k"]
        assert 0 <= row.dead_fraction < 1 and 0 <= row.dense_fraction < 1
        assert row.eval_tokens > 0 and row.tokens_per_second > 0
        assert json.loads((out / f"layer_{row.layer}" / "metrics.json").read_text())["l0"] == row.l0
    assert quality.ce_loss_clean != quality.ce_loss_replaced
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["ce_loss_replaced"] == quality.ce_loss_replaced


def test_layer_quality_counts_a_feature_firing_on_every_token_as_dense_and_silent_ones_as_dead():
    d, width = 8, 4
    w = {"W_enc": torch.zeros(width, d), "b_enc": torch.tensor([1.0, 0.0, 0.0, 0.0]), "threshold": torch.zeros(width)}
    w["W_enc"][1, 0] = 1.0  # fires where x[:, 0] > 0: on about half the tokens, so dense too
    w |= {"W_dec": torch.zeros(width, d), "b_dec": torch.zeros(d)}
    x = torch.randn(1000, d, generator=torch.Generator().manual_seed(0))
    q = T.layer_quality_eval(w, x, torch.randn(1000, d))
    assert q["dense_fraction"] == 0.5 and q["dead_fraction"] == 0.5
    x[:, 0] = -x[:, 0].abs()
    x[:50, 0] = 1.0  # feature 1 now fires on 5% of the tokens: alive, not dense
    q = T.layer_quality_eval(w, x, torch.randn(1000, d))
    assert q["dense_fraction"] == 0.25 and q["dead_fraction"] == 0.5


def test_progress_is_reported_per_layer_up_to_the_token_budget(topk_set, tiny_lm):
    _, _, calls = topk_set
    for layer in range(tiny_lm.n_layers):
        mine = [c for c in calls if c[0] == layer]
        assert mine[-1][1] == mine[-1][2] == SMALL["tokens"]
        assert [c[1] for c in mine] == sorted(c[1] for c in mine)


def test_the_set_loads_in_circuit_tracer_and_computes_what_we_evaluated(topk_set, tiny_lm, contexts):
    out, _, _ = topk_set
    tset = T.transcoder_set_load(out)
    assert type(tset).__name__ == "TranscoderSet"
    assert (tset.feature_input_hook, tset.feature_output_hook) == ("hook_resid_mid", "hook_mlp_out")
    assert tset.n_layers == tiny_lm.n_layers and tset.d_transcoder == SMALL["width"]
    assert not tset.skip_connection
    for layer in range(tiny_lm.n_layers):
        x, y = held_out_io(tiny_lm, contexts, layer)
        ours = T.layer_quality_eval(T.load_layer_weights(out, layer), x, y)
        acts = tset.encode_layer(x, layer)
        recon = tset[layer].decode(acts, x)
        ev = 1 - (y - recon).pow(2).sum() / (y - y.mean(0)).pow(2).sum()
        assert float(ev) == pytest.approx(ours["explained_variance"], abs=1e-4)
        assert float((acts > 0).sum(-1).float().mean()) == pytest.approx(ours["l0"], abs=1e-4)


def test_every_layer_loads_in_sae_lens_as_a_transcoder_equal_to_circuit_tracers(topk_set, tiny_lm, contexts):
    from sae_lens import SAE

    out, _, _ = topk_set
    tset = T.transcoder_set_load(out)
    for layer in range(tiny_lm.n_layers):
        sae = SAE.load_from_disk(str(out / f"layer_{layer}"))
        assert type(sae).__name__ == "JumpReLUTranscoder"
        assert sae.cfg.metadata.hook_name == f"blocks.{layer}.hook_resid_mid"
        assert sae.cfg.metadata.hook_name_out == f"blocks.{layer}.hook_mlp_out"
        x, _ = held_out_io(tiny_lm, contexts, layer)
        assert torch.allclose(sae(x), tset[layer](x), atol=1e-5)


def test_a_jumprelu_set_with_skip_connections_loads_as_skip_transcoders_in_both(skip_set, tiny_lm, contexts):
    from sae_lens import SAE

    out, quality = skip_set
    tset = T.transcoder_set_load(out)
    assert tset.skip_connection
    for row in quality.layers:
        assert row.last_loss < row.first_loss
        sae = SAE.load_from_disk(str(out / f"layer_{row.layer}"))
        assert type(sae).__name__ == "JumpReLUSkipTranscoder"
        x, _ = held_out_io(tiny_lm, contexts, row.layer)
        assert sae.W_skip.abs().sum() > 0
        assert torch.allclose(sae(x), tset[row.layer](x), atol=1e-5)
    info = T.transcoder_set_info(out)
    assert (info.arch, info.skip, info.k, info.complete) == ("jumprelu", True, None, True)


def test_training_resumes_after_a_kill_from_the_last_finished_layer(tiny_lm, contexts, tmp_path):
    out = tmp_path / "set"
    params = T.TranscoderParams(**{**SMALL, "tokens": 2048})

    def killed_in_layer_1(layer, done, total):
        if layer == 1:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        T.transcoders_train(tiny_lm, contexts, params, out, progress=killed_in_layer_1)
    assert T.finished_layers(out) == [0]
    info = T.transcoder_set_info(out)
    assert not info.complete and info.finished_layers == [0]
    with pytest.raises(FileNotFoundError):
        T.transcoder_set_load(out)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in [out / "layer_0.safetensors", out / "layer_0"]}
    seen = []
    T.transcoders_train(tiny_lm, contexts, params, out, progress=lambda layer, *_: seen.append(layer))
    assert set(seen) == {1}
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in [out / "layer_0.safetensors", out / "layer_0"]}
    assert after == before
    assert T.finished_layers(out) == [0, 1] and T.transcoder_set_info(out).complete


@pytest.mark.parametrize("epochs", [1, 2])
def test_a_pass_of_several_layers_resumes_from_its_checkpoint_and_ends_as_if_never_killed(
    tiny_lm, contexts, tmp_path, epochs
):
    params = T.TranscoderParams(**{**SMALL, "tokens": 4096, "epochs": epochs}, layers_per_pass=2)  # 16 steps
    T.transcoders_train(tiny_lm, contexts, params, tmp_path / "whole", checkpoint_every=0)
    out = tmp_path / "killed"
    steps = []

    def killed_in_step_11(layer, done, total):
        steps.append(done // params.batch_size_tokens)
        if steps[-1] == 11 and layer == 1:  # layer 0 has taken step 11, layer 1 has not
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        T.transcoders_train(tiny_lm, contexts, params, out, progress=killed_in_step_11, checkpoint_every=0)
    assert T.finished_layers(out) == [] and (out / ".pass_0-1.pt").exists()
    steps.clear()
    T.transcoders_train(tiny_lm, contexts, params, out, progress=lambda layer, done, total: steps.append(done // 256))
    assert steps[0] == 11  # the pass went on from the last saved step, not from the start
    assert not list(out.glob(".pass_*"))
    for layer in (0, 1):
        whole, resumed = T.load_layer_weights(tmp_path / "whole", layer), T.load_layer_weights(out, layer)
        assert whole.keys() == resumed.keys()
        for key in whole:  # same batches, same optimiser state: the uninterrupted result, bit for bit
            assert torch.equal(whole[key], resumed[key]), (layer, key)
        assert (
            json.loads((out / f"layer_{layer}" / "metrics.json").read_text())["last_loss"]
            == json.loads((tmp_path / "whole" / f"layer_{layer}" / "metrics.json").read_text())["last_loss"]
        )


def test_a_restart_with_other_parameters_is_refused(tiny_lm, contexts, tmp_path):
    out = tmp_path / "set"
    params = T.TranscoderParams(**{**SMALL, "tokens": 512})
    T.transcoders_train(tiny_lm, contexts, params, out)
    with pytest.raises(ValueError, match="other parameters"):
        T.transcoders_train(tiny_lm, contexts, T.TranscoderParams(**{**SMALL, "tokens": 512, "width": 32}), out)


def test_an_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="architecture"):
        T.TranscoderParams(arch="gated")


def test_replayed_epochs_run_the_model_once_over_the_distinct_tokens_and_still_learn(
    tiny_lm, contexts, tmp_path, monkeypatch
):
    seen = []
    real = T.mlp_io
    monkeypatch.setattr(T, "mlp_io", lambda lm, tokens, layers: seen.append(tokens.shape) or real(lm, tokens, layers))
    params = T.TranscoderParams(**{**SMALL, "tokens": 8192, "epochs": 4}, layers_per_pass=2)
    quality = T.transcoders_train(tiny_lm, contexts, params, tmp_path / "replayed", model_name="tiny")
    per_context = contexts.tokens.shape[1] - 1
    trained = sum(n for n, _ in seen[:-1])  # the last call is the held-out evaluation
    assert trained == -(-8192 // 4 // per_context)  # 2,048 distinct tokens, once, for both layers together
    for row in quality.layers:
        assert row.last_loss < 0.9 * row.first_loss and 0 < row.l0 <= 2 * SMALL["k"]


def test_epochs_must_be_a_whole_number_of_at_least_one():
    with pytest.raises(ValueError, match="epochs"):
        T.TranscoderParams(epochs=0)
