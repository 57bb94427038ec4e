"""Toy models and interventions (seed 003): a small TransformerLens model trained on cyclic symbol sequences.

A sequence is BOS followed by the cycle from a random phase: cycle[i] = symbol[i mod N] for i < P
(`--symbols N --period P`; N = P gives "A B C D A B C D ..."; N < P repeats symbols inside the period, so the
model must track the cycle position, not just the current symbol). The tokenizer is a real Hugging Face
tokenizer (WordLevel over `<bos> <unk> A B ...`, whitespace-separated), saved next to the weights, so a worker
loads the model with `{"kind": "toy-cyclic", "name": <dir>}` (models.py) and every runtime path (tokenize,
dashboards, SAE training) works on it like on a language model. The intervention task body is worker.py's
`run_intervene`.

Interventions act on one SAE feature at chosen positions, keeping the SAE's error term: at each position,
x ← x + decode(z') − decode(z), where z = encode(x) and z' is z with the feature set to `value` (clamp) or 0
(ablate). Positions count the BOS as 0.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from inference.runtime.models import LoadedModel

BOS, UNK = "<bos>", "<unk>"
N_SPECIAL = 2  # token id of symbol s is s + N_SPECIAL


@dataclass
class ToyParams:
    symbols: int = 4
    period: int = 4
    n_layers: int = 1
    d_model: int = 32
    n_heads: int = 2
    d_mlp: int = 64
    n_ctx: int = 24
    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self):
        if not 2 <= self.symbols <= 64 or not 2 <= self.period <= 64:
            raise ValueError("symbols and period must be between 2 and 64")
        if self.n_ctx < 2 * self.period + 2:
            raise ValueError(f"n_ctx ({self.n_ctx}) must hold two periods plus BOS ({2 * self.period + 2})")


def symbol_names(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)] if n <= 26 else [f"S{i}" for i in range(n)]


def cycle_of(symbols: int, period: int) -> list[int]:
    return [i % symbols for i in range(period)]


@dataclass
class Toy:
    """What the intervention and hallucination code needs to know about a trained toy (toy.json)."""

    symbols: int
    period: int
    names: list[str]

    @property
    def cycle(self) -> list[int]:
        return cycle_of(self.symbols, self.period)

    def token(self, symbol: int) -> int:
        return symbol + N_SPECIAL

    @classmethod
    def read(cls, directory: str | Path) -> Toy:
        data = json.loads((Path(directory) / "toy.json").read_text())
        return cls(symbols=data["symbols"], period=data["period"], names=data["names"])


def sequences(toy: Toy, n: int, length: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, length] token ids (BOS + cycle from a random phase) and [n, length] cycle positions (-1 at BOS)."""
    phase = torch.randint(0, toy.period, (n, 1), generator=gen)
    pos = (phase + torch.arange(length - 1)) % toy.period
    cyc = torch.tensor(toy.cycle)
    toks = torch.cat([torch.zeros(n, 1, dtype=torch.long), cyc[pos] + N_SPECIAL], dim=1)
    return toks, torch.cat([torch.full((n, 1), -1), pos], dim=1)


def _tokenizer_save(names: list[str], directory: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {BOS: 0, UNK: 1, **{s: i + N_SPECIAL for i, s in enumerate(names)}}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=BOS, unk_token=UNK)
    tok.save_pretrained(str(directory))


def _config(p: ToyParams, d_vocab: int) -> HookedTransformerConfig:
    return HookedTransformerConfig(
        n_layers=p.n_layers,
        d_model=p.d_model,
        n_heads=p.n_heads,
        d_head=p.d_model // p.n_heads,
        d_mlp=p.d_mlp,
        n_ctx=p.n_ctx,
        d_vocab=d_vocab,
        act_fn="relu",
        normalization_type="LN",
        seed=p.seed,
        default_prepend_bos=True,
    )


def toy_train(out_dir: str | Path, params: ToyParams, *, progress=None) -> dict:
    """Train on fresh random-phase sequences (next-token cross-entropy) and save weights, config, tokenizer."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    toy = Toy(symbols=params.symbols, period=params.period, names=symbol_names(params.symbols))
    torch.manual_seed(params.seed)
    cfg = _config(params, d_vocab=params.symbols + N_SPECIAL)
    model = HookedTransformer(cfg, move_to_device=False)
    opt = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(params.seed)
    loss_value = math.nan
    with torch.enable_grad():
        model.train()
        for step in range(params.steps):
            toks, _ = sequences(toy, params.batch_size, params.n_ctx, gen)
            loss = model(toks, return_type="loss")
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_value = float(loss.detach())
            if progress and (step + 1) % 25 == 0:
                progress(step + 1, params.steps, loss_value)
    model.eval()
    torch.save(model.state_dict(), out / "model.pt")
    (out / "tl_config.json").write_text(json.dumps(cfg.to_dict(), default=str))
    (out / "toy.json").write_text(json.dumps({**asdict(toy), "params": asdict(params)}))
    _tokenizer_save(toy.names, out)
    test_toks, _ = sequences(toy, 256, params.n_ctx, torch.Generator().manual_seed(params.seed + 1))
    with torch.no_grad():
        pred = model(test_toks).argmax(-1)
    determined = slice(params.period, params.n_ctx - 1)  # from here the past fixes the next symbol
    acc = (pred[:, determined] == test_toks[:, determined.start + 1 :]).float().mean()
    return {
        "final_loss": round(loss_value, 5),
        "accuracy": round(float(acc), 5),
        "steps": params.steps,
        "symbols": params.symbols,
        "period": params.period,
        "d_model": params.d_model,
        "n_layers": params.n_layers,
    }


def toy_contexts(toy: Toy, *, n: int, context_size: int, seed: int = 0):
    """Random-phase sequences as corpus Contexts, for SAE training and dashboards (one 'document' each)."""
    from inference.runtime.corpus import Contexts

    toks, _ = sequences(toy, n, context_size, torch.Generator().manual_seed(seed))
    doc_index = torch.arange(n, dtype=torch.int32).unsqueeze(1).expand(n, context_size).contiguous()
    return Contexts(tokens=toks, doc_index=doc_index, doc_ids=[f"cyclic#{i}" for i in range(n)], name="cyclic")


# ---- features vs cycle position -----------------------------------------------------------------------------


def position_correlations(lm: LoadedModel, sae, toy: Toy, *, n: int = 128, seed: int = 7) -> torch.Tensor:
    """Pearson correlation of every feature with the indicator "cycle position == j": [d_sae, period].

    The position of a token is where its symbol sits in the cycle (BOS excluded)."""
    from inference.runtime.dashboards import hook_acts

    toks, pos = sequences(toy, n, lm.model.cfg.n_ctx, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        z = sae.encode(hook_acts(lm, toks, sae.cfg.metadata.hook_name).to(sae.dtype)).float()
    keep = pos >= 0
    z, pos = z[keep], pos[keep]
    onehot = torch.nn.functional.one_hot(pos, toy.period).float()
    zc, oc = z - z.mean(0), onehot - onehot.mean(0)
    denom = zc.norm(dim=0).unsqueeze(1) * oc.norm(dim=0).unsqueeze(0)
    return (zc.T @ oc) / denom.clamp_min(1e-12)


def position_features(lm: LoadedModel, sae, toy: Toy) -> list[dict]:
    """For each cycle position, the feature most correlated with it."""
    corr = position_correlations(lm, sae, toy)
    best = corr.argmax(dim=0)
    return [
        {
            "position": j,
            "symbol": toy.names[toy.cycle[j]],
            "index": int(best[j]),
            "corr": round(float(corr[best[j], j]), 4),
        }
        for j in range(toy.period)
    ]


# ---- interventions ------------------------------------------------------------------------------------------


def _edit_hook(sae, index: int, positions: list[int] | None, mode: str, value: float):
    target = 0.0 if mode == "ablate" else float(value)

    def hook(act, hook):  # noqa: ARG001
        x = act.to(sae.dtype)
        idx = list(range(x.shape[1])) if positions is None else [p for p in positions if p < x.shape[1]]
        if not idx:
            return act
        sel = x[:, idx]
        z = sae.encode(sel)
        z2 = z.clone()
        z2[..., index] = target
        act = act.clone()
        act[:, idx] = (sel + sae.decode(z2) - sae.decode(z)).to(act.dtype)
        return act

    return hook


def logits_with(
    lm: LoadedModel,
    sae,
    ids: torch.Tensor,
    *,
    index: int | None = None,
    positions=None,
    mode: str = "clamp",
    value: float = 0.0,
) -> torch.Tensor:
    """[B, T, V] logits, with the feature edited at `positions` (None = every position) when index is given."""
    if index is None:
        return lm.model(ids)
    hook = sae.cfg.metadata.hook_name
    return lm.model.run_with_hooks(ids, fwd_hooks=[(hook, _edit_hook(sae, index, positions, mode, value))])


def feature_values(lm: LoadedModel, sae, ids: torch.Tensor, index: int) -> torch.Tensor:
    from inference.runtime.dashboards import hook_acts

    return sae.encode(hook_acts(lm, ids, sae.cfg.metadata.hook_name).to(sae.dtype))[..., index].float()


def intervene(
    lm: LoadedModel, sae, ids: list[int], *, index: int, positions: list[int], mode: str, value: float, top_k: int = 5
) -> list[dict]:
    """Per position: token, the feature's value, top-k next-token predictions before and after the edit."""
    t = torch.tensor([ids])
    with torch.no_grad():
        before = logits_with(lm, sae, t).softmax(-1)[0]
        after = logits_with(lm, sae, t, index=index, positions=positions, mode=mode, value=value).softmax(-1)[0]
        acts = feature_values(lm, sae, t, index)[0]
    k = min(top_k, before.shape[-1])
    rows = []
    strings = [lm.tokenizer.decode([i]) for i in range(before.shape[-1])]
    for p, tok in enumerate(ids):
        bv, bi = before[p].topk(k)
        av, ai = after[p].topk(k)
        rows.append(
            {
                "position": p,
                "token": strings[tok],
                "featureValue": round(float(acts[p]), 5),
                "intervened": p in positions,
                "before": [{"token": strings[i], "prob": round(float(v), 5)} for v, i in zip(bv, bi, strict=True)],
                "after": [{"token": strings[i], "prob": round(float(v), 5)} for v, i in zip(av, ai, strict=True)],
                "changed": int(bi[0]) != int(ai[0]),
            }
        )
    return rows


def hallucination_check(
    lm: LoadedModel,
    sae,
    toy: Toy,
    *,
    index: int,
    mode: str,
    value: float,
    n_prompts: int = 32,
    prompt_len: int | None = None,
    gen_len: int | None = None,
    seed: int = 11,
) -> dict:
    """How often greedy continuations leave the cycle, without and with the edit.

    Prompts are random-phase cycle prefixes (BOS + `prompt_len` symbols, default two periods); the model
    continues greedily for `gen_len` tokens (default one period). With the intervention, the feature is edited
    at every position from the last prompt token on (each position whose prediction is a continuation token).
    A generated token is wrong when it differs from the true continuation of the prompt's cycle.
    """
    n_ctx = lm.model.cfg.n_ctx
    prompt_len = prompt_len or min(2 * toy.period, n_ctx - 2)
    gen_len = max(1, min(gen_len or toy.period, n_ctx - 1 - prompt_len))
    toks, _ = sequences(toy, n_prompts, 1 + prompt_len + gen_len, torch.Generator().manual_seed(seed))
    truth = toks[:, 1 + prompt_len :]
    out = {}
    for name, edit in (("baseline", None), ("intervened", index)):
        seq = toks[:, : 1 + prompt_len].clone()
        with torch.no_grad():
            for _ in range(gen_len):
                positions = list(range(prompt_len, seq.shape[1]))
                logits = logits_with(lm, sae, seq, index=edit, positions=positions, mode=mode, value=value)
                seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        wrong = seq[:, 1 + prompt_len :] != truth
        out[name] = {
            "wrongTokens": int(wrong.sum()),
            "tokens": int(wrong.numel()),
            "tokenErrorRate": round(float(wrong.float().mean()), 5),
            "sequencesWithError": int(wrong.any(1).sum()),
            "sequences": n_prompts,
            "sequenceErrorRate": round(float(wrong.any(1).float().mean()), 5),
        }
    out["settings"] = {
        "promptLength": prompt_len,
        "generatedLength": gen_len,
        "mode": mode,
        "value": value,
        "index": index,
    }
    return out
