"""SAE benchmarks that run offline: SAELens's core metrics and k-sparse probing of Brown-corpus genres.

Both take a loaded model, an SAE (or a transcoder) and tokenised corpus contexts, and return plain dicts in SAEBench's shape
(`metrics`: category → flat map, `details`: a list of rows, `config`: what was run), with exactly the field names of
SAEBench 0.6.0's output dataclasses (`evals/core/eval_output.py`, `evals/sparse_probing/eval_output.py`, and their
`eval_config.py`); what SAEBench has no field for (which hook, which contexts, a transcoder's targets) goes in
`unstructured`. The caller wraps them into SAEBench's output JSON and stores them.

- core: SAELens `run_evals` (reconstruction, sparsity, CE loss and KL with the SAE spliced in against the clean
  model and zero-ablation, per-feature density) on the *last* contexts of the seeded shuffle — training reads the
  shuffled contexts from the front, so these are unseen unless it ran past one epoch.
- core of a transcoder (SAELens's run_evals would compare its output with its *input*): the same metrics where they
  fit, computed here. Reconstruction is of the MLP's output (`hook_mlp_out`) from its input (`hook_resid_mid`), with
  the trainer's own quality function; CE loss and KL are with that one layer's MLP output replaced by the
  transcoder's, against the clean model and that MLP zero-ablated.
- sparse_probing: SAEBench's recipe on our offline data. Each context of 127 tokens from one Brown document is a
  text, labelled with its document's genre; a binary task per genre (genre against the rest, balanced) is
  split by document (no document in both train and test). Features are the mean over the text's tokens (BOS
  excluded) of the residual stream at the SAE's hook, or of the SAE's latents (a transcoder's hook is its input,
  `hook_resid_mid`). For each k the k dimensions with
  the largest |mean(pos) − mean(neg)| on the train set feed a logistic regression; accuracy is on the test set.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from inference.runtime.corpus import Contexts
from inference.runtime.dashboards import hook_acts
from inference.runtime.models import LoadedModel
from inference.runtime.saes import sae_encode, sae_hook_name
from inference.runtime.transcoders import _decode_saved, _encode_saved, hook_names, layer_quality_eval, mlp_io

Progress = Callable[[int, int, str], None]
COSINE_CHUNK = 1024  # rows of the latent × latent cosine matrix at a time: 1024 × 131,072 floats is 0.5 GB


@dataclass
class CoreParams:
    n_eval_reconstruction_batches: int = 10
    n_eval_sparsity_variance_batches: int = 10
    batch_size_prompts: int = 8
    exclude_special_tokens_from_reconstruction: bool = True


def _round(v):
    """6 decimals; NaN/inf (e.g. the activation heuristic of a latent that never fired) become None: JSON has none."""
    if isinstance(v, float):
        return round(v, 6) if math.isfinite(v) else None
    return v


def is_transcoder(sae) -> bool:
    from sae_lens.saes.transcoder import Transcoder

    return isinstance(sae, Transcoder)


def _held_out(contexts: Contexts, p: CoreParams) -> torch.Tensor:
    n_prompts = p.batch_size_prompts * max(p.n_eval_reconstruction_batches, p.n_eval_sparsity_variance_batches)
    return contexts.tokens[-min(len(contexts.tokens), n_prompts + p.batch_size_prompts) :]


def _max_cosine(rows: torch.Tensor) -> torch.Tensor:
    """Per row of [n, d], its largest cosine similarity to another row."""
    unit = rows.detach().float()
    unit = unit / unit.norm(dim=1, keepdim=True).clamp_min(1e-8)
    out = torch.empty(len(unit), device=unit.device)
    for start in range(0, len(unit), COSINE_CHUNK):
        cos = unit[start : start + COSINE_CHUNK] @ unit.T
        diagonal = torch.arange(len(cos), device=cos.device)
        cos[diagonal, diagonal + start] = -1
        out[start : start + len(cos)] = cos.max(dim=1).values
    return out.cpu()


def _weight_details(w_enc: torch.Tensor, w_dec: torch.Tensor) -> dict[str, list[float]]:
    """SAEBench's per-latent weight columns from the encoder and decoder rows ([d_sae, d_in] both)."""
    return {
        "encoder_decoder_cosine_sim": torch.nn.functional.cosine_similarity(w_enc.float(), w_dec.float()).tolist(),
        "max_encoder_cosine_sim": _max_cosine(w_enc).tolist(),
        "max_decoder_cosine_sim": _max_cosine(w_dec).tolist(),
    }


DETAIL_COLUMNS = (  # SAEBench's CoreFeatureMetric, in its order
    "feature_density",
    "consistent_activation_heuristic",
    "encoder_bias",
    "encoder_norm",
    "encoder_decoder_cosine_sim",
    "max_decoder_cosine_sim",
    "max_encoder_cosine_sim",
)


def _core_details(columns: dict[str, list]) -> list[dict]:
    n = len(columns["feature_density"])
    return [
        {"index": i, **{k: _round(float(v[i])) if (v := columns.get(k)) is not None else None for k in DETAIL_COLUMNS}}
        for i in range(n)
    ]


def _misc_metrics(columns: dict[str, list]) -> dict:
    """SAEBench's `misc_metrics`: activation frequencies and the mean largest encoder/decoder cosines."""
    density = torch.tensor(columns["feature_density"], dtype=torch.float64)
    total = float(density.sum())

    def normalized(threshold: float) -> float:
        return float(density[density > threshold].sum()) / total if total > 0 else 0.0

    return {
        "freq_over_1_percent": _round(float((density > 0.01).double().mean())),
        "freq_over_10_percent": _round(float((density > 0.1).double().mean())),
        "normalized_freq_over_1_percent": _round(normalized(0.01)),
        "normalized_freq_over_10_percent": _round(normalized(0.1)),
        "average_max_encoder_cosine_sim": _round(sum(columns["max_encoder_cosine_sim"]) / len(density)),
        "average_max_decoder_cosine_sim": _round(sum(columns["max_decoder_cosine_sim"]) / len(density)),
        "frac_alive": _round(float((density > 0).double().mean())),
    }


def _core_config(lm: LoadedModel, contexts: Contexts, p: CoreParams, context_size: int) -> dict:
    """SAEBench's CoreEvalConfig, field for field (every metric group is computed here)."""
    return {
        "model_name": lm.spec.name or lm.spec.kind,
        "llm_dtype": str(lm.spec.dtype),
        "batch_size_prompts": p.batch_size_prompts,
        "n_eval_reconstruction_batches": p.n_eval_reconstruction_batches,
        "n_eval_sparsity_variance_batches": p.n_eval_sparsity_variance_batches,
        "dataset": contexts.name or "brown",
        "context_size": context_size,
        "compute_kl": True,
        "compute_ce_loss": True,
        "compute_l2_norms": True,
        "compute_sparsity_metrics": True,
        "compute_variance_metrics": True,
        "compute_featurewise_density_statistics": True,
        "compute_featurewise_weight_based_metrics": True,
        "exclude_special_tokens_from_reconstruction": p.exclude_special_tokens_from_reconstruction,
        "verbose": False,
    }


def core_eval(lm: LoadedModel, sae, contexts: Contexts, *, params: CoreParams | None = None, progress=None) -> dict:
    if is_transcoder(sae):
        return transcoder_core_eval(lm, sae, contexts, params=params, progress=progress)
    from datasets import Dataset
    from sae_lens import ActivationsStore
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler

    p = params or CoreParams()
    if progress:
        progress(0, 2, "core: SAELens run_evals")
    ctx = contexts.tokens.shape[1]
    if getattr(sae.cfg.metadata, "prepend_bos", None) is None:
        sae.cfg.metadata.prepend_bos = True  # our contexts start with BOS (an added SAE's cfg may not say)
    held = _held_out(contexts, p)
    store = ActivationsStore.from_sae(
        lm.model,
        sae,
        dataset=Dataset.from_dict({"tokens": held.tolist()}),
        context_size=ctx,
        store_batch_size_prompts=p.batch_size_prompts,
        n_batches_in_buffer=2,
        train_batch_size_tokens=p.batch_size_prompts * ctx,
        device=str(lm.spec.device),
    )
    cfg = EvalConfig(
        batch_size_prompts=p.batch_size_prompts,
        n_eval_reconstruction_batches=p.n_eval_reconstruction_batches,
        n_eval_sparsity_variance_batches=p.n_eval_sparsity_variance_batches,
        compute_ce_loss=True,
        compute_kl=True,
        compute_l2_norms=True,  # SAEBench's `shrinkage` group
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
        compute_featurewise_density_statistics=True,
        compute_featurewise_weight_based_metrics=True,
    )
    special = [
        i for i in (lm.tokenizer.bos_token_id, lm.tokenizer.eos_token_id, lm.tokenizer.pad_token_id) if i is not None
    ]
    with torch.no_grad():
        metrics, feature_metrics = run_evals(
            sae, store, lm.model, ActivationScaler(), cfg,
            exclude_special_tokens=special if p.exclude_special_tokens_from_reconstruction else False,
        )  # fmt: skip
    metrics = {cat: {k: _round(v) for k, v in group.items()} for cat, group in metrics.items() if group}
    columns = {**_weight_details(sae.W_enc.T, sae.W_dec), **feature_metrics}
    metrics["misc_metrics"] = _misc_metrics(columns)
    if progress:
        progress(2, 2, "core: done")
    return {
        "metrics": metrics,
        "details": _core_details(columns),
        "config": _core_config(lm, contexts, p, ctx),
        "unstructured": {"sae_kind": "sae", "held_out": f"the last {len(held)} contexts of the seeded shuffle"},
    }


def transcoder_weights(sae) -> dict[str, torch.Tensor]:
    """A SAELens transcoder's tensors in the trainer's saved form (W_enc [width, d_in]), which its quality function
    and encoder take; a ReLU transcoder is a JumpReLU with threshold 0."""
    w = {"W_enc": sae.W_enc.T, "W_dec": sae.W_dec, "b_enc": sae.b_enc, "b_dec": sae.b_dec}
    w["threshold"] = sae.threshold if hasattr(sae, "threshold") else torch.zeros_like(sae.b_enc)
    if getattr(sae, "W_skip", None) is not None:
        w["W_skip"] = sae.W_skip
    return {k: v.detach().float() for k, v in w.items()}


def _transcoder_layer(sae) -> int:
    hook_in = sae_hook_name(sae)
    layer = int(hook_in.split(".")[1]) if hook_in.startswith("blocks.") else -1
    if layer < 0 or hook_names(layer)[0] != hook_in:
        raise ValueError(f"The core eval of a transcoder needs an MLP transcoder (reads {hook_in!r})")
    hook_out = getattr(sae.cfg.metadata, "hook_name_out", None)
    if hook_out and hook_out != hook_names(layer)[1]:
        raise ValueError(f"The core eval of a transcoder needs an MLP transcoder (writes {hook_out!r})")
    return layer


def _next_token_stats(clean: torch.Tensor, other: torch.Tensor, tokens: torch.Tensor) -> tuple[float, float]:
    """Summed next-token cross-entropy of `other`'s logits and summed KL(clean ‖ other), over every position."""
    logp = other[:, :-1].float().log_softmax(-1)
    ce = -logp.gather(-1, tokens[:, 1:, None]).sum()
    logp_clean = clean[:, :-1].float().log_softmax(-1)
    kl = (logp_clean.exp() * (logp_clean - logp)).sum()
    return float(ce), float(kl)


def _splice_runs(lm: LoadedModel, toks: torch.Tensor, layer: int, w: dict) -> dict[str, tuple[float, float]]:
    """(CE, KL) sums of one batch: clean, with the layer's MLP output replaced by the transcoder's, and zeroed.
    The BOS position keeps the real MLP output in both: the transcoder never saw it (training drops it, as
    circuit-tracer does), and a score about the text should not hinge on the attention sink."""
    hook_in, hook_out = hook_names(layer)
    kept = {}

    def keep(act, hook):  # noqa: ARG001
        kept["x"] = act

    def replace(act, hook):  # noqa: ARG001
        x = kept["x"][:, 1:].float()
        out = act.clone()
        out[:, 1:] = _decode_saved(w, _encode_saved(w, x), x).to(act.dtype)
        return out

    def zero(act, hook):  # noqa: ARG001
        out = act.clone()
        out[:, 1:] = 0
        return out

    clean = lm.model(toks)
    spliced = lm.model.run_with_hooks(toks, fwd_hooks=[(hook_in, keep), (hook_out, replace)])
    ablated = lm.model.run_with_hooks(toks, fwd_hooks=[(hook_out, zero)])
    return {
        "clean": _next_token_stats(clean, clean, toks),
        "sae": _next_token_stats(clean, spliced, toks),
        "ablation": _next_token_stats(clean, ablated, toks),
    }


def transcoder_core_eval(
    lm: LoadedModel, sae, contexts: Contexts, *, params: CoreParams | None = None, progress=None
) -> dict:
    """SAEBench's core metrics for one MLP transcoder on the held-out contexts (the same ones as an SAE's)."""
    p = params or CoreParams()
    layer = _transcoder_layer(sae)
    device = lm.spec.device
    w = {k: v.to(device) for k, v in transcoder_weights(sae).items()}
    held = _held_out(contexts, p)
    batches = [held[i : i + p.batch_size_prompts] for i in range(0, len(held), p.batch_size_prompts)]
    sums = {"clean": [0.0, 0.0], "sae": [0.0, 0.0], "ablation": [0.0, 0.0]}
    xs, ys, n_predicted = [], [], 0
    with torch.no_grad():
        for b, toks in enumerate(batches):
            toks = toks.to(device)
            x, y = mlp_io(lm, toks, [layer])[layer]
            xs.append(x)
            ys.append(y)
            for name, (ce, kl) in _splice_runs(lm, toks, layer, w).items():
                sums[name][0] += ce
                sums[name][1] += kl
            n_predicted += toks.shape[0] * (toks.shape[1] - 1)
            if progress:
                progress(b + 1, len(batches) + 1, f"core (transcoder): batch {b + 1}/{len(batches)}")
        x, y = torch.cat(xs), torch.cat(ys)
        quality = layer_quality_eval(w, x, y)  # the trainer's explained variance, L0, MSE on these tokens
        acts = _encode_saved(w, x)
        recon = _decode_saved(w, acts, x)
    ce = {name: v[0] / n_predicted for name, v in sums.items()}
    kl = {name: v[1] / n_predicted for name, v in sums.items()}
    norm_in, norm_out = y.norm(dim=-1), recon.norm(dim=-1)
    err = (y - recon).pow(2).sum(-1)
    firing = acts > 0
    # SAELens's consistent activation heuristic: tokens a latent fires on over the prompts it fires in at all
    prompts_fired = firing.view(len(held), -1, firing.shape[-1]).any(dim=1).sum(0)
    columns = {
        "feature_density": firing.float().mean(0).tolist(),
        "consistent_activation_heuristic": (firing.sum(0) / prompts_fired).tolist(),
        "encoder_bias": w["b_enc"].tolist(),
        "encoder_norm": w["W_enc"].norm(dim=1).tolist(),
        **_weight_details(w["W_enc"], w["W_dec"]),
    }
    metrics = {
        "model_behavior_preservation": {
            "kl_div_score": _round((kl["ablation"] - kl["sae"]) / kl["ablation"]) if kl["ablation"] else None,
            "kl_div_with_ablation": _round(kl["ablation"]),
            "kl_div_with_sae": _round(kl["sae"]),
        },
        "model_performance_preservation": {
            "ce_loss_score": _round((ce["ablation"] - ce["sae"]) / (ce["ablation"] - ce["clean"]))
            if ce["ablation"] != ce["clean"]
            else None,
            "ce_loss_with_ablation": _round(ce["ablation"]),
            "ce_loss_with_sae": _round(ce["sae"]),
            "ce_loss_without_sae": _round(ce["clean"]),
        },
        "reconstruction_quality": {
            "explained_variance": _round(quality["explained_variance"]),
            "explained_variance_legacy": _round(
                float((1 - err / (y - y.mean(0)).pow(2).sum(-1).clamp_min(1e-12)).mean())
            ),
            # SAELens's convention: squared error summed over dimensions, averaged over tokens
            "mse": _round(quality["mse"] * y.shape[-1]),
            "cossim": _round(float((y * recon).sum(-1).div((norm_in * norm_out).clamp_min(1e-12)).mean())),
        },
        "shrinkage": {
            "l2_norm_in": _round(float(norm_in.mean())),
            "l2_norm_out": _round(float(norm_out.mean())),
            "l2_ratio": _round(float((norm_out / norm_in.clamp_min(1e-4)).mean())),
            "relative_reconstruction_bias": _round(float(norm_out.pow(2).mean() / (y * recon).sum(-1).mean())),
        },
        "sparsity": {"l0": _round(quality["l0"]), "l1": _round(float(acts.abs().sum(-1).mean()))},
        "misc_metrics": _misc_metrics(columns),
        "token_stats": {
            "total_tokens_eval_reconstruction": held.numel(),
            "total_tokens_eval_sparsity_variance": quality["eval_tokens"],
        },
    }
    if progress:
        progress(len(batches) + 1, len(batches) + 1, "core (transcoder): done")
    unstructured = {
        "sae_kind": "transcoder",
        "held_out": f"the last {len(held)} contexts of the seeded shuffle",
        "hook_name": hook_names(layer)[0],
        "hook_name_out": hook_names(layer)[1],
        "reconstruction_target": f"{hook_names(layer)[1]} from {hook_names(layer)[0]} (BOS position excluded)",
        "spliced": f"layer {layer}'s MLP output replaced by the transcoder's (the BOS position kept), "
        "against the clean model and that MLP output zeroed",
    }
    return {
        "metrics": metrics,
        "details": _core_details(columns),
        "config": _core_config(lm, contexts, p, held.shape[1]),
        "unstructured": unstructured,
    }


@dataclass
class ProbeParams:
    k_values: list[int] = field(default_factory=lambda: [1, 2, 5, 20])
    max_per_class: int = 120  # per task and side (train); test gets a quarter of it
    min_per_class: int = 16
    max_tasks: int = 8  # the genres with the most texts (SAEBench runs 8 datasets)
    batch_size: int = 16
    test_every: int = 5  # every 5th document (by a stable hash of its id) is a test document
    seed: int = 42


def _single_doc_contexts(contexts: Contexts) -> tuple[torch.Tensor, torch.Tensor]:
    """Indexes of contexts whose tokens (BOS aside) come from one document, and that document's index."""
    own = contexts.doc_index[:, 1:]
    single = (own == own[:, :1]).all(dim=1)
    idx = torch.nonzero(single).flatten()
    return idx, own[idx, 0].long()


def _is_test_doc(doc_id: str, every: int) -> bool:
    return int(hashlib.sha1(doc_id.encode()).hexdigest()[:8], 16) % every == 0


def _pick(pool: list[int], n: int, g: torch.Generator) -> list[int]:
    if len(pool) <= n:
        return list(pool)
    return [pool[i] for i in torch.randperm(len(pool), generator=g)[:n].tolist()]


def _probe_acc(x_tr, y_tr, x_te, y_te) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    clf.fit(x_tr, y_tr)
    return float(clf.score(x_te, y_te))


def _k_sparse(x_tr, y_tr, x_te, y_te, k_values: list[int]) -> dict:
    diff = abs(x_tr[y_tr == 1].mean(0) - x_tr[y_tr == 0].mean(0))
    out = {"test_accuracy": _probe_acc(x_tr, y_tr, x_te, y_te)}
    order = diff.argsort(kind="stable")[::-1]
    for k in k_values:
        cols = order[: min(k, x_tr.shape[1])]
        out[f"top_{k}_test_accuracy"] = _probe_acc(x_tr[:, cols], y_tr, x_te[:, cols], y_te)
    return out


def sparse_probing_eval(
    lm: LoadedModel, sae, contexts: Contexts, *, params: ProbeParams | None = None, progress=None
) -> dict:
    p = params or ProbeParams()
    if not contexts.genres or not any(contexts.genres):
        raise ValueError("Sparse probing needs a corpus with genres (the Brown corpus)")
    hook = sae_hook_name(sae)
    g = torch.Generator().manual_seed(p.seed)
    idx, doc = _single_doc_contexts(contexts)
    by_genre: dict[str, dict[str, list[int]]] = {}
    for ci, di in zip(idx.tolist(), doc.tolist(), strict=True):
        genre = contexts.genres[di]
        split = "test" if _is_test_doc(contexts.doc_ids[di], p.test_every) else "train"
        by_genre.setdefault(genre, {"train": [], "test": []})[split].append(ci)
    n_test = max(4, p.max_per_class // 4)
    tasks = {}
    biggest = sorted(by_genre, key=lambda name: (-len(by_genre[name]["train"]), name))[: p.max_tasks]
    for genre in sorted(biggest):
        rest = {s: [c for other, v in by_genre.items() if other != genre for c in v[s]] for s in ("train", "test")}
        pos = {
            "train": _pick(by_genre[genre]["train"], p.max_per_class, g),
            "test": _pick(by_genre[genre]["test"], n_test, g),
        }
        if len(pos["train"]) < p.min_per_class or len(pos["test"]) < 4:
            continue  # too few texts of this genre for a balanced task
        neg = {s: _pick(rest[s], len(pos[s]), g) for s in ("train", "test")}
        tasks[genre] = {s: (pos[s] + neg[s], [1] * len(pos[s]) + [0] * len(neg[s])) for s in ("train", "test")}
    if not tasks:
        raise ValueError("No genre has enough single-document contexts for a probing task")
    needed = sorted({c for t in tasks.values() for s in ("train", "test") for c in t[s][0]})
    resid, latents = _pooled(lm, sae, contexts, needed, hook=hook, batch_size=p.batch_size, progress=progress)
    row = {c: i for i, c in enumerate(needed)}
    details, sums, sizes = [], {}, {}
    for genre, t in tasks.items():
        (tr, y_tr), (te, y_te) = t["train"], t["test"]
        y_tr_t, y_te_t = torch.tensor(y_tr).numpy(), torch.tensor(y_te).numpy()
        rows_tr, rows_te = [row[c] for c in tr], [row[c] for c in te]
        llm = _k_sparse(resid[rows_tr], y_tr_t, resid[rows_te], y_te_t, p.k_values)
        sae_r = _k_sparse(latents[rows_tr], y_tr_t, latents[rows_te], y_te_t, p.k_values)
        detail = {"dataset_name": f"brown_genre: {genre}"}
        sizes[detail["dataset_name"]] = {"n_train": len(tr), "n_test": len(te)}
        detail |= {f"llm_{k}": round(v, 6) for k, v in llm.items()} | {
            f"sae_{k}": round(v, 6) for k, v in sae_r.items()
        }
        details.append(detail)
        for k, v in detail.items():
            if k.startswith(("llm_", "sae_")):
                sums.setdefault(k, []).append(v)
    mean = {k: round(sum(v) / len(v), 6) for k, v in sums.items()}
    metrics = {side: {k: mean.get(k) for k in _probe_keys(side, p.k_values)} for side in ("llm", "sae")}
    keys = _probe_keys("llm", p.k_values) + _probe_keys("sae", p.k_values)
    details = [{"dataset_name": d["dataset_name"], **{k: d.get(k) for k in keys}} for d in details]
    config = {  # SAEBench's SparseProbingEvalConfig, field for field
        "random_seed": p.seed,
        "dataset_names": [d["dataset_name"] for d in details],
        "probe_train_set_size": p.max_per_class * 2,
        "probe_test_set_size": n_test * 2,
        "context_length": contexts.tokens.shape[1],
        "sae_batch_size": p.batch_size,
        "llm_batch_size": p.batch_size,
        "llm_dtype": str(lm.spec.dtype),
        "model_name": lm.spec.name or lm.spec.kind,
        "k_values": list(p.k_values),
        "lower_vram_usage": False,
    }
    unstructured = {
        "sae_kind": "transcoder" if is_transcoder(sae) else "sae",
        "hook_name": hook,  # the llm probes read this hook's activations; a transcoder's latents encode them too
        "split": f"by document: every {p.test_every}th document (stable hash of its id) is a test document",
        "chance_accuracy": 0.5,
        "tasks": sizes,
    }
    return {"metrics": metrics, "details": details, "config": config, "unstructured": unstructured}


SAEBENCH_K = (1, 2, 5, 10, 20, 50, 100)  # the top-k accuracies SAEBench's output has a field for (null when not run)


def _probe_keys(side: str, k_values) -> list[str]:
    return [f"{side}_test_accuracy"] + [f"{side}_top_{k}_test_accuracy" for k in sorted({*SAEBENCH_K, *k_values})]


def _pooled(lm: LoadedModel, sae, contexts: Contexts, rows: list[int], *, hook: str, batch_size: int, progress):
    """Mean over each context's tokens after BOS of the hook's activations and of the SAE's latents."""
    resid, latents = [], []
    total = math.ceil(len(rows) / batch_size)
    with torch.no_grad():
        for b in range(total):
            toks = contexts.tokens[rows[b * batch_size : (b + 1) * batch_size]].to(lm.spec.device)
            acts = hook_acts(lm, toks, hook)[:, 1:].float()
            resid.append(acts.mean(1).cpu())
            latents.append(sae_encode(sae, acts).mean(1).cpu())
            if progress:
                progress(b + 1, total, f"sparse probing: {min(len(rows), (b + 1) * batch_size)}/{len(rows)} texts")
    return torch.cat(resid).numpy(), torch.cat(latents).numpy()
