"""Per-process state of an inference worker: the loaded model(s) and the SAE cache, plus the task bodies.

The Celery tasks (inference/tasks.py) pass plain dict payloads here; everything below returns plain,
JSON-able dicts. A worker normally holds one model (its queue is `inference.<model_id>`); eager-mode tests
may hold several, hence the dict.
"""

from __future__ import annotations

import atexit
import sys
import threading

import torch

from inference.runtime import activations as acts
from inference.runtime import steering, toy_cyclic
from inference.runtime.models import LoadedModel, ModelSpec, load_model
from inference.runtime.saes import SaeCache, SaeRef, sae_hook_name

_models: dict[str, LoadedModel] = {}
_saes: SaeCache | None = None
_lock = threading.Lock()


class UserError(ValueError):
    """A request the runtime refuses (too long, bad SAE, no chat template) → 400 with this message."""


def call(name: str, payload: dict, **kwargs) -> dict:
    """Run the task body `name` without autograd, whatever the calling thread's grad mode: a worker thread that
    never loaded a model, or an eager test after a training test, would otherwise record a graph of every SAE
    encode (memory and time for nothing)."""
    with torch.no_grad():
        return getattr(sys.modules[__name__], name)(payload, **kwargs)


def model_for(model_id: str, loader: dict) -> LoadedModel:
    with _lock:
        if model_id not in _models:
            _models[model_id] = load_model(ModelSpec.from_loader(loader))
        return _models[model_id]


def sae_cache() -> SaeCache:
    global _saes
    if _saes is None:
        _saes = SaeCache()
    return _saes


def _sae(ref: dict):
    try:
        return sae_cache().get(SaeRef.from_dict(ref))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise UserError(f"Cannot load SAE {ref}: {exc}") from exc


def _index_check(sae, index: int):
    if not 0 <= index < sae.cfg.d_sae:
        raise UserError(f"Feature index {index} is outside the SAE (d_sae={sae.cfg.d_sae})")


def _check_length(lm: LoadedModel, n: int, extra: int = 0):
    if n + extra > lm.model.cfg.n_ctx:
        raise UserError(
            f"Text too long: {n} tokens (+{extra} to generate) exceed the model's context of {lm.model.cfg.n_ctx}"
        )


def _lm(payload: dict) -> LoadedModel:
    return model_for(payload["model_id"], payload.get("loader") or {})


def run_activation_single(payload: dict) -> dict:
    lm = _lm(payload)
    probe = payload["probe"]
    results = []
    for text in payload["texts"]:
        _check_length(lm, len(acts.tokenize(lm, text).ids))
        if "sae" in probe:
            sae = _sae(probe["sae"])
            _index_check(sae, probe["index"])
            results.append(acts.feature_values(lm, text=text, sae=sae, index=probe["index"]))
        else:
            if len(probe["vector"]) != lm.d_model:
                raise UserError(f"Vector has {len(probe['vector'])} dimensions, the model {lm.d_model}")
            results.append(acts.feature_values(lm, text=text, vector=probe["vector"], hook=probe["hook"]))
    return {"results": results}


def run_activation_source(payload: dict) -> dict:
    lm = _lm(payload)
    for text in payload["texts"]:
        _check_length(lm, len(acts.tokenize(lm, text).ids))
    return {"results": acts.source_active_features(lm, sae=_sae(payload["sae"]), texts=payload["texts"])}


def run_search_all(payload: dict) -> dict:
    lm = _lm(payload)
    saes = {name: _sae(ref) for name, ref in payload["saes"].items()}
    results = []
    for text in payload["texts"]:
        _check_length(lm, len(acts.tokenize(lm, text).ids))
        results.append(
            acts.search_all(
                lm,
                saes=saes,
                text=text,
                sort_indexes=payload.get("sort_indexes") or [],
                ignore_bos=payload.get("ignore_bos", True),
                num_results=payload["num_results"],
                exclude=payload.get("exclude"),
            )
        )
    return {"results": results}


def run_topk_by_token(payload: dict) -> dict:
    lm = _lm(payload)
    sae = _sae(payload["sae"])
    results = []
    for text in payload["texts"]:
        _check_length(lm, len(acts.tokenize(lm, text).ids))
        results.append(
            acts.topk_by_token(
                lm,
                sae=sae,
                text=text,
                top_k=payload["top_k"],
                ignore_bos=payload["ignore_bos"],
                exclude=payload.get("exclude"),
            )
        )
    return {"results": results}


def run_tokenize(payload: dict) -> dict:
    lm = _lm(payload)
    toks = acts.tokenize(lm, payload["text"], prepend_bos=payload.get("prepend_bos", True))
    out = {"tokens": toks.ids, "tokenStrings": toks.strings, "prependBos": toks.has_bos}
    # graph tokenize: the next-token candidates a graph would trace back from (not for a prompt too long to graph)
    if payload.get("salient_logits") and len(toks.ids) <= payload.get("salient_max_tokens", len(toks.ids)):
        from inference.runtime.graphs import salient_logits

        try:
            out["salientLogits"] = salient_logits(lm, payload["text"], **payload["salient_logits"])
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    return out


def run_cossim(payload: dict) -> dict:
    _lm(payload)  # the worker serves one model; loading it here keeps eager mode honest too
    sae = _sae(payload["sae"])
    target = _sae(payload["target_sae"])
    _index_check(sae, payload["index"])
    query = sae.W_dec[payload["index"]].detach()
    try:
        rows = acts.decoder_cossim(query=query, target_sae=target, num_results=payload["num_results"])
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    return {"results": rows}


def _steer_vectors(payload: dict) -> list[steering.SteerVector]:
    out = []
    for item in payload.get("features", []):
        if "sae" in item:
            sae = _sae(item["sae"])
            _index_check(sae, item["index"])
            vec = sae.W_dec[item["index"]].detach().float().tolist()
            hook = sae_hook_name(sae)
        else:
            vec, hook = item["vector"], item["hook"]
        out.append(steering.SteerVector(hook=hook, vector=vec, coeff=item["coeff"]))
    return out


def run_steer(payload: dict, on_token=None) -> dict:
    """payload: prompt (str) or messages (chat), types, features, settings → {type: {text, ids, logprobs}, prompt}."""
    lm = _lm(payload)
    s = payload["settings"]
    params = steering.SteerParams(
        n_tokens=s["n_tokens"],
        temperature=s["temperature"],
        freq_penalty=s["freq_penalty"],
        seed=s["seed"],
        method=s["steer_method"],
        steer_special_tokens=s.get("steer_special_tokens", True),
        n_logprobs=s.get("n_logprobs", 5),
    )
    if payload.get("messages") is not None:
        try:
            prompt_text, ids, special = steering.chat_prompt(lm, payload["messages"])
        except steering.NoChatTemplate as exc:
            raise UserError(str(exc)) from exc
    else:
        toks = acts.tokenize(lm, payload["prompt"])
        prompt_text, ids, special = payload["prompt"], toks.ids, toks.is_special
    _check_length(lm, len(ids), params.n_tokens)
    vectors = _steer_vectors(payload)
    for v in vectors:
        if len(v.vector) != lm.d_model:
            raise UserError(f"Steering vector has {len(v.vector)} dimensions, the model {lm.d_model}")
    out = steering.generate(
        lm,
        prompt_ids=ids,
        types=payload["types"],
        vectors=vectors,
        params=params,
        prompt_special=special,
        on_token=on_token,
    )
    return {"prompt": prompt_text, "outputs": out, "eos": lm.tokenizer.eos_token or ""}


def run_intervene(payload: dict) -> dict:
    """Toy models (seed 003). payload: model_id, loader, sae (ref), index, positions, mode, value, prompt, top_k,
    hallucination."""
    lm = _lm(payload)
    sae = _sae(payload["sae"])
    index = int(payload["index"])
    _index_check(sae, index)
    toks = acts.tokenize(lm, payload["prompt"])
    if lm.tokenizer.unk_token_id is not None and lm.tokenizer.unk_token_id in toks.ids:
        raise UserError("The prompt has symbols the model does not know")
    if len(toks.ids) > lm.model.cfg.n_ctx:
        raise UserError(f"Prompt too long: {len(toks.ids)} tokens, the model's context is {lm.model.cfg.n_ctx}")
    positions = sorted(set(payload.get("positions") or []))
    if any(p < 0 or p >= len(toks.ids) for p in positions):
        raise UserError(f"positions must be between 0 and {len(toks.ids) - 1} (0 is the BOS)")
    mode, value = payload["mode"], float(payload.get("value") or 0.0)
    result = {
        "tokens": toks.strings,
        "positions": toy_cyclic.intervene(
            lm,
            sae,
            toks.ids,
            index=index,
            positions=positions,
            mode=mode,
            value=value,
            top_k=int(payload.get("top_k", 5)),
        ),
    }
    if payload.get("hallucination", True) and lm.spec.kind == "toy-cyclic":
        result["hallucination"] = toy_cyclic.hallucination_check(
            lm, sae, toy_cyclic.Toy.read(lm.spec.name), index=index, mode=mode, value=value
        )
    return result


_replacement_models: dict[tuple[str, str], object] = {}  # (model id, transcoder set dir) → circuit-tracer model
atexit.register(_replacement_models.clear)  # its __del__ removes hooks, which fails after torch is torn down


def replacement_model_for(model_id: str, loader: dict, set_path) -> tuple[LoadedModel, object]:
    """The model and circuit-tracer's replacement model over the transcoder set at `set_path`, cached per process,
    one set at a time (each holds every layer's transcoder). FileNotFoundError when the set is not there."""
    from inference.runtime.graphs import replacement_model_build
    from inference.runtime.transcoders import transcoder_set_load

    lm = model_for(model_id, loader)
    key = (model_id, str(set_path))
    with _lock:
        if key not in _replacement_models:
            tset = transcoder_set_load(set_path, scan=model_id)
            _replacement_models.clear()
            _replacement_models[key] = replacement_model_build(lm, tset)
        return lm, _replacement_models[key]


def _replacement_model(payload: dict):
    try:
        return replacement_model_for(payload["model_id"], payload.get("loader") or {}, payload["transcoder_set_path"])
    except FileNotFoundError as exc:
        raise UserError(f"Cannot load the transcoder set: {exc}") from exc


def run_steer_logits(payload: dict) -> dict:
    """Neuronpedia's steer-logits with circuit-tracer's interventions on the transcoders' features. payload:
    model_id, loader, transcoder_set_path, prompt, features [{layer, index, token_active_position, steer_position,
    steer_generated_tokens, delta, ablate}], n_tokens, top_k, freeze_attention, temperature, freq_penalty, seed."""
    from inference.runtime.graphs import FeatureSteer, SteerLogitsParams, steer_logits

    lm, rm = _replacement_model(payload)
    features = [FeatureSteer(**f) for f in payload["features"]]
    params = SteerLogitsParams(
        n_tokens=int(payload["n_tokens"]), top_k=int(payload["top_k"]), freeze_attention=bool(payload["freeze_attention"]),
        temperature=float(payload["temperature"]), freq_penalty=float(payload["freq_penalty"]), seed=int(payload["seed"]),
    )  # fmt: skip
    _check_length(lm, len(lm.tokenizer.encode(payload["prompt"])) + 1, params.n_tokens)
    try:
        return steer_logits(lm, rm, prompt=payload["prompt"], features=features, params=params).as_neuronpedia()
    except ValueError as exc:  # an index out of range, both or neither of ablate/delta, …
        raise UserError(str(exc)) from exc
