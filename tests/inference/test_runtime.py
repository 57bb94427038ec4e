"""The runtime in-process on the tiny model: values against direct computations."""

import pytest
import torch
from sae_lens import SAE

from inference.runtime import activations as acts
from inference.runtime import steering
from inference.runtime.saes import SaeCache, SaeRef
from tests.inference.conftest import SAES


def direct_encode(lm, sae, text):
    """Independent computation: TL's own tokenizer path (to_tokens prepends BOS) + full forward + sae.encode."""
    tokens = lm.model.to_tokens(text)
    _, cache = lm.model.run_with_cache(tokens)
    return sae.encode(cache[sae.cfg.metadata.hook_name][0])


@pytest.fixture(scope="module")
def saes(sae_dirs):
    return {name: SAE.load_from_disk(str(path)) for name, path in sae_dirs.items()}


@pytest.mark.parametrize("name", list(SAES))
def test_feature_values_equal_sae_encode_of_hooked_activations_with_bos_dropped(tiny_lm, saes, name):
    sae = saes[name]
    text = "The quick brown fox jumps over the lazy dog"
    expected = direct_encode(tiny_lm, sae, text)
    fired = [i for i in range(sae.cfg.d_sae) if expected[1:, i].abs().sum() > 0]
    assert fired, "the test SAE should have live features"
    for index in fired[:3]:
        out = acts.feature_values(tiny_lm, text=text, sae=sae, index=index)
        assert out["tokens"][0] == "The" and len(out["tokens"]) == expected.shape[0] - 1
        assert torch.allclose(torch.tensor(out["activation"]["values"]), expected[1:, index], atol=1e-5)
        assert out["activation"]["maxValue"] == pytest.approx(float(expected[1:, index].max()), abs=1e-5)


def test_a_gated_sae_loads_and_its_values_equal_sae_encode(tiny_lm, tmp_path):
    from tests.inference.conftest import write_sae

    path = write_sae(
        tmp_path / "gated", architecture="gated", hook="blocks.1.hook_resid_post", d_in=64, d_sae=32, seed=9
    )
    sae = SAE.load_from_disk(str(path))
    assert type(sae).__name__ == "GatedSAE"
    text = "gated encoders gate"
    expected = direct_encode(tiny_lm, sae, text)
    index = int(expected[1:].max(dim=0).values.argmax())
    out = acts.feature_values(tiny_lm, text=text, sae=sae, index=index)
    assert out["activation"]["maxValue"] > 0
    assert torch.allclose(torch.tensor(out["activation"]["values"]), expected[1:, index], atol=1e-5)


def test_topk_sae_has_exactly_k_active_features_per_token(tiny_lm, saes):
    res = acts.source_active_features(tiny_lm, sae=saes["1-res-topk"], texts=["one two three four"])[0]
    per_token = {}
    for pairs in res["activeFeatures"].values():
        for tok, _ in pairs:
            per_token[tok] = per_token.get(tok, 0) + 1
    assert set(per_token.values()) <= {8} and len(per_token) == len(res["tokens"])


def test_an_explicit_bos_in_the_text_is_not_doubled(tiny_lm):
    a = acts.tokenize(tiny_lm, "Hello there")
    b = acts.tokenize(tiny_lm, "<|im_start|>Hello there")
    assert a.ids == b.ids and a.ids[0] == tiny_lm.tokenizer.bos_token_id and a.is_special[0]


def test_vector_feature_values_are_the_dot_product_with_the_hook_activation(tiny_lm):
    vec = torch.randn(64)
    text = "vectors are simple"
    _, cache = tiny_lm.model.run_with_cache(tiny_lm.model.to_tokens(text))
    out = acts.feature_values(tiny_lm, text=text, vector=vec.tolist(), hook="blocks.0.hook_resid_post")
    assert torch.allclose(
        torch.tensor(out["activation"]["values"]), cache["blocks.0.hook_resid_post"][0] @ vec, atol=1e-5
    )


def test_search_all_runs_one_forward_stopped_at_the_deepest_hook_and_matches_per_source(tiny_lm, saes):
    text = "Search all of the sources at once"
    calls = []
    handle = tiny_lm.model.blocks[1].register_forward_hook(lambda *a: calls.append(1))
    try:
        only0 = acts.search_all(
            tiny_lm, saes={"0-res-std": saes["0-res-std"]}, text=text, sort_indexes=[], ignore_bos=True, num_results=5
        )
    finally:
        handle.remove()
    assert calls == []  # block 1 never ran for a layer-0 hook
    result = acts.search_all(tiny_lm, saes=saes, text=text, sort_indexes=[], ignore_bos=True, num_results=10)
    best = []
    for name, sae in saes.items():
        enc = direct_encode(tiny_lm, sae, text)
        enc[0] = 0
        best += [(float(v), name, i) for i, v in enumerate(enc.max(dim=0).values) if v > 0]
    best.sort(reverse=True)
    got = [(r["maxValue"], r["source"], r["index"]) for r in result["activations"]]
    assert [(s, i) for _, s, i in got] == [(s, i) for _, s, i in best[:10]]
    assert all(abs(a[0] - b[0]) < 1e-4 for a, b in zip(got, best, strict=False))
    assert only0["activations"] and all(r["source"] == "0-res-std" for r in only0["activations"])


def test_search_all_sorts_by_sum_at_token_indexes_and_honours_exclusions(tiny_lm, saes):
    text = "sort by these tokens please"
    sae = saes["0-res-std"]
    enc = direct_encode(tiny_lm, sae, text)
    res = acts.search_all(tiny_lm, saes={"s": sae}, text=text, sort_indexes=[2, 3], ignore_bos=True, num_results=5)
    expected = torch.topk(enc[[2, 3]].sum(dim=0), 5).indices.tolist()
    assert [r["index"] for r in res["activations"]] == expected
    excluded = acts.search_all(tiny_lm, saes={"s": sae}, text=text, sort_indexes=[2, 3], ignore_bos=True, num_results=5,
                               exclude={"s": expected[:2]})  # fmt: skip
    assert [r["index"] for r in excluded["activations"]][:3] == expected[2:5]


def test_topk_by_token_matches_a_direct_topk_and_drops_special_tokens(tiny_lm, saes):
    sae = saes["1-res-jump"]
    text = "per token top features"
    enc = direct_encode(tiny_lm, sae, text)
    res = acts.topk_by_token(tiny_lm, sae=sae, text=text, top_k=3, ignore_bos=True)
    assert [r["position"] for r in res["results"]] == list(range(1, enc.shape[0]))
    for r in res["results"]:
        top = torch.topk(enc[r["position"]], 3)
        want = [i for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True) if v > 0]
        assert [f["featureIndex"] for f in r["topFeatures"]] == want


def test_decoder_cossim_finds_the_feature_itself_first(saes):
    sae = saes["0-res-std"]
    rows = acts.decoder_cossim(query=sae.W_dec[5].detach(), target_sae=sae, num_results=4)
    assert rows[0]["index"] == 5 and rows[0]["cosineSimilarity"] == pytest.approx(1.0, abs=1e-5)
    cos = torch.nn.functional.cosine_similarity(sae.W_dec, sae.W_dec[5][None], dim=1)
    assert [r["index"] for r in rows] == torch.topk(cos, 4).indices.tolist()


def test_sae_cache_keeps_at_most_its_limit_and_evicts_the_least_recently_used(sae_dirs):
    cache = SaeCache(limit=2)
    a, b, c = (SaeRef(path=str(sae_dirs[n])) for n in SAES)
    first = cache.get(a)
    cache.get(b)
    assert cache.get(a) is first  # a cache hit, a now most recent
    cache.get(c)
    assert len(cache) == 2 and cache.keys() == [a.key, c.key]


# --- steering -----------------------------------------------------------------------------------------


def _gen(lm, vectors, *, types=("DEFAULT", "STEERED"), **kw):
    params = steering.SteerParams(**{"n_tokens": 12, "temperature": 1.0, "seed": 3, "stop_at_eos": False, **kw})
    ids = acts.tokenize(lm, "Once upon a time").ids
    return steering.generate(lm, prompt_ids=ids, types=list(types), vectors=vectors, params=params)


def test_additive_steering_at_strength_zero_equals_default(tiny_lm, saes):
    v = saes["0-res-std"].W_dec[3].tolist()
    out = _gen(tiny_lm, [steering.SteerVector("blocks.0.hook_resid_post", v, 0.0)])
    assert out["STEERED"]["ids"] == out["DEFAULT"]["ids"]
    strong = _gen(tiny_lm, [steering.SteerVector("blocks.0.hook_resid_post", v, 80.0)])
    assert strong["STEERED"]["ids"] != strong["DEFAULT"]["ids"]
    assert strong["DEFAULT"]["ids"] == out["DEFAULT"]["ids"]  # DEFAULT does not see the hook


def test_same_seed_same_output_and_default_does_not_depend_on_batch_company(tiny_lm):
    v = torch.randn(64).tolist()
    vec = [steering.SteerVector("blocks.1.hook_resid_pre", v, 5.0)]
    a, b = _gen(tiny_lm, vec), _gen(tiny_lm, vec)
    assert a["STEERED"]["ids"] == b["STEERED"]["ids"]
    alone = _gen(tiny_lm, vec, types=("DEFAULT",))
    assert alone["DEFAULT"]["ids"] == a["DEFAULT"]["ids"]
    other = _gen(tiny_lm, vec, seed=4)
    assert other["STEERED"]["ids"] != a["STEERED"]["ids"]


def test_orthogonal_decomp_keeps_the_orthogonal_part_and_scales_the_projection():
    h = torch.randn(2, 5, 16)
    v = torch.randn(16)
    u = v / v.norm()
    mask = torch.ones(2, 5, 1)
    out = steering.apply_steering(h, [(v, 3.0)], "ORTHOGONAL_DECOMP", mask)
    orth = lambda x: x - (x @ u)[..., None] * u  # noqa: E731
    assert torch.allclose(orth(out), orth(h), atol=1e-5)
    assert torch.allclose(out @ u, 3.0 * (h @ u), atol=1e-5)
    capped = steering.apply_steering(h, [(v, 0.1)], "PROJECTION_CAP", mask)
    assert torch.all(capped @ u <= 0.1 + 1e-5)
    assert torch.allclose(orth(capped), orth(h), atol=1e-5)
    keep = h @ u <= 0.1
    assert torch.allclose(capped[keep], h[keep])


def test_orthogonal_decomp_in_a_real_forward_leaves_the_orthogonal_part_unchanged(tiny_lm):
    v = torch.randn(64)
    u = v / v.norm()
    hooks = steering._Hooks([steering.SteerVector("blocks.0.hook_resid_post", v.tolist(), 2.5)],
                            steering.SteerParams(method="ORTHOGONAL_DECOMP"), "cpu")  # fmt: skip
    tokens = tiny_lm.model.to_tokens("orthogonal test")
    hooks.mask = torch.ones(1, tokens.shape[1], 1)
    seen = {}

    def grab(act, hook):
        seen["before"] = act.clone()
        after = hooks.apply("blocks.0.hook_resid_post", act)
        seen["after"] = after
        return after

    tiny_lm.model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_resid_post", grab)])
    b, a = seen["before"], seen["after"]
    assert torch.allclose(a - (a @ u)[..., None] * u, b - (b @ u)[..., None] * u, atol=1e-5)
    assert torch.allclose(a @ u, 2.5 * (b @ u), atol=1e-4)


def test_freq_penalty_reduces_repeated_tokens_and_logprobs_match_a_direct_forward(tiny_lm):
    greedy = _gen(tiny_lm, [], types=("DEFAULT",), temperature=0, n_tokens=24)["DEFAULT"]
    penalised = _gen(tiny_lm, [], types=("DEFAULT",), temperature=0, n_tokens=24, freq_penalty=2.0)["DEFAULT"]
    assert len(set(penalised["ids"])) > len(set(greedy["ids"]))
    ids = acts.tokenize(tiny_lm, "Once upon a time").ids
    logits = tiny_lm.model(torch.tensor([ids]))[0, -1]
    lp = torch.log_softmax(logits, -1)
    first = greedy["logprobs"][0]
    assert first["logprob"] == pytest.approx(float(lp.max()), abs=1e-4)
    assert len(first["topLogprobs"]) == 5 and first["topLogprobs"][0]["logprob"] == pytest.approx(
        float(lp.max()), abs=1e-4
    )


def test_chat_prompt_uses_the_template_and_marks_special_tokens(tiny_lm):
    text, ids, special = steering.chat_prompt(tiny_lm, [{"role": "user", "content": "hi"}])
    assert text.endswith("<|im_start|>assistant\n") and special[0] and not all(special)


def test_steer_special_tokens_false_leaves_template_tokens_of_the_prompt_unsteered(tiny_lm, monkeypatch):
    seen = []
    real = steering.apply_steering
    monkeypatch.setattr(
        steering, "apply_steering", lambda h, v, m, mask: (seen.append(mask.clone()), real(h, v, m, mask))[1]
    )
    _, ids, special = steering.chat_prompt(tiny_lm, [{"role": "user", "content": "hi there"}])
    vec = [steering.SteerVector("blocks.0.hook_resid_post", torch.randn(64).tolist(), 3.0)]
    for steer_special in (False, True):
        seen.clear()
        params = steering.SteerParams(n_tokens=2, temperature=0, steer_special_tokens=steer_special)
        steering.generate(
            tiny_lm, prompt_ids=ids, types=["DEFAULT", "STEERED"], vectors=vec, params=params, prompt_special=special
        )
        prefill = seen[0][..., 0]  # [rows, positions]
        assert prefill[0].sum() == 0  # the DEFAULT row is never steered
        want = [0.0 if (s and not steer_special) else 1.0 for s in special]
        assert prefill[1].tolist() == want
