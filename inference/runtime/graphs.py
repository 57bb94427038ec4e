"""Attribution graphs and interventions with circuit-tracer's TransformerLens backend, on our loaded model.

- `replacement_model_build(lm, transcoders)`: circuit-tracer's `TransformerLensReplacementModel` with the
  loaded HookedTransformer's weights (shared, not copied: `assign=True`). Its MLPs and unembed are wrapped, so
  their weights move under `mlp.old_mlp.*` and `unembed.old_unembed.*`. Build it once per (model, set) and keep it.
- `graph_generate(...)`: circuit-tracer's `attribute` with Neuronpedia's parameters, pruned and written as
  Neuronpedia's graph JSON by circuit-tracer's own node/link builders, with three changes: error-node ids that
  cannot collide with feature ids, `clerp` labels from the caller's explanations, and Neuronpedia's metadata
  (generation/pruning settings, info, source set) plus circuit-tracer's replacement and completeness scores.
- `steer_logits(...)`: Neuronpedia's steer-logits (reference/graphs.md §6) with circuit-tracer's
  `feature_intervention_generate`: clamp chosen features at their positions (or on generated tokens), zero them,
  or add a delta; the default and steered continuations with the top next-token probabilities at each step.

The worker runs under `torch.set_grad_enabled(False)`; attribution needs gradients, so they are switched on
inside `graph_generate` only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from inference.runtime.circuit_tracer_compat import circuit_tracer, ct_import
from inference.runtime.models import LoadedModel

# Neuronpedia's enforced ranges (webapp app/api/graph/generate), and its graph server's prompt limit.
LIMITS = {
    "max_n_logits": (5, 15),
    "desired_logit_prob": (0.6, 0.99),
    "node_threshold": (0.5, 0.95),
    "edge_threshold": (0.65, 0.98),
    "max_feature_nodes": (1, 10_000),  # Neuronpedia's UI offers 1500–10000; small graphs are allowed here
    "max_prompt_tokens": (2, 64),
}
GENERATOR_NAME = "memicos"

# progress(stage, done, total); stages: "attribution" (feature nodes traced), "pruning", "json"
GraphProgress = Callable[[str, int, int], None]


@dataclass
class GraphParams:
    max_n_logits: int = 10
    desired_logit_prob: float = 0.95
    node_threshold: float = 0.8
    edge_threshold: float = 0.98
    max_feature_nodes: int = 5000
    max_prompt_tokens: int = 64  # BOS included
    batch_size: int = 48  # backward passes per batch (Neuronpedia's server uses 48)

    def check(self) -> None:
        for name, (lo, hi) in LIMITS.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be between {lo} and {hi} (got {value})")


@dataclass
class GraphResult:
    graph: dict  # Neuronpedia's graph JSON
    replacement_score: float
    completeness_score: float
    n_nodes: int
    n_links: int
    n_feature_nodes: int
    prompt_tokens: list[str]
    seconds: float
    timings: dict = field(default_factory=dict)  # seconds per stage


@dataclass
class FeatureSteer:
    """One feature to steer, as Neuronpedia's steer-logits names it.

    Exactly one of `ablate` (clamp to 0), `delta` (the activation at `token_active_position` plus delta) or
    `value` (an absolute activation) applies. It is applied at `steer_position`, or, with
    `steer_generated_tokens`, on every generated token."""

    layer: int
    index: int
    token_active_position: int
    steer_position: int | None = None
    steer_generated_tokens: bool = False
    delta: float | None = None
    ablate: bool = False
    value: float | None = None


@dataclass
class SteerLogitsParams:
    n_tokens: int = 10
    top_k: int = 5
    freeze_attention: bool = True
    temperature: float = 0.0
    freq_penalty: float = 0.0
    seed: int = 16


@dataclass
class TokenLogits:
    token: str
    top_logits: list[dict]  # [{"token": str, "prob": float}], most probable first


@dataclass
class SteerLogitsResult:
    default_generation: str
    steered_generation: str
    default_logits_by_token: list[TokenLogits]
    steered_logits_by_token: list[TokenLogits]

    def as_neuronpedia(self) -> dict:
        return {
            "DEFAULT_GENERATION": self.default_generation,
            "STEERED_GENERATION": self.steered_generation,
            "DEFAULT_LOGITS_BY_TOKEN": [asdict(t) for t in self.default_logits_by_token],
            "STEERED_LOGITS_BY_TOKEN": [asdict(t) for t in self.steered_logits_by_token],
        }


def replacement_model_build(lm: LoadedModel, transcoders):
    """circuit-tracer's TransformerLens replacement model over `lm`'s weights and a TranscoderSet."""
    rm_mod = ct_import("replacement_model.replacement_model_transformerlens")
    cfg = lm.model.cfg.to_dict() if hasattr(lm.model.cfg, "to_dict") else dict(lm.model.cfg.__dict__)
    from transformer_lens import HookedTransformerConfig

    cfg = HookedTransformerConfig.from_dict({**cfg, "init_weights": False})  # the weights come from lm
    rm = rm_mod.TransformerLensReplacementModel.from_config(
        cfg, transcoders, tokenizer=lm.tokenizer, move_to_device=False
    )
    state = {}
    for key, value in lm.model.state_dict().items():
        if ".mlp." in key:
            key = key.replace(".mlp.", ".mlp.old_mlp.", 1)
        elif key.startswith("unembed."):
            key = "unembed.old_unembed." + key.removeprefix("unembed.")
        state[key] = value
    state.update({f"transcoders.{k}": v for k, v in transcoders.state_dict().items()})
    rm.load_state_dict(state, strict=True, assign=True)
    for param in rm.parameters():  # assign=True brought new Parameters; circuit-tracer wants them frozen
        param.requires_grad_(False)
    return rm.to(lm.spec.device).eval()


def prompt_tokens(lm: LoadedModel, prompt: str) -> torch.Tensor:
    """1-D token ids with our BOS first (as in training and dashboards; circuit-tracer keeps a leading special
    token as it is and zeroes position 0)."""
    return lm.model.to_tokens(prompt, prepend_bos=True)[0]


def salient_logits(lm: LoadedModel, prompt: str, *, max_n_logits: int = 10, desired_logit_prob: float = 0.95) -> dict:
    """The next-token candidates a graph of `prompt` gets logit nodes for, as Neuronpedia's graph server's
    /forward-pass reports them: the most probable tokens, fewest first, until their probabilities add up to
    `desired_logit_prob` (the first to reach it included), at most `max_n_logits` (circuit-tracer's rule)."""
    for name in ("max_n_logits", "desired_logit_prob"):
        lo, hi = LIMITS[name]
        value = locals()[name]
        if not lo <= value <= hi:
            raise ValueError(f"{name} must be between {lo} and {hi} (got {value})")
    tokens = prompt_tokens(lm, prompt).to(lm.spec.device)
    with torch.no_grad():
        logits = lm.model(tokens[None], return_type="logits")[0, -1].float()
    probs, ids = logits.softmax(-1).topk(max_n_logits)
    reached = (probs.cumsum(0) >= desired_logit_prob).nonzero()
    keep = int(reached[0]) + 1 if reached.numel() else max_n_logits
    rows = [
        {"token": lm.tokenizer.decode([int(i)]), "token_id": int(i), "probability": float(p)}
        for p, i in zip(probs[:keep], ids[:keep], strict=True)
    ]
    return {
        "salient_logits": rows,
        "total_salient_tokens": len(rows),
        "cumulative_probability": float(probs[:keep].sum()),
    }


@contextlib.contextmanager
def _attribution_progress(progress: GraphProgress | None):
    """circuit-tracer reports feature tracing only through a tqdm bar; stand in for it while attribute runs."""
    module = ct_import("attribution.attribute")
    if progress is None:
        yield
        return

    class Bar:
        def __init__(self, total=None, **_):
            self.total, self.n = int(total or 0), 0
            progress("attribution", 0, self.total)

        def update(self, n=1):
            self.n += int(n)
            progress("attribution", self.n, self.total)

        def close(self):
            pass

    original = module.tqdm
    module.tqdm = Bar
    try:
        yield
    finally:
        module.tqdm = original


def _node_label(node, explanations: dict[tuple[int, int], str]) -> str:
    if node.feature_type == "cross layer transcoder":
        layer, index, _ = node.node_id.split("_")
        return explanations.get((int(layer), int(index)), "")
    return node.clerp


def graph_generate(
    lm: LoadedModel,
    replacement_model,
    *,
    prompt: str,
    model_id: str,
    slug: str,
    params: GraphParams | None = None,
    explanations: dict[tuple[int, int], str] | None = None,
    source_set: str | None = None,
    info: dict | None = None,
    progress: GraphProgress | None = None,
) -> GraphResult:
    """One attribution graph as Neuronpedia's JSON. `explanations[(layer, feature_index)]` fills `clerp`;
    `source_set` (the transcoders' source-set name) lets the viewer fetch dashboards (`schema_version` 1)."""
    params = params or GraphParams()
    params.check()
    tokens = prompt_tokens(lm, prompt)
    if tokens.numel() > params.max_prompt_tokens:
        raise ValueError(f"The prompt is {tokens.numel()} tokens (with BOS); the limit is {params.max_prompt_tokens}")
    if tokens.numel() < 2:
        raise ValueError("The prompt is empty")
    circuit_tracer()
    attribute = ct_import("attribution.attribute").attribute
    graph_mod = ct_import("graph")
    files = ct_import("utils.create_graph_files")
    timings = {}
    started = time.monotonic()
    with torch.enable_grad(), _attribution_progress(progress):
        graph = attribute(
            tokens.to(lm.spec.device),
            replacement_model,
            max_n_logits=params.max_n_logits,
            desired_logit_prob=params.desired_logit_prob,
            batch_size=params.batch_size,
            max_feature_nodes=params.max_feature_nodes,
        )
    timings["attribution"] = time.monotonic() - started
    t0 = time.monotonic()
    if progress:
        progress("pruning", 0, 1)
    graph.to("cpu")
    replacement, completeness = graph_mod.compute_graph_scores(graph)
    node_mask, edge_mask, cumulative = graph_mod.prune_graph(graph, params.node_threshold, params.edge_threshold)
    timings["pruning"] = time.monotonic() - t0
    t0 = time.monotonic()
    if progress:
        progress("json", 0, 1)
    nodes = files.create_nodes(graph, node_mask, lm.tokenizer, cumulative)
    n_features = len(graph.selected_features)
    for node_idx, node in nodes.items():
        if n_features <= node_idx < n_features + graph.n_pos * graph.cfg.n_layers:
            # circuit-tracer 0.5.0 names error nodes 0_{layer}_{pos}: the id of layer-0 feature {layer} at {pos}
            node.node_id = f"err_{node.layer}_{node.ctx_idx}"
            node.jsNodeId = f"err_{node.layer}-{node.ctx_idx}"
        node.clerp = _node_label(node, explanations or {})
    used_nodes, used_edges = files.create_used_nodes_and_edges(graph, nodes, edge_mask)
    built = files.build_model(graph, used_nodes, used_edges, slug, model_id, params.node_threshold, lm.tokenizer)
    data = built.model_dump()
    meta = data["metadata"]
    meta["schema_version"] = 1
    meta["replacement_score"] = replacement
    meta["completeness_score"] = completeness
    meta["generation_settings"] = {
        "max_n_logits": params.max_n_logits,
        "desired_logit_prob": params.desired_logit_prob,
        "batch_size": params.batch_size,
        "max_feature_nodes": params.max_feature_nodes,
    }
    meta["pruning_settings"] = {"node_threshold": params.node_threshold, "edge_threshold": params.edge_threshold}
    meta["info"] = {
        "generator": {"name": GENERATOR_NAME, "version": f"circuit-tracer {circuit_tracer().__version__}"},
        "create_time_ms": int(time.time() * 1000),
        **(info or {}),
    }
    if source_set:
        meta["feature_details"] = {"neuronpedia_source_set": source_set}
    timings["json"] = time.monotonic() - t0
    n_feature_nodes = sum(1 for n in data["nodes"] if n["feature_type"] == "cross layer transcoder")
    return GraphResult(
        graph=data,
        replacement_score=replacement,
        completeness_score=completeness,
        n_nodes=len(data["nodes"]),
        n_links=len(data["links"]),
        n_feature_nodes=n_feature_nodes,
        prompt_tokens=meta["prompt_tokens"],
        seconds=time.monotonic() - started,
        timings={k: round(v, 3) for k, v in timings.items()},
    )


def _interventions(replacement_model, tokens: torch.Tensor, features: list[FeatureSteer]) -> list[tuple]:
    n_pos = tokens.numel()
    n_layers = replacement_model.cfg.n_layers
    width = replacement_model.transcoders.d_transcoder
    _, acts = replacement_model.get_activations(tokens)  # [n_layers, n_pos, width]
    out = []
    for f in features:
        if not 0 <= f.layer < n_layers:
            raise ValueError(f"layer {f.layer} is out of range (0..{n_layers - 1})")
        if not 0 <= f.index < width:
            raise ValueError(f"feature index {f.index} is out of range (0..{width - 1})")
        if not 0 <= f.token_active_position < n_pos:
            raise ValueError(f"token_active_position {f.token_active_position} is out of range (0..{n_pos - 1})")
        if sum([f.ablate, f.delta is not None, f.value is not None]) != 1:
            raise ValueError("each feature needs exactly one of ablate, delta or value")
        if f.steer_generated_tokens == (f.steer_position is not None):
            raise ValueError("each feature needs either steer_position or steer_generated_tokens")
        if f.steer_position is not None and not 0 <= f.steer_position < n_pos:
            raise ValueError(f"steer_position {f.steer_position} is out of range (0..{n_pos - 1})")
        if f.steer_position == 0:  # BOS: never steered (Neuronpedia's graph server drops it too)
            continue
        if f.ablate:
            value = 0.0
        elif f.value is not None:
            value = float(f.value)
        else:
            value = float(acts[f.layer, f.token_active_position, f.index]) + float(f.delta)
        where = slice(n_pos, None) if f.steer_generated_tokens else f.steer_position
        out.append((f.layer, where, f.index, value))
    if not out:
        raise ValueError("no features to steer: position 0 is the BOS token, which is never steered")
    return out


def _logits_by_token(tokenizer, logits: torch.Tensor, generated: list[int], top_k: int) -> list[TokenLogits]:
    probs = logits.float().softmax(-1)
    rows = []
    for i, tok in enumerate(generated):
        p, idx = probs[i].topk(top_k)
        rows.append(
            TokenLogits(
                token=tokenizer.decode([tok]),
                top_logits=[
                    {"token": tokenizer.decode([int(j)]), "prob": float(q)} for q, j in zip(p, idx, strict=True)
                ],
            )
        )
    return rows


def _generate(replacement_model, tokens, interventions, params: SteerLogitsParams):
    if params.temperature > 0:
        torch.manual_seed(params.seed)
    out, logits, _ = replacement_model.feature_intervention_generate(
        tokens[None],
        interventions,
        freeze_attention=params.freeze_attention,
        return_activations=False,
        max_new_tokens=params.n_tokens,
        do_sample=params.temperature > 0,
        temperature=max(params.temperature, 1e-5),
        freq_penalty=params.freq_penalty,
        stop_at_eos=False,
        verbose=False,
    )
    generated = [int(t) for t in out[0, tokens.numel() :]]
    return generated, logits


def steer_logits(
    lm: LoadedModel,
    replacement_model,
    *,
    prompt: str,
    features: list[FeatureSteer],
    params: SteerLogitsParams | None = None,
) -> SteerLogitsResult:
    """The default and steered continuations of `prompt`, with the top next-token probabilities per step."""
    params = params or SteerLogitsParams()
    if not 1 <= params.n_tokens <= 256:
        raise ValueError("n_tokens must be between 1 and 256")
    if not 1 <= params.top_k <= 10:
        raise ValueError("top_k must be between 1 and 10")
    if not features:
        raise ValueError("no features to steer")
    tokens = prompt_tokens(lm, prompt).to(lm.spec.device)
    interventions = _interventions(replacement_model, tokens, features)
    default, default_logits = _generate(replacement_model, tokens, [], params)
    steered, steered_logits = _generate(replacement_model, tokens, interventions, params)
    tok = lm.tokenizer
    return SteerLogitsResult(
        default_generation=tok.decode(default),
        steered_generation=tok.decode(steered),
        default_logits_by_token=_logits_by_token(tok, default_logits, default, params.top_k),
        steered_logits_by_token=_logits_by_token(tok, steered_logits, steered, params.top_k),
    )
