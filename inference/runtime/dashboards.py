"""Feature dashboards for every feature of an SAE, batched across features, as Neuronpedia v1 records.

Two stages, both checkpointed on disk under a work directory so an interrupted run resumes:

1. Token pass (`token_chunk`): one forward pass to the SAE's hook per batch of contexts serves every feature.
   The SAE codes are dense [tokens, d_sae]; we keep only their nonzero entries (value, feature, token) — an
   SAE is sparse, so this is ~L0 entries per token — and save them per chunk of contexts.
2. Feature records (`feature_records`): all entries, sorted once by (feature, token), give every statistic
   with whole-tensor operations over a batch of features at a time: per-feature max and frac_nonzero,
   50-bin activation histograms (bincount), the top contexts (per-context max via scatter_reduce, then
   torch.topk), equal-width interval samples (random keys sorted within each (feature, interval) group),
   per-token values of each shown context (gathered from the sorted entries), logit-lens tables and
   histograms (W_dec · W_U, no final LayerNorm) and decoder-cosine neighbours.

Definitions follow SAEDashboard (shared/reference/saelens_dashboard_delphi.md §2.2): BOS/EOS/pad positions are
masked; histograms cover nonzero activations; interval edges are linspace(0, max, n+1) and an interval's
"contains" is its share of all positions (the lowest includes the zeros); top activations carry
binMin -1, binMax max, binContains -1.
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from inference.runtime.corpus import Contexts
from inference.runtime.models import LoadedModel


@dataclass
class DashboardParams:
    n_top: int = 20
    n_intervals: int = 5
    interval_samples: int = 5
    n_hist_bins: int = 50
    n_logits: int = 10
    n_cos: int = 10
    n_alignment: int = 3
    window_left: int = 32  # tokens shown before the qualifying token
    window_right: int = 8  # and after it
    batch_contexts: int = 16  # contexts per forward pass
    chunk_contexts: int = 128  # contexts per checkpoint file
    feature_batch: int = 256
    seed: int = 0


def activation_id(model_id: str, source_id: str, index: int, rank: int) -> str:
    """Deterministic, so a re-run upserts the same rows instead of adding new ones (ids are ≤ 64 chars)."""
    digest = hashlib.sha1(f"{model_id}/{source_id}/{index}/{rank}".encode()).hexdigest()[:30]
    return f"gen-{digest}"


def vocab_strings(tokenizer) -> list[str]:
    """Every token id as display text (byte-BPE pieces decoded, so `Ġthe` shows as ` the`)."""
    return [tokenizer.decode([i]) for i in range(len(tokenizer))]


def masked_token_ids(tokenizer) -> list[int]:
    ids = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    return sorted(i for i in ids if i is not None)


def _stop_layer(hook: str) -> int | None:
    parts = hook.split(".")
    if parts[0] == "blocks" and parts[1].isdigit():
        return int(parts[1]) + 1
    return None


def hook_acts(lm: LoadedModel, tokens: torch.Tensor, hook: str) -> torch.Tensor:
    """The model's activations at `hook` for [B, T] tokens, stopping the forward pass right after it."""
    store = {}

    def save(act, hook):  # noqa: ARG001 (TransformerLens passes the hook point)
        store["x"] = act

    lm.model.run_with_hooks(tokens, stop_at_layer=_stop_layer(hook), fwd_hooks=[(hook, save)])
    return store["x"]


def _sparse(acts: torch.Tensor, masked: torch.Tensor, offset: int) -> tuple[torch.Tensor, ...]:
    """The nonzero entries (value, feature, global token) of [tokens, d_sae] codes, masked positions zeroed."""
    acts[masked.to(acts.device)] = 0
    row, feat = (acts > 0).nonzero(as_tuple=True)
    return acts[row, feat].float().cpu(), feat.to(torch.int32).cpu(), (row + offset).to(torch.int64).cpu()


def token_chunk(lm: LoadedModel, sae, contexts: Contexts, start: int, end: int, params: DashboardParams) -> dict:
    """Sparse SAE codes of contexts [start, end): {'value','feature','token'} with token = global position."""
    return token_chunks_many(lm, [sae], contexts, start, end, params)[0]


def token_chunks_many(
    lm: LoadedModel, saes: list, contexts: Contexts, start: int, end: int, params: DashboardParams
) -> list[dict]:
    """`token_chunk` for several SAEs (or a transcoder set's layers) from one forward pass per batch: the
    pass stops after the deepest of their hooks, so a set of N layers costs one forward, not N."""
    hooks = [sae.cfg.metadata.hook_name for sae in saes]
    stops = [_stop_layer(h) for h in hooks]
    stop = None if None in stops else max(stops)
    ctx = contexts.tokens.shape[1]
    mask_ids = torch.tensor(masked_token_ids(lm.tokenizer), dtype=torch.long)
    parts: list[list[tuple]] = [[] for _ in saes]
    n_masked = 0
    store: dict[str, torch.Tensor] = {}

    def save(act, hook):
        store[hook.name] = act

    with torch.no_grad():
        for b in range(start, end, params.batch_contexts):
            toks = contexts.tokens[b : min(end, b + params.batch_contexts)].to(lm.spec.device)
            lm.model.run_with_hooks(toks, stop_at_layer=stop, fwd_hooks=[(h, save) for h in set(hooks)])
            masked = torch.isin(toks.flatten().cpu(), mask_ids)
            n_masked += int(masked.sum())
            for i, (sae, hook) in enumerate(zip(saes, hooks, strict=True)):
                parts[i].append(_sparse(sae.encode(store[hook]).flatten(0, 1), masked, b * ctx))
    return [
        {
            "value": torch.cat([v for v, _, _ in chunks]),
            "feature": torch.cat([f for _, f, _ in chunks]),
            "token": torch.cat([t for _, _, t in chunks]),
            "n_positions": (end - start) * ctx,
            "n_masked": n_masked,
        }
        for chunks in parts
    ]


def chunk_path(work_dir: Path, i: int) -> Path:
    return Path(work_dir) / "chunks" / f"chunk-{i:05d}.pt"


def _chunk_save(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(data, tmp)
    tmp.rename(path)  # a chunk file is complete or absent


def token_pass_many(
    lm: LoadedModel, saes: list, contexts: Contexts, work_dirs: list[Path], *, params=None, progress=None
):
    """Fill the token-pass checkpoints of several dashboards work directories with shared forward passes, so
    each one's `dashboards_generate` then only writes feature records. Chunks every directory already holds are
    skipped (resumable); `progress(done, total, message)` after each chunk."""
    params = params or DashboardParams()
    starts = list(range(0, contexts.tokens.shape[0], params.chunk_contexts))
    for i, start in enumerate(starts):
        todo = [j for j, w in enumerate(work_dirs) if not chunk_path(w, i).exists()]
        if todo:
            end = min(contexts.tokens.shape[0], start + params.chunk_contexts)
            chunks = token_chunks_many(lm, [saes[j] for j in todo], contexts, start, end, params)
            for j, data in zip(todo, chunks, strict=True):
                _chunk_save(chunk_path(work_dirs[j], i), data)
        if progress:
            progress(i + 1, len(starts), f"token pass of {len(saes)} sources: {i + 1}/{len(starts)} chunks")


@dataclass
class SparseCodes:
    """All nonzero codes, sorted by key = feature * n_tokens + token."""

    value: torch.Tensor
    feature: torch.Tensor
    token: torch.Tensor
    key: torch.Tensor
    n_tokens: int
    n_unmasked: int
    d_sae: int

    @classmethod
    def from_chunks(cls, chunks: list[dict], *, n_tokens: int, d_sae: int) -> SparseCodes:
        value = torch.cat([c["value"] for c in chunks])
        feature = torch.cat([c["feature"] for c in chunks]).to(torch.int64)
        token = torch.cat([c["token"] for c in chunks])
        key = feature * n_tokens + token
        key, order = torch.sort(key)
        n_unmasked = sum(c["n_positions"] - c["n_masked"] for c in chunks)
        return cls(value[order], feature[order], token[order], key, n_tokens, n_unmasked, d_sae)

    def feature_range(self, f0: int, f1: int) -> tuple[int, int]:
        bounds = torch.searchsorted(self.key, torch.tensor([f0 * self.n_tokens, f1 * self.n_tokens]))
        return int(bounds[0]), int(bounds[1])


def _unembed_directions(lm: LoadedModel, sae, w_dec: torch.Tensor) -> torch.Tensor:
    """Each feature's direction in the residual stream (through W_out / W_O for mlp.hook_post / hook_z SAEs)."""
    hook = sae.cfg.metadata.hook_name or ""
    layer = (_stop_layer(hook) or 1) - 1
    if hook.endswith("mlp.hook_post") or hook.endswith("mlp.hook_pre"):
        return w_dec @ lm.model.blocks[layer].mlp.W_out
    if hook.endswith("attn.hook_z"):
        w_o = lm.model.blocks[layer].attn.W_O  # [n_heads, d_head, d_model]
        return w_dec @ w_o.reshape(-1, w_o.shape[-1])
    return w_dec


def _entry_random(feature: torch.Tensor, token: torch.Tensor, seed: int) -> torch.Tensor:
    """A uniform [0, 1) value per (feature, token), a hash of both: interval samples then do not depend on how
    features are batched, so a resumed or re-batched run picks the same contexts."""
    mask = 0xFFFFFFFF
    h = (feature * 0x9E3779B1 + token * 0x85EBCA77 + seed) & mask
    h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & mask
    h = ((h ^ (h >> 12)) * 0x297A2D39) & mask
    h = h ^ (h >> 15)
    return h.double() / 2**32


def _window(q: int, ctx: int, params: DashboardParams) -> tuple[int, int]:
    lo = max(1, q - params.window_left)  # position 0 is the BOS
    return lo, min(ctx, q + params.window_right + 1)


def _logit_lens(directions: torch.Tensor, w_u: torch.Tensor, params: DashboardParams):
    """Every feature's logits over the vocabulary, with its top and bottom `n_logits` exactly in float32.

    The [features, vocab] product is most of the per-feature cost (256 × 576 × 49,152 per batch for SmolLM2), so
    on CPUs with native bfloat16 it runs in bfloat16 (2.5× faster), which is plenty for the 50-bin histogram;
    the shown top/bottom tokens are chosen among 4× as many bfloat16 candidates and rescored in float32.
    Returns (logits, (top values, top ids), (-bottom values, bottom ids)).
    """
    n = min(params.n_logits, w_u.shape[1])
    if w_u.device.type != "cpu" or not _fast_bf16():
        logits = directions @ w_u.detach().float()
        return logits, torch.topk(logits, n, dim=1), torch.topk(-logits, n, dim=1)
    w_rows, w_bf16 = _unembed_copies(w_u)
    logits = directions.to(torch.bfloat16) @ w_bf16
    m = min(4 * n, w_u.shape[1])
    top = torch.topk(logits, m, dim=1).indices
    bottom = torch.topk(logits, m, dim=1, largest=False).indices
    pos_v, j = torch.topk(torch.einsum("fd,fmd->fm", directions, w_rows[top]), n, dim=1)
    neg_v, k = torch.topk(-torch.einsum("fd,fmd->fm", directions, w_rows[bottom]), n, dim=1)
    return logits, (pos_v, torch.gather(top, 1, j)), (neg_v, torch.gather(bottom, 1, k))


@functools.lru_cache(maxsize=2)
def _unembed_copies(w_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """W_U as contiguous float32 rows per token (for gathering candidates) and in bfloat16, once per model."""
    w = w_u.detach().float()
    return w.T.contiguous(), w.to(torch.bfloat16)


@functools.cache
def _fast_bf16() -> bool:
    """Whether the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); elsewhere bfloat16 is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def feature_records(
    lm: LoadedModel,
    sae,
    contexts: Contexts,
    codes: SparseCodes,
    f0: int,
    f1: int,
    *,
    model_id: str,
    source_id: str,
    params: DashboardParams,
    vocab: list[str],
) -> tuple[list[dict], list[dict]]:
    """v1 feature rows and activation rows for features [f0, f1)."""
    ctx = contexts.tokens.shape[1]
    n_ctx = contexts.tokens.shape[0]
    nf = f1 - f0
    lo, hi = codes.feature_range(f0, f1)
    val, feat, tok, key = codes.value[lo:hi], codes.feature[lo:hi] - f0, codes.token[lo:hi], codes.key[lo:hi]
    total = max(1, codes.n_unmasked)

    counts = torch.bincount(feat, minlength=nf)
    fmax = torch.zeros(nf).scatter_reduce(0, feat, val, reduce="amax", include_self=True)
    safe_max = torch.where(fmax > 0, fmax, torch.ones_like(fmax))

    # activation histograms over nonzero values, 50 equal bins on [0, max]
    nb = params.n_hist_bins
    hbin = torch.clamp((val / safe_max[feat] * nb).long(), max=nb - 1)
    hist = torch.bincount(feat * nb + hbin, minlength=nf * nb).view(nf, nb)

    # top contexts: each context's max per feature, then topk over contexts
    cidx = tok // ctx
    per_ctx = torch.zeros(nf * n_ctx).scatter_reduce(0, feat * n_ctx + cidx, val, reduce="amax", include_self=True)
    k = min(params.n_top, n_ctx)
    top_vals, top_ctx = torch.topk(per_ctx.view(nf, n_ctx), k, dim=1)

    # interval samples: random picks within each (feature, equal-width interval) group
    ni = params.n_intervals
    interval = torch.clamp((val / safe_max[feat] * ni).long(), max=ni - 1)
    group = feat * ni + interval
    order = torch.argsort(group.double() + _entry_random(feat + f0, tok, params.seed))
    group_sorted = group[order]
    group_counts = torch.bincount(group, minlength=nf * ni)
    group_start = torch.cumsum(group_counts, 0) - group_counts
    rank_in_group = torch.arange(len(order)) - group_start[group_sorted]
    pick = order[rank_in_group < params.interval_samples]

    # the (feature, context, qualifying position) of every record we will show
    top_keep = top_vals > 0
    rec_f = torch.cat([torch.arange(nf).unsqueeze(1).expand(nf, k)[top_keep], feat[pick]])
    rec_c = torch.cat([top_ctx[top_keep], cidx[pick]])
    rec_q = torch.cat([torch.full((int(top_keep.sum()),), -1, dtype=torch.long), tok[pick] % ctx])
    rec_interval = torch.cat([torch.full((int(top_keep.sum()),), -1, dtype=torch.long), interval[pick]])

    # per-token values of each record's context, gathered from the (feature, token)-sorted entries
    start_keys = (rec_f + f0) * codes.n_tokens + rec_c * ctx
    a = torch.searchsorted(key, start_keys)
    b = torch.searchsorted(key, start_keys + ctx)
    n_per = b - a
    rec_of = torch.repeat_interleave(torch.arange(len(rec_f)), n_per)
    offs = torch.arange(int(n_per.sum())) - torch.repeat_interleave(torch.cumsum(n_per, 0) - n_per, n_per)
    entry = a[rec_of] + offs
    dense = torch.zeros(len(rec_f), ctx)
    dense[rec_of, tok[entry] % ctx] = val[entry]
    rec_q = torch.where(rec_q < 0, dense.argmax(dim=1), rec_q)
    dense = torch.round(dense, decimals=5)  # once for all records, not per value in Python

    # logit lens and decoder geometry
    w_dec = sae.W_dec.detach().float().cpu()
    w_u = lm.model.W_U
    directions = _unembed_directions(lm, sae, w_dec[f0:f1].to(w_u.device)).float()
    logits, pos, neg = _logit_lens(directions, w_u, params)
    logits, (pos_v, pos_i), (neg_v, neg_i) = logits.cpu(), [t.cpu() for t in pos], [t.cpu() for t in neg]
    w_norm = w_dec / w_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
    sims = w_norm[f0:f1] @ w_norm.T
    sims[torch.arange(nf), torch.arange(f0, f1)] = -2.0  # a feature is not its own neighbour
    cos_v, cos_i = torch.topk(sims, min(params.n_cos, w_dec.shape[0] - 1), dim=1)
    align_v, align_i = torch.topk(w_dec[f0:f1].abs(), min(params.n_alignment, w_dec.shape[1]), dim=1)
    align_signed = torch.gather(w_dec[f0:f1], 1, align_i)
    l1 = w_dec[f0:f1].abs().sum(dim=1, keepdim=True).clamp_min(1e-8)

    # logit histograms for the whole batch at once (one bincount, not a histc per feature); the exact extremes
    # are the rescored top/bottom logits
    lmins, lmaxs = -neg_v[:, 0], pos_v[:, 0]
    scale = nb / (lmaxs - lmins).clamp_min(1e-12)
    lbins = torch.addcmul((-lmins * scale)[:, None], logits.float(), scale[:, None]).to(torch.int32).clamp_(0, nb - 1)
    lbins += (torch.arange(nf, dtype=torch.int32) * nb).unsqueeze(1)
    lhist = torch.bincount(lbins.flatten(), minlength=nf * nb).view(nf, nb)
    del lbins, logits

    hook = sae.cfg.metadata.hook_name or ""
    features = []
    for j in range(nf):
        index = f0 + j
        m = float(fmax[j])
        lmin, lmax = float(lmins[j]), float(lmaxs[j])
        lh = lhist[j]
        lstep = (lmax - lmin) / nb
        features.append(
            {
                "modelId": model_id,
                "layer": source_id,
                "index": index,
                "hookName": hook,
                "maxActApprox": round(m, 5),
                "frac_nonzero": float(counts[j]) / total,
                "freq_hist_data_bar_heights": hist[j].tolist() if m > 0 else [],
                "freq_hist_data_bar_values": [round((i + 0.5) * m / nb, 5) for i in range(nb)] if m > 0 else [],
                "logits_hist_data_bar_heights": [float(h) for h in lh.tolist()],
                "logits_hist_data_bar_values": [round(lmin + (i + 0.5) * lstep, 5) for i in range(nb)],
                "pos_str": [vocab[i] for i in pos_i[j].tolist()],
                "pos_values": [round(v, 5) for v in pos_v[j].tolist()],
                "neg_str": [vocab[i] for i in neg_i[j].tolist()],
                "neg_values": [round(-v, 5) for v in neg_v[j].tolist()],
                "topkCosSimIndices": cos_i[j].tolist(),
                "topkCosSimValues": [round(v, 5) for v in cos_v[j].tolist()],
                "neuron_alignment_indices": align_i[j].tolist(),
                "neuron_alignment_values": [round(v, 5) for v in align_signed[j].tolist()],
                "neuron_alignment_l1": [round(v, 5) for v in (align_v[j] / l1[j]).tolist()],
            }
        )

    # interval "contains" shares (the lowest interval also holds the zeros, as SAEDashboard reports it)
    icounts = torch.bincount(group, minlength=nf * ni).view(nf, ni).double()
    icounts[:, 0] += total - counts.double()
    activations = []
    rank_counter: dict[int, int] = {}
    tokens_all = contexts.tokens
    for r in range(len(rec_f)):
        j = int(rec_f[r])
        c, q, iv = int(rec_c[r]), int(rec_q[r]), int(rec_interval[r])
        w0, w1 = _window(q, ctx, params)
        vals = dense[r, w0:w1].tolist()
        m = float(fmax[j])
        rank = rank_counter.get(j, 0)
        rank_counter[j] = rank + 1
        if iv < 0:
            bin_min, bin_max, bin_contains = -1.0, m, -1.0
        else:
            bin_min, bin_max = m * iv / ni, m * (iv + 1) / ni
            bin_contains = float(icounts[j, iv]) / total
        activations.append(
            {
                "id": activation_id(model_id, source_id, f0 + j, rank),
                "modelId": model_id,
                "layer": source_id,
                "index": f0 + j,
                "tokens": [vocab[t] for t in tokens_all[c, w0:w1].tolist()],
                "values": vals,
                "maxValue": max(vals),
                "minValue": min(vals),
                "maxValueTokenIndex": max(range(len(vals)), key=vals.__getitem__),
                "qualifyingTokenIndex": q - w0,
                "binMin": round(bin_min, 5),
                "binMax": round(bin_max, 5),
                "binContains": bin_contains,
                "dataIndex": c,
                "dataSource": contexts.doc_ids[int(contexts.doc_index[c, q])] if contexts.doc_ids else "",
            }
        )
    return features, activations


def dashboards_generate(
    lm: LoadedModel,
    sae,
    contexts: Contexts,
    work_dir: Path,
    *,
    model_id: str,
    source_id: str,
    write,
    params: DashboardParams | None = None,
    progress=None,
) -> dict:
    """Both stages, resumable: token chunks are files in `work_dir/chunks`, written feature batches are
    marker files in `work_dir/written`. `write(features, activations)` stores one batch (the v1 loader);
    `progress(done, total, message)` is called after each chunk and batch (units: chunks + feature batches).
    """
    params = params or DashboardParams()
    work_dir = Path(work_dir)
    (work_dir / "chunks").mkdir(parents=True, exist_ok=True)
    (work_dir / "written").mkdir(parents=True, exist_ok=True)
    n_ctx, ctx = contexts.tokens.shape
    d_sae = sae.cfg.d_sae
    chunk_starts = list(range(0, n_ctx, params.chunk_contexts))
    batches = list(range(0, d_sae, params.feature_batch))
    total = len(chunk_starts) + len(batches)
    done = 0
    t0 = time.monotonic()
    token_seconds = 0.0
    for i, start in enumerate(chunk_starts):
        path = chunk_path(work_dir, i)
        if not path.exists():
            t = time.monotonic()
            _chunk_save(path, token_chunk(lm, sae, contexts, start, min(n_ctx, start + params.chunk_contexts), params))
            token_seconds += time.monotonic() - t
        done += 1
        if progress:
            progress(done, total, f"token pass: {done}/{len(chunk_starts)} chunks")
    chunks = [torch.load(chunk_path(work_dir, i)) for i in range(len(chunk_starts))]
    codes = SparseCodes.from_chunks(chunks, n_tokens=n_ctx * ctx, d_sae=d_sae)
    del chunks
    vocab = vocab_strings(lm.tokenizer)
    n_features = n_activations = 0
    fired = torch.bincount(codes.feature, minlength=d_sae) > 0
    t1 = time.monotonic()
    for f0 in batches:
        marker = work_dir / "written" / f"batch-{f0:07d}"
        f1 = min(d_sae, f0 + params.feature_batch)
        if not marker.exists():
            feats, acts = feature_records(
                lm, sae, contexts, codes, f0, f1, model_id=model_id, source_id=source_id, params=params, vocab=vocab
            )
            write(feats, acts)
            n_features += len(feats)
            n_activations += len(acts)
            marker.write_text(f"{len(feats)} {len(acts)}\n")
        done += 1
        if progress:
            progress(done, total, f"features: {f1}/{d_sae}")
    return {
        "n_contexts": n_ctx,
        "context_size": ctx,
        "n_tokens": n_ctx * ctx,
        "n_nonzero_codes": int(codes.value.numel()),
        "features_never_active": int((~fired).sum()),
        "features_written": n_features,
        "activations_written": n_activations,
        "token_pass_seconds": round(token_seconds, 2),
        "records_seconds": round(time.monotonic() - t1, 2),
        "total_seconds": round(time.monotonic() - t0, 2),
    }
