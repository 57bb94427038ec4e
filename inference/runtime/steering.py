"""Steered generation with our own KV-cached decoding loop.

TransformerLens `generate` runs at ~0.17× Hugging Face `generate` on CPU, so decoding runs on the HF model
(same weights, `LoadedModel.hf_model`) with a forward hook on the decoder layer that adds the steering
vectors; models without an HF twin (tiny, tlens) or hooks other than the residual stream use
TransformerLens with its key-value cache and a hook on the named hook point. DEFAULT and STEERED rows
decode together as one batch; the hooks touch only the STEERED rows, and each row samples with its own
seeded generator, so a row's output does not depend on which other rows run beside it.

Methods (coefficient c = strength × strength_multiplier, v the feature's decoder row, u = v/|v|):
- SIMPLE_ADDITIVE: h + c·v
- ORTHOGONAL_DECOMP: (I − uuᵀ)h + c·(uuᵀ)h — the part of h orthogonal to v is unchanged
- PROJECTION_CAP: h − max(0, h·u − c)·u — the projection on u is capped at c
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from inference.runtime.models import LoadedModel

METHODS = ("SIMPLE_ADDITIVE", "ORTHOGONAL_DECOMP", "PROJECTION_CAP")
HOOK_RE = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


@dataclass
class SteerVector:
    hook: str
    vector: list[float]
    coeff: float


@dataclass
class SteerParams:
    n_tokens: int = 32
    temperature: float = 0.5
    freq_penalty: float = 0.0
    seed: int = 16
    method: str = "SIMPLE_ADDITIVE"
    steer_special_tokens: bool = True
    normalize: bool = False
    n_logprobs: int = 5
    stop_at_eos: bool = True


def apply_steering(h: torch.Tensor, vecs: list[tuple[torch.Tensor, float]], method: str, mask: torch.Tensor):
    """h [B, T, d]; mask [B, T, 1] of 0/1 (which rows and positions are steered)."""
    out = h
    for v, c in vecs:
        v = v.to(h.dtype)
        if method == "SIMPLE_ADDITIVE":
            out = out + mask * (c * v)
            continue
        u = v / v.norm().clamp_min(1e-12)
        p = out @ u  # [B, T]
        if method == "ORTHOGONAL_DECOMP":
            delta = ((c - 1.0) * p)[..., None] * u
        elif method == "PROJECTION_CAP":
            delta = -(p - c).clamp_min(0.0)[..., None] * u
        else:
            raise ValueError(f"Unknown steer method {method!r}")
        out = out + mask * delta
    return out


class _Hooks:
    """Steering hooks with a mutable mask: [B, T, 1] during the prompt pass, [B, 1, 1] while decoding."""

    def __init__(self, vectors: list[SteerVector], params: SteerParams, device):
        self.method = params.method
        self.by_hook: dict[str, list[tuple[torch.Tensor, float]]] = {}
        for sv in vectors:
            v = torch.tensor(sv.vector, dtype=torch.float32, device=device)
            if params.normalize:
                v = v / v.norm().clamp_min(1e-12)
            self.by_hook.setdefault(sv.hook, []).append((v, float(sv.coeff)))
        self.mask: torch.Tensor | None = None

    def apply(self, hook: str, h: torch.Tensor) -> torch.Tensor:
        return apply_steering(h, self.by_hook[hook], self.method, self.mask.to(h.dtype))


def _uses_hf(lm: LoadedModel, vectors: list[SteerVector]) -> bool:
    return lm.hf_model is not None and all(HOOK_RE.match(v.hook) for v in vectors)


class _HfStepper:
    def __init__(self, lm: LoadedModel, hooks: _Hooks | None):
        from transformers import DynamicCache

        self.model = lm.hf_model
        self.cache = DynamicCache(config=self.model.config)
        self.handles = []
        layers = self.model.model.layers
        for hook in hooks.by_hook if hooks else []:
            layer, kind = HOOK_RE.match(hook).groups()
            layer = int(layer)
            if kind == "post":
                self.handles.append(layers[layer].register_forward_hook(lambda m, a, out, h=hook: hooks.apply(h, out)))
            else:
                self.handles.append(
                    layers[layer].register_forward_pre_hook(lambda m, a, h=hook: (hooks.apply(h, a[0]), *a[1:]))
                )

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :]

    def close(self):
        for handle in self.handles:
            handle.remove()


class _TlStepper:
    def __init__(self, lm: LoadedModel, hooks: _Hooks | None, batch: int):
        from transformer_lens import TransformerLensKeyValueCache

        self.model = lm.model
        self.cache = TransformerLensKeyValueCache.init_cache(self.model.cfg, self.model.cfg.device, batch)
        self.fwd_hooks = (
            [(name, lambda act, hook, n=name: hooks.apply(n, act)) for name in hooks.by_hook] if hooks else []
        )

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        with self.model.hooks(fwd_hooks=self.fwd_hooks):
            logits = self.model(ids, past_kv_cache=self.cache)
        return logits[:, -1, :]

    def close(self):
        pass


def _logprob_entry(tok, logprobs: torch.Tensor, chosen: int, n: int) -> dict:
    entry = {"token": tok.decode([chosen]), "logprob": float(logprobs[chosen])}
    if n:
        top = torch.topk(logprobs, n)
        entry["topLogprobs"] = [
            {"token": tok.decode([i]), "logprob": float(v)}
            for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]
    return entry


def generate(
    lm: LoadedModel,
    *,
    prompt_ids: list[int],
    types: list[str],
    vectors: list[SteerVector],
    params: SteerParams,
    prompt_special: list[bool] | None = None,
    on_token: Callable[[dict[str, dict]], None] | None = None,
) -> dict[str, dict]:
    """Generate for each type in `types` (DEFAULT and/or STEERED) → {type: {ids, text, logprobs}}.

    Log-probabilities are the model's own (before temperature and frequency penalty); the frequency
    penalty subtracts freq_penalty × (times the token was already generated) from its logit.
    """
    if params.method not in METHODS:
        raise ValueError(f"Unknown steer method {params.method!r}")
    torch.set_grad_enabled(False)
    tok = lm.tokenizer
    batch = len(types)
    device = lm.model.cfg.device if lm.hf_model is None else lm.hf_model.device
    steered_rows = torch.tensor([t == "STEERED" for t in types], dtype=torch.float32, device=device)
    need_hooks = bool(vectors) and "STEERED" in types
    hooks = _Hooks(vectors, params, device) if need_hooks else None
    stepper = _HfStepper(lm, hooks) if _uses_hf(lm, vectors) else _TlStepper(lm, hooks, batch)
    try:
        ids = torch.tensor([prompt_ids] * batch, dtype=torch.long, device=device)
        if hooks:
            pos_mask = torch.ones(len(prompt_ids), device=device)
            if not params.steer_special_tokens and prompt_special:
                pos_mask = torch.tensor([0.0 if s else 1.0 for s in prompt_special], device=device)
            hooks.mask = (steered_rows[:, None] * pos_mask[None, :])[..., None]
        logits = stepper(ids)
        if hooks:
            hooks.mask = steered_rows[:, None, None]
        gens = [torch.Generator(device="cpu").manual_seed(int(params.seed)) for _ in types]
        counts = torch.zeros(batch, logits.shape[-1], device=device)
        out_ids: list[list[int]] = [[] for _ in types]
        out_lp: list[list[dict]] = [[] for _ in types]
        done = [False] * batch
        eos = tok.eos_token_id
        for _ in range(params.n_tokens):
            logits = logits.float()
            next_ids = []
            for b in range(batch):
                row = logits[b]
                if done[b]:
                    next_ids.append(eos if eos is not None else 0)
                    continue
                logprobs = torch.log_softmax(row, dim=-1)
                if params.freq_penalty:
                    row = row - params.freq_penalty * counts[b]
                if params.temperature <= 0:
                    chosen = int(torch.argmax(row))
                else:
                    probs = torch.softmax(row / params.temperature, dim=-1).cpu()
                    chosen = int(torch.multinomial(probs, 1, generator=gens[b]))
                counts[b, chosen] += 1
                out_ids[b].append(chosen)
                out_lp[b].append(_logprob_entry(tok, logprobs, chosen, params.n_logprobs))
                if params.stop_at_eos and chosen == eos:
                    done[b] = True
                next_ids.append(chosen)
            if on_token:
                on_token(_results(tok, types, out_ids, out_lp))
            if all(done):
                break
            logits = stepper(torch.tensor(next_ids, dtype=torch.long, device=device)[:, None])
    finally:
        stepper.close()
    return _results(tok, types, out_ids, out_lp)


def _results(tok, types, out_ids, out_lp) -> dict[str, dict]:
    return {
        t: {"ids": list(out_ids[b]), "text": tok.decode(out_ids[b]), "logprobs": list(out_lp[b])}
        for b, t in enumerate(types)
    }


def hf_generate_baseline(lm: LoadedModel, *, prompt_ids: list[int], n_tokens: int) -> list[int]:
    """Plain HF `generate` (greedy, no EOS stop) — the benchmark baseline."""
    ids = torch.tensor([prompt_ids], device=lm.hf_model.device)
    out = lm.hf_model.generate(
        ids, max_new_tokens=n_tokens, min_new_tokens=n_tokens, do_sample=False, attention_mask=torch.ones_like(ids)
    )
    return out[0, len(prompt_ids) :].tolist()


class NoChatTemplate(ValueError):
    pass


def chat_prompt(lm: LoadedModel, messages: list[dict]) -> tuple[str, list[int], list[bool]]:
    """The chat template applied with a generation prompt → (text, token ids, is-special per token)."""
    if not lm.has_chat_template:
        raise NoChatTemplate("This model's tokenizer has no chat template; use /api/steer for completions")
    tok = lm.tokenizer
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    special = set(tok.all_special_ids)
    return text, ids, [i in special for i in ids]
