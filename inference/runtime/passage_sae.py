"""Sparse memory retrieval (seed 002): SAEs whose "contexts" are whole passages.

Two ways a passage gets a sparse code:
- a **passage SAE**: the passage is embedded with all-MiniLM-L6-v2 (384-d, L2-normalised, `embedder.py`) and an
  SAE trained here on those embeddings (SAELens `SAETrainer` on in-memory activations, reference §1.6 Exp 3)
  encodes it; one passage = one "token" of that SAE;
- a **language-model SAE**: the passage is run through the model to the SAE's hook and the passage's code for
  a feature is its max activation over the passage's tokens (BOS/EOS/pad masked, as dashboards do).

Everything returns plain Python / tensors; the Django side (retrieval/services.py) stores the codes and the
v1 dashboard records.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

EMBEDDER_MODEL_ID = "all-minilm-l6-v2"
EMBEDDING_HOOK = "sentence_embedding"  # metadata.hook_name of a passage SAE: the pooled, normalised embedding
MIN_WORDS = 8  # Brown "paragraphs" include headlines and one-word lines; they make poor memories


@dataclass
class Passage:
    data_source: str  # "<document id>#<paragraph number>", e.g. "brown/ca01#3"
    genre: str
    text: str


def corpus_passages(
    corpus: str = "brown", *, max_passages: int | None = None, min_words: int = MIN_WORDS, seed: int = 0
) -> list[Passage]:
    """Paragraphs of a corpus as passages (genre kept). With `max_passages`, a seeded sample spread over all
    documents (the Brown files are ordered by genre, so a prefix would be one genre only)."""
    from inference.runtime.corpus import corpus_documents

    out = []
    for doc in corpus_documents(corpus):
        for i, para in enumerate(doc.paragraphs):
            if len(para.split()) >= min_words:
                out.append(Passage(data_source=f"{doc.doc_id}#{i}", genre=doc.genre, text=para))
    if max_passages and len(out) > max_passages:
        keep = torch.randperm(len(out), generator=torch.Generator().manual_seed(seed))[:max_passages]
        out = [out[i] for i in sorted(keep.tolist())]
    return out


def passages_embed(texts: list[str], *, batch_size: int = 64) -> torch.Tensor:
    from inference.runtime.embedder import embed

    return torch.tensor(embed(texts, batch_size=batch_size), dtype=torch.float32)


def passages_embed_cached(
    texts: list[str], *, cache_file: Path, stamp: str, on_embed: Callable[[], None] | None = None
) -> torch.Tensor:
    """`passages_embed`, cached in `cache_file` under `stamp` (what the texts were drawn from): embedding is the
    slow step of a rebuild on CPU. A cache with another stamp is recomputed; `on_embed` is called only then.

    The new cache is written beside the old and renamed over it, so a job killed mid-write leaves either the old
    cache or the new one, never a truncated file that the rerun would fail to load."""
    cached = torch.load(cache_file) if cache_file.exists() else None
    if cached is not None and cached.get("stamp") == stamp:
        return cached["embeddings"]
    if on_embed:
        on_embed()
    emb = passages_embed(texts)
    tmp = cache_file.with_suffix(".tmp")
    torch.save({"stamp": stamp, "embeddings": emb}, tmp)
    tmp.rename(cache_file)
    return emb


@dataclass
class PassageSaeParams:
    width: int = 512
    k: int = 8
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 42


def passage_sae_train(
    embeddings: torch.Tensor,
    out_dir: Path,
    params: PassageSaeParams,
    *,
    model_name: str = EMBEDDER_MODEL_ID,
    dataset: str = "brown",
) -> dict:
    """Train a TopK SAE on [n, d] embeddings with SAELens' SAETrainer and save it SAELens-format at `out_dir`.

    The data provider samples batches (with replacement, seeded) from the in-memory embeddings for `steps` steps.
    Returns metrics (L0, explained variance, dead features) measured on all embeddings; also metrics.json.
    """
    from sae_lens import LoggingConfig, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    out_dir = Path(out_dir)
    n, d_in = embeddings.shape
    torch.manual_seed(params.seed)
    sae_cfg = TopKTrainingSAEConfig(d_in=d_in, d_sae=params.width, k=params.k)
    sae_cfg.metadata.hook_name = EMBEDDING_HOOK
    sae_cfg.metadata.model_name = model_name
    sae_cfg.metadata.dataset_path = dataset
    sae_cfg.metadata.context_size = 1
    sae_cfg.metadata.prepend_bos = False
    sae = TopKTrainingSAE(sae_cfg)
    # decoder rows start at norm 0.1 (decoder_init_norm); the embeddings have norm 1, so start b_dec at the mean
    # embedding: the SAE then spends its k latents on how a passage differs from the average one.
    with torch.no_grad():
        sae.b_dec.copy_(embeddings.mean(0))
    gen = torch.Generator().manual_seed(params.seed)

    def provider():
        while True:
            yield embeddings[torch.randint(0, n, (params.batch_size,), generator=gen)]

    total = params.steps * params.batch_size
    window = max(50, min(1000, params.steps // 4))
    trainer_cfg = SAETrainerConfig(
        total_training_samples=total,
        train_batch_size_samples=params.batch_size,
        lr=params.lr,
        lr_end=params.lr / 10,
        lr_scheduler_name="constant",
        dead_feature_window=window,
        feature_sampling_window=window,
        n_checkpoints=0,
        checkpoint_path=None,
        logger=LoggingConfig(log_to_wandb=False),
    )
    with torch.enable_grad():  # load_model() switches autograd off process-wide in workers
        SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=provider()).fit()
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sae.save_inference_model(str(tmp))
    metrics = passage_sae_metrics(_load(tmp), embeddings)
    metrics.update(
        {
            "architecture": "topk",
            "width": params.width,
            "k": params.k,
            "steps": params.steps,
            "training_samples": total,
            "n_passages": n,
            "dataset": dataset,
            "hook": EMBEDDING_HOOK,
        }
    )
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # the finished directory appears atomically
    return metrics


def _load(path: Path):
    from sae_lens import SAE

    return SAE.load_from_disk(str(path), device="cpu").eval()


def passage_sae_load(path: str | Path):
    return _load(Path(path))


def passage_sae_metrics(sae, embeddings: torch.Tensor) -> dict:
    with torch.no_grad():
        codes = sae.encode(embeddings)
        recon = sae.decode(codes)
    resid = ((embeddings - recon) ** 2).sum(1)
    var = ((embeddings - embeddings.mean(0)) ** 2).sum(1)
    fired = (codes > 0).any(0)
    return {
        "l0": round(float((codes > 0).float().sum(1).mean()), 4),
        "explained_variance": round(float(1 - resid.sum() / var.sum()), 6),
        "mse": round(float(resid.mean() / embeddings.shape[1]), 8),
        "num_dead_features": int((~fired).sum()),
    }


def passage_codes_embedded(sae, embeddings: torch.Tensor, *, batch: int = 4096) -> list[tuple[int, int, float]]:
    """Sparse codes of embeddings: (row, feature, value) for every nonzero entry."""
    out = []
    with torch.no_grad():
        for b in range(0, embeddings.shape[0], batch):
            codes = sae.encode(embeddings[b : b + batch].to(sae.dtype)).float()
            r, f = (codes > 0).nonzero(as_tuple=True)
            out.extend(zip((r + b).tolist(), f.tolist(), codes[r, f].tolist(), strict=True))
    return out


def passage_codes_lm(
    lm, sae, texts: list[str], *, max_tokens: int = 128, batch: int = 16, progress=None
) -> list[tuple[int, int, float]]:
    """Per-passage max activation of every feature of a language-model SAE: (row, feature, value), nonzero only.

    Each passage is tokenised on its own with BOS and truncated to `max_tokens`; passages are batched with right
    padding (causal attention: padding never changes earlier positions) and padded/special positions masked.
    """
    from inference.runtime.dashboards import hook_acts, masked_token_ids

    tok = lm.tokenizer
    bos = tok.bos_token_id
    hook = sae.cfg.metadata.hook_name
    special = torch.tensor(masked_token_ids(tok), dtype=torch.long)
    ids = [
        ([bos] if bos is not None else []) + tok(t, add_special_tokens=False)["input_ids"][: max_tokens - 1]
        for t in texts
    ]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: less padding
    out = []
    pad = tok.pad_token_id if tok.pad_token_id is not None else (bos or 0)
    with torch.no_grad():
        for b in range(0, len(order), batch):
            rows = order[b : b + batch]
            width = max(len(ids[i]) for i in rows)
            toks = torch.full((len(rows), width), pad, dtype=torch.long)
            valid = torch.zeros(len(rows), width, dtype=torch.bool)
            for j, i in enumerate(rows):
                toks[j, : len(ids[i])] = torch.tensor(ids[i])
                valid[j, : len(ids[i])] = True
            valid &= ~torch.isin(toks, special)
            acts = sae.encode(hook_acts(lm, toks.to(lm.spec.device), hook).to(sae.dtype)).float().cpu()
            acts = acts.masked_fill(~valid.unsqueeze(-1), 0.0).amax(dim=1)  # [rows, d_sae]
            r, f = (acts > 0).nonzero(as_tuple=True)
            out.extend(zip([rows[x] for x in r.tolist()], f.tolist(), acts[r, f].tolist(), strict=True))
            if progress:
                progress(min(b + batch, len(order)), len(order))
    return out


# ---- dashboards of a passage SAE as Neuronpedia v1 records ------------------------------------------------


def passage_dashboard_records(
    sae,
    passages: list[Passage],
    codes: list[tuple[int, int, float]],
    *,
    model_id: str,
    source_id: str,
    n_top: int = 20,
    n_intervals: int = 5,
    interval_samples: int = 3,
    n_bins: int = 50,
    n_cos: int = 10,
    max_words: int = 256,
    seed: int = 0,
):
    """v1 feature and activation dicts for every feature of a passage SAE.

    An activation is one passage: `tokens` are its words (first `max_words`; MiniLM reads ~256 word pieces
    anyway), and the feature's value is placed on **every** token — the code belongs to the passage as a whole,
    not to a word, so the highlight is uniform. `dataSource` is "<doc>#<paragraph>", `dataIndex` the passage's
    position in the source's passage list. Statistics follow the token dashboards with "token" read as
    "passage": frac_nonzero = share of passages, histogram over nonzero codes, equal-width interval samples,
    decoder-cosine neighbours; there are no logits (an embedder has no unembedding).
    """
    d_sae = sae.cfg.d_sae
    n = len(passages)
    rows = torch.tensor([c[0] for c in codes], dtype=torch.long)
    feats = torch.tensor([c[1] for c in codes], dtype=torch.long)
    vals = torch.tensor([c[2] for c in codes], dtype=torch.float32)
    counts = torch.bincount(feats, minlength=d_sae)
    fmax = torch.zeros(d_sae).scatter_reduce(0, feats, vals, reduce="amax", include_self=True)
    w_dec = sae.W_dec.detach().float()
    w_norm = w_dec / w_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
    sims = w_norm @ w_norm.T
    sims.fill_diagonal_(-2.0)
    cos_v, cos_i = torch.topk(sims, min(n_cos, d_sae - 1), dim=1)
    order = torch.argsort(feats, stable=True)  # entries grouped by feature, in passage order within one
    rows_s, vals_s = rows[order], vals[order]
    starts = torch.cumsum(counts, 0) - counts
    gen = torch.Generator().manual_seed(seed)
    features, activations = [], []
    words = [p.text.split()[:max_words] for p in passages]
    for f in range(d_sae):
        m = float(fmax[f])
        a, b = int(starts[f]), int(starts[f] + counts[f])
        fr, fv = rows_s[a:b], vals_s[a:b]
        hist = torch.histc(fv, bins=n_bins, min=0.0, max=m) if m > 0 else torch.zeros(0)
        features.append(
            {
                "modelId": model_id,
                "layer": source_id,
                "index": f,
                "hookName": EMBEDDING_HOOK,
                "maxActApprox": round(m, 5),
                "frac_nonzero": float(counts[f]) / max(1, n),
                "freq_hist_data_bar_heights": hist.tolist(),
                "freq_hist_data_bar_values": [round((i + 0.5) * m / n_bins, 5) for i in range(n_bins)] if m > 0 else [],
                "topkCosSimIndices": cos_i[f].tolist(),
                "topkCosSimValues": [round(v, 5) for v in cos_v[f].tolist()],
            }
        )
        if m <= 0:
            continue
        picks: list[tuple[int, float, float, float, float]] = []  # (row, value, binMin, binMax, binContains)
        top = torch.argsort(fv, descending=True)[:n_top]
        picks += [(int(fr[i]), float(fv[i]), -1.0, m, -1.0) for i in top.tolist()]
        interval = torch.clamp((fv / m * n_intervals).long(), max=n_intervals - 1)
        for iv in range(n_intervals):
            members = (interval == iv).nonzero(as_tuple=True)[0]
            contains = (len(members) + (n - len(fv) if iv == 0 else 0)) / max(1, n)
            chosen = members[torch.randperm(len(members), generator=gen)[:interval_samples]]
            picks += [
                (int(fr[i]), float(fv[i]), m * iv / n_intervals, m * (iv + 1) / n_intervals, contains)
                for i in chosen.tolist()
            ]
        for rank, (row, value, bmin, bmax, contains) in enumerate(picks):
            toks = words[row] or [""]
            v = round(value, 5)
            activations.append(
                {
                    "id": passage_activation_id(model_id, source_id, f, rank),
                    "modelId": model_id,
                    "layer": source_id,
                    "index": f,
                    "tokens": toks,
                    "values": [v] * len(toks),
                    "maxValue": v,
                    "minValue": v,
                    "maxValueTokenIndex": 0,
                    "qualifyingTokenIndex": 0,
                    "binMin": round(bmin, 5),
                    "binMax": round(bmax, 5),
                    "binContains": contains,
                    "dataIndex": row,
                    "dataSource": passages[row].data_source,
                }
            )
    return features, activations


def passage_activation_id(model_id: str, source_id: str, index: int, rank: int) -> str:
    """Deterministic (≤ 64 chars) so a rebuild upserts the same rows."""
    import hashlib

    return "psg-" + hashlib.sha1(f"{model_id}/{source_id}/{index}/{rank}".encode()).hexdigest()[:30]
