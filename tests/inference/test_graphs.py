"""Attribution graphs and interventions on the tiny model with transcoders trained here."""

import json
import subprocess
import sys

import pytest
import torch

from inference.runtime import graphs as G
from inference.runtime import transcoders as T
from inference.runtime.graph_schema import graph_problems

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def tset_dir(tiny_lm, tmp_path_factory):
    from inference.runtime.corpus import corpus_contexts

    contexts = corpus_contexts(tiny_lm.tokenizer, "brown", context_size=32, max_tokens=16_384)
    out = tmp_path_factory.mktemp("graphs") / "set"
    params = T.TranscoderParams(width=64, k=4, tokens=4096, batch_size_tokens=256, eval_contexts=8, lr=3e-3)
    T.transcoders_train(tiny_lm, contexts, params, out, model_name="tiny", progress=None)
    return out


@pytest.fixture(scope="module")
def rm(tiny_lm, tset_dir):
    return G.replacement_model_build(tiny_lm, T.transcoder_set_load(tset_dir))


@pytest.fixture(scope="module")
def graphs(tiny_lm, rm):
    """Graphs of one prompt at three node thresholds, with every feature explained."""
    explanations = {(layer, i): f"feature {layer}/{i}" for layer in range(tiny_lm.n_layers) for i in range(64)}
    out = {}
    for threshold in (0.5, 0.8, 0.95):
        params = G.GraphParams(node_threshold=threshold, max_feature_nodes=300)
        calls = []
        out[threshold] = G.graph_generate(
            tiny_lm,
            rm,
            prompt=PROMPT,
            model_id="tiny-inference",
            slug=f"capital-{threshold}",
            params=params,
            explanations=explanations,
            source_set="tc-tiny",
            progress=lambda *a, calls=calls: calls.append(a),
        )
        out[threshold].calls = calls
    return out


def test_the_replacement_model_computes_the_loaded_models_logits_with_its_weights(tiny_lm, rm):
    tokens = G.prompt_tokens(tiny_lm, PROMPT)[None]
    assert torch.allclose(rm(tokens), tiny_lm.model(tokens), atol=1e-5)
    assert rm.blocks[0].mlp.old_mlp.W_in.data_ptr() == tiny_lm.model.blocks[0].mlp.W_in.data_ptr()


def test_a_generated_graph_validates_against_the_graph_schema(graphs):
    for result in graphs.values():
        assert graph_problems(result.graph) == []
        json.dumps(result.graph)  # plain JSON types only


def test_node_ids_are_unique_and_error_nodes_cannot_take_a_layer_0_feature_id(graphs):
    for result in graphs.values():
        ids = [n["node_id"] for n in result.graph["nodes"]]
        assert len(ids) == len(set(ids))
        errors = [n for n in result.graph["nodes"] if n["feature_type"] == "mlp reconstruction error"]
        assert errors, "the tiny transcoders leave reconstruction error"
        for node in errors:
            assert node["node_id"] == f"err_{node['layer']}_{node['ctx_idx']}"


def test_the_node_count_rises_with_the_node_threshold_the_share_of_influence_kept(graphs):
    """nodeThreshold is, as on Neuronpedia, the cumulative influence the pruned graph keeps: a higher one keeps
    more nodes, not fewer: it is not a cut-off on each node's score."""
    counts = [graphs[t].n_nodes for t in (0.95, 0.8, 0.5)]
    assert counts[0] > counts[1] > counts[2]
    assert graphs[0.95].n_links > graphs[0.5].n_links


def test_metadata_names_the_model_settings_scores_and_source_set(graphs, tiny_lm):
    result = graphs[0.8]
    meta = result.graph["metadata"]
    assert meta["scan"] == "tiny-inference" and meta["slug"] == "capital-0.8"
    assert meta["prompt_tokens"][0] == tiny_lm.tokenizer.bos_token and "".join(meta["prompt_tokens"][1:]) == PROMPT
    assert meta["node_threshold"] == 0.8 and meta["pruning_settings"]["node_threshold"] == 0.8
    assert meta["generation_settings"]["max_feature_nodes"] == 300
    assert meta["feature_details"] == {"neuronpedia_source_set": "tc-tiny"}
    assert meta["schema_version"] == 1
    assert 0 < result.replacement_score <= 1 and 0 < result.completeness_score <= 1
    assert meta["replacement_score"] == result.replacement_score
    assert result.graph["qParams"]["pinnedIds"] == []


def test_feature_labels_come_from_the_explanations_and_logits_keep_their_probabilities(graphs):
    nodes = graphs[0.95].graph["nodes"]
    features = [n for n in nodes if n["feature_type"] == "cross layer transcoder"]
    assert features
    for node in features:
        layer, index, pos = node["node_id"].split("_")
        assert node["clerp"] == f"feature {layer}/{index}"
        assert node["ctx_idx"] == int(pos) and node["activation"] is not None
    logits = [n for n in nodes if n["feature_type"] == "logit"]
    assert logits and all("(p=" in n["clerp"] for n in logits)
    assert sum(n["is_target_logit"] for n in logits) == 1


def test_progress_reports_attribution_up_to_the_traced_feature_count_then_pruning_and_json(graphs):
    calls = graphs[0.8].calls
    attribution = [c for c in calls if c[0] == "attribution"]
    assert attribution[-1][1] == attribution[-1][2] > 0
    assert [c[0] for c in calls[-2:]] == ["pruning", "json"]


def test_generation_leaves_gradients_off_as_the_worker_runs(graphs, tiny_lm, rm):
    assert not torch.is_grad_enabled()
    G.graph_generate(tiny_lm, rm, prompt="one two", model_id="m", slug="s", params=G.GraphParams(max_feature_nodes=5))
    assert not torch.is_grad_enabled()


def test_a_prompt_over_the_token_limit_or_a_setting_out_of_range_is_refused(tiny_lm, rm):
    with pytest.raises(ValueError, match="limit is 4"):
        G.graph_generate(tiny_lm, rm, prompt=PROMPT, model_id="m", slug="s", params=G.GraphParams(max_prompt_tokens=4))
    with pytest.raises(ValueError, match="node_threshold"):
        G.graph_generate(tiny_lm, rm, prompt=PROMPT, model_id="m", slug="s", params=G.GraphParams(node_threshold=0.2))


def _strongest_feature(result):
    nodes = [n for n in result.graph["nodes"] if n["feature_type"] == "cross layer transcoder"]
    node = max(nodes, key=lambda n: abs(n["activation"]))
    layer, index, pos = (int(v) for v in node["node_id"].split("_"))
    return layer, index, pos


def test_zeroing_a_graph_feature_changes_the_next_token_probabilities(graphs, tiny_lm, rm):
    layer, index, pos = _strongest_feature(graphs[0.95])
    feature = G.FeatureSteer(layer=layer, index=index, token_active_position=pos, steer_position=pos, ablate=True)
    result = G.steer_logits(tiny_lm, rm, prompt=PROMPT, features=[feature], params=G.SteerLogitsParams(n_tokens=3))
    default, steered = result.default_logits_by_token[0], result.steered_logits_by_token[0]
    assert len(result.default_logits_by_token) == 3 and len(default.top_logits) == 5
    assert [t["prob"] for t in default.top_logits] != [t["prob"] for t in steered.top_logits]
    # the default run is the plain model
    probs = tiny_lm.model(G.prompt_tokens(tiny_lm, PROMPT)[None])[0, -1].softmax(-1)
    assert default.top_logits[0]["prob"] == pytest.approx(float(probs.max()), rel=1e-4)
    body = result.as_neuronpedia()
    assert set(body) == {
        "DEFAULT_GENERATION",
        "STEERED_GENERATION",
        "DEFAULT_LOGITS_BY_TOKEN",
        "STEERED_LOGITS_BY_TOKEN",
    }


def test_clamping_to_the_current_activation_changes_nothing(graphs, tiny_lm, rm):
    layer, index, pos = _strongest_feature(graphs[0.95])
    feature = G.FeatureSteer(layer=layer, index=index, token_active_position=pos, steer_position=pos, delta=0.0)
    result = G.steer_logits(tiny_lm, rm, prompt=PROMPT, features=[feature], params=G.SteerLogitsParams(n_tokens=2))
    assert result.default_generation == result.steered_generation
    for a, b in zip(result.default_logits_by_token, result.steered_logits_by_token, strict=True):
        assert [t["prob"] for t in a.top_logits] == pytest.approx([t["prob"] for t in b.top_logits], abs=1e-5)


def test_clamping_to_an_absolute_value_of_zero_is_ablation_and_bos_positions_are_dropped(graphs, tiny_lm, rm):
    layer, index, pos = _strongest_feature(graphs[0.95])
    params = G.SteerLogitsParams(n_tokens=2)

    def steered(*features):
        result = G.steer_logits(tiny_lm, rm, prompt=PROMPT, features=list(features), params=params)
        return [t["prob"] for row in result.steered_logits_by_token for t in row.top_logits]

    at = {"layer": layer, "index": index, "token_active_position": pos, "steer_position": pos}
    ablated = steered(G.FeatureSteer(**at, ablate=True))
    assert steered(G.FeatureSteer(**at, value=0.0)) == pytest.approx(ablated, rel=1e-6)
    assert steered(G.FeatureSteer(**at, value=100.0)) != pytest.approx(ablated, rel=1e-2)
    bos = G.FeatureSteer(layer=layer, index=index, token_active_position=pos, steer_position=0, value=100.0)
    assert steered(G.FeatureSteer(**at, ablate=True), bos) == pytest.approx(ablated, rel=1e-6)


def test_a_steer_request_that_names_no_valid_feature_is_refused(tiny_lm, rm):
    bad = [
        G.FeatureSteer(layer=9, index=0, token_active_position=1, steer_position=1, ablate=True),
        G.FeatureSteer(layer=0, index=0, token_active_position=1, steer_position=1),  # neither ablate nor delta
        G.FeatureSteer(layer=0, index=0, token_active_position=1, steer_position=0, ablate=True),  # BOS only
        G.FeatureSteer(
            layer=0, index=0, token_active_position=1, steer_position=1, steer_generated_tokens=True, ablate=True
        ),
    ]
    for feature in bad:
        with pytest.raises(ValueError):
            G.steer_logits(tiny_lm, rm, prompt=PROMPT, features=[feature])


def test_the_validator_names_what_is_wrong_with_a_graph(graphs):
    good = graphs[0.5].graph
    no_scan = json.loads(json.dumps(good))
    del no_scan["metadata"]["scan"]
    assert any("scan" in p for p in graph_problems(no_scan))
    dup = json.loads(json.dumps(good))
    dup["nodes"].append(dict(dup["nodes"][0]))
    assert any("not unique" in p for p in graph_problems(dup))
    dangling = json.loads(json.dumps(good))
    dangling["links"].append({"source": "nowhere", "target": dangling["nodes"][0]["node_id"], "weight": 1.0})
    assert any("names no node" in p for p in graph_problems(dangling))
    assert graph_problems([]) and graph_problems({"metadata": {}, "nodes": [], "links": []})


def test_the_validator_imports_without_torch():
    code = "import sys, inference.runtime.graph_schema as s; assert s.graph_problems({}) and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
