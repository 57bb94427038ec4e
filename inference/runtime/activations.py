"""Activations of SAE features (or stored vectors) on text: activation testing, search-all, top-k by token.

BOS handling follows Neuronpedia's inference server (shared/reference/neuronpedia.md §5): the tokenizer's
BOS string is prepended when absent, SAE values at BOS positions are zeroed, and the first position is
dropped from `values`/`tokens` (so returned tokens start after BOS). Vector features are a plain dot product
of the hook activation with the vector (BOS kept).

Everything here takes and returns plain Python values (lists, dicts); torch stays inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sae_lens.util import extract_stop_at_layer_from_tlens_hook_name

from inference.runtime.models import LoadedModel
from inference.runtime.saes import decoder_rows, sae_encode, sae_hook_name


@dataclass
class Tokens:
    ids: list[int]
    strings: list[str]
    is_special: list[bool]
    has_bos: bool  # position 0 is the BOS we (or the user) put there


def tokenize(lm: LoadedModel, text: str, *, prepend_bos: bool = True) -> Tokens:
    tok = lm.tokenizer
    bos = tok.bos_token
    has_bos = bool(bos) and prepend_bos
    if has_bos and not text.startswith(bos):
        text = bos + text
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if has_bos and (not ids or ids[0] != tok.bos_token_id):
        ids = [tok.bos_token_id, *ids]
    special = set(tok.all_special_ids)
    return Tokens(
        ids=ids,
        strings=[tok.decode([i]) for i in ids],
        is_special=[i in special for i in ids],
        has_bos=has_bos,
    )


def stop_layer(hook_names) -> int:
    return max(extract_stop_at_layer_from_tlens_hook_name(h) or 0 for h in hook_names)


def hook_activations(lm: LoadedModel, ids: list[int], hook_names: set[str]) -> dict[str, torch.Tensor]:
    """ONE forward pass, stopped after the deepest block any hook needs → {hook: [pos, d]}."""
    tokens = torch.tensor([ids], device=lm.model.cfg.device)
    stop = stop_layer(hook_names)
    _, cache = lm.model.run_with_cache(
        tokens,
        names_filter=lambda name: name in hook_names,
        stop_at_layer=stop if stop and stop <= lm.n_layers else None,
    )
    return {h: cache[h][0] for h in hook_names}


def _summary(values: list[float]) -> dict:
    if not values:
        return {"values": [], "maxValue": 0.0, "maxValueIndex": 0, "minValue": 0.0}
    max_i = max(range(len(values)), key=values.__getitem__)
    return {"values": values, "maxValue": values[max_i], "maxValueIndex": max_i, "minValue": min(values)}


def _sae_feature_acts(sae, acts: torch.Tensor) -> torch.Tensor:
    return sae_encode(sae, acts)


def feature_values(lm: LoadedModel, *, text: str, sae=None, index: int | None = None, vector=None, hook: str = ""):
    """One feature (SAE + index, or vector + hook) on one text → Neuronpedia's activation/single result."""
    toks = tokenize(lm, text)
    if sae is not None:
        hook = sae_hook_name(sae)
        acts = hook_activations(lm, toks.ids, {hook})[hook]
        values = _sae_feature_acts(sae, acts)[:, index]
        for pos, special in enumerate(toks.is_special):
            if special and toks.ids[pos] == lm.tokenizer.bos_token_id:
                values[pos] = 0.0
        start = 1 if toks.has_bos else 0
    else:
        acts = hook_activations(lm, toks.ids, {hook})[hook]
        values = acts.float() @ torch.tensor(vector, dtype=torch.float32, device=acts.device)
        start = 0
    return {
        "activation": _summary(values[start:].tolist()),
        "tokens": toks.strings[start:],
        "tokensIsSpecial": toks.is_special[start:],
    }


def source_active_features(lm: LoadedModel, *, sae, texts: list[str]) -> list[dict]:
    """Every non-zero feature of one SAE per text: {featureIdx: [[tokenIdx, value], ...]} (BOS dropped)."""
    hook = sae_hook_name(sae)
    results = []
    for text in texts:
        toks = tokenize(lm, text)
        start = 1 if toks.has_bos else 0
        acts = _sae_feature_acts(sae, hook_activations(lm, toks.ids, {hook})[hook])[start:]
        active: dict[str, list] = {}
        pos, idx = torch.nonzero(acts, as_tuple=True)
        for p, i, v in zip(pos.tolist(), idx.tolist(), acts[pos, idx].tolist(), strict=True):
            active.setdefault(str(i), []).append([p, v])
        results.append(
            {"tokens": toks.strings[start:], "tokensIsSpecial": toks.is_special[start:], "activeFeatures": active}
        )
    return results


def search_all(
    lm: LoadedModel,
    *,
    saes: dict[str, object],
    text: str,
    sort_indexes: list[int],
    ignore_bos: bool,
    num_results: int,
    exclude: dict[str, list[int]] | None = None,
) -> dict:
    """Top features over several SAEs for one text: one forward to the deepest hook, every SAE encoded from it.

    Ranking key: max over tokens, or the sum at `sort_indexes` (token positions, BOS included as 0).
    `exclude` names feature indexes per source that must not be returned (the density filter).
    """
    toks = tokenize(lm, text)
    hooks = {name: sae_hook_name(sae) for name, sae in saes.items()}
    cache = hook_activations(lm, toks.ids, set(hooks.values()))
    n = len(toks.ids)
    sort_indexes = [i for i in sort_indexes if 0 <= i < n]
    candidates = []
    counts = {}
    for name, sae in saes.items():
        acts = _sae_feature_acts(sae, cache[hooks[name]])  # [pos, d_sae]
        if ignore_bos and toks.has_bos:
            acts[0] = 0.0
        counts[name] = int((acts > 0).any(dim=0).sum())
        score = acts[sort_indexes].sum(dim=0) if sort_indexes else acts.max(dim=0).values
        if exclude and exclude.get(name):
            score[torch.tensor(exclude[name], dtype=torch.long, device=score.device)] = float("-inf")
        k = min(num_results, score.shape[0])
        top = torch.topk(score, k)
        for value, idx in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            if value > 0:
                candidates.append((value, name, idx, acts[:, idx]))
    candidates.sort(key=lambda c: -c[0])
    activations = []
    for value, name, idx, column in candidates[:num_results]:
        row = _summary(column.tolist())
        row.update(source=name, index=idx, sumValues=value if sort_indexes else float(column.sum()))
        activations.append(row)
    return {"tokens": toks.strings, "tokensIsSpecial": toks.is_special, "activations": activations, "counts": counts}


def topk_by_token(
    lm: LoadedModel, *, sae, text: str, top_k: int, ignore_bos: bool, exclude: list[int] | None = None
) -> dict:
    toks = tokenize(lm, text)
    hook = sae_hook_name(sae)
    acts = _sae_feature_acts(sae, hook_activations(lm, toks.ids, {hook})[hook])
    if exclude:
        acts[:, torch.tensor(exclude, dtype=torch.long, device=acts.device)] = 0.0
    k = min(top_k, acts.shape[1])
    top = torch.topk(acts, k, dim=1)
    results = []
    for pos, (token, special) in enumerate(zip(toks.strings, toks.is_special, strict=True)):
        if ignore_bos and special:
            continue
        feats = [
            {"featureIndex": i, "activationValue": v}
            for v, i in zip(top.values[pos].tolist(), top.indices[pos].tolist(), strict=True)
            if v > 0
        ]
        results.append({"position": pos, "token": token, "isSpecial": special, "topFeatures": feats})
    return {"tokens": toks.strings, "results": results}


def decoder_cossim(*, query: torch.Tensor | list[float], target_sae, num_results: int) -> list[dict]:
    """Cosine of a query direction against every decoder row of target_sae (fp32, NaN → −inf)."""
    q = torch.as_tensor(query, dtype=torch.float32).flatten()
    w = target_sae.W_dec.detach().float()
    if q.shape[0] != w.shape[1]:
        raise ValueError(f"Dimension mismatch: query has {q.shape[0]}, target decoder rows have {w.shape[1]}")
    cos = torch.nn.functional.cosine_similarity(w, q.to(w.device)[None, :], dim=1)
    cos = torch.nan_to_num(cos, nan=float("-inf"))
    top = torch.topk(cos, min(num_results, cos.shape[0]))
    return [{"index": i, "cosineSimilarity": v} for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]


def feature_direction(sae, index: int) -> list[float]:
    return decoder_rows(sae, [index])[0].tolist()
