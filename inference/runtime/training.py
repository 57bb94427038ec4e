"""Training an SAE with SAELens on a loaded model's hook over pre-tokenised corpus contexts.

`sae_train` runs `LanguageModelSAETrainingRunner` with our in-memory HookedTransformer (override_model) and
the corpus contexts as an HF Dataset of `tokens` (override_dataset), wandb off. The output directory is a
SAELens directory (`SAE.load_from_disk` loads it) plus `metrics.json` from `run_evals` (L0, explained variance,
dead features, CE-loss recovered). Checkpoints go to `<out>.work/`; a rerun after an interruption resumes
from the newest complete one (SAELens restores the trainer state, weights and the activation store's position).

SIGINT and SIGTERM during training stop it at the next batch (never inside a checkpoint's files) with
`TrainingInterrupted`, and are then handed on to the process's own handlers: a Celery worker shuts down warmly
after its job, a command exits as it would have.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from inference.runtime.corpus import Contexts
from inference.runtime.models import LoadedModel

ARCHITECTURES = ("standard", "topk", "jumprelu", "batchtopk")


@dataclass
class TrainParams:
    hook: str
    arch: str = "topk"
    width: int = 4608
    k: int = 32  # topk / batchtopk
    l1_coefficient: float = 5.0  # standard
    l0_coefficient: float = 1.0  # jumprelu
    tokens: int = 2_000_000
    context_size: int = 128
    batch_size_tokens: int = 4096
    lr: float = 3e-4
    n_checkpoints: int = 4
    seed: int = 42
    eval_batches: int = 4

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"Unknown architecture {self.arch!r}; one of {', '.join(ARCHITECTURES)}")


def _sae_config(params: TrainParams, d_in: int):
    from sae_lens import (
        BatchTopKTrainingSAEConfig,
        JumpReLUTrainingSAEConfig,
        StandardTrainingSAEConfig,
        TopKTrainingSAEConfig,
    )

    common = {"d_in": d_in, "d_sae": params.width}
    if params.arch == "topk":
        return TopKTrainingSAEConfig(k=params.k, **common)
    if params.arch == "batchtopk":
        return BatchTopKTrainingSAEConfig(k=params.k, **common)
    if params.arch == "jumprelu":
        return JumpReLUTrainingSAEConfig(l0_coefficient=params.l0_coefficient, **common)
    return StandardTrainingSAEConfig(l1_coefficient=params.l1_coefficient, **common)


class _Counting:
    """Wraps the activation store so each training batch reports progress (SAELens calls next() on it)."""

    def __init__(self, inner, on_batch):
        self._inner, self._on_batch = inner, on_batch

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self._inner)
        self._on_batch(int(batch.shape[0]))
        return batch

    def __getattr__(self, name):
        return getattr(self._inner, name)


# What SAELens writes into a checkpoint, the runner's config last: a worker killed while writing one leaves it
# without that file, and a resume from it would fail on the missing or torn file instead of using the one before.
CHECKPOINT_FILES = ("cfg.json", "trainer_state.pt", "activation_scaler.json", "runner_cfg.json")


def latest_checkpoint(work: Path) -> Path | None:
    """The complete checkpoint with the most training samples under `work` (SAELens names them by sample count)."""
    best, best_n = None, -1
    for state in work.glob("**/trainer_state.pt"):
        name = state.parent.name.removeprefix("final_")
        complete = all((state.parent / f).is_file() for f in CHECKPOINT_FILES)
        if complete and name.isdigit() and int(name) > best_n:
            best, best_n = state.parent, int(name)
    return best


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped training between two batches; its complete checkpoints stay for a resume."""


class _Signals:
    """SAELens's runner installs SIGINT/SIGTERM handlers that raise wherever training is (a checkpoint half
    written included) and never removes them, so a Celery worker would not hear its warm-shutdown signal again.
    `check()`, called at each batch, swaps them for one that only notes the signal, and raises
    TrainingInterrupted there; `restore()` puts the process's own handlers back and hands them what arrived."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.saved = {s: signal.getsignal(s) for s in self.SIGNALS}
        self.caught: list[int] = []

    def note(self, signum, frame):
        self.caught.append(signum)

    def check(self):
        for s in self.SIGNALS:
            if signal.getsignal(s) not in (self.note, self.saved[s]):
                signal.signal(s, self.note)
        if self.caught:
            raise TrainingInterrupted(f"stopped by {signal.Signals(self.caught[0]).name}")

    def restore(self):
        for s, handler in self.saved.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(self.caught):
            signal.raise_signal(s)


def _dataset(contexts: Contexts, n_tokens: int, context_size: int):
    from datasets import Dataset

    if contexts.tokens.shape[1] != context_size:
        raise ValueError(f"Contexts are {contexts.tokens.shape[1]} tokens long, training wants {context_size}")
    # SAELens stops at training_tokens; repeat the corpus (epochs) when it is shorter than that.
    reps = max(1, math.ceil(n_tokens / max(1, contexts.n_tokens)))
    toks = contexts.tokens.repeat(reps, 1) if reps > 1 else contexts.tokens
    return Dataset.from_dict({"tokens": toks.tolist()})


def sae_train(
    lm: LoadedModel,
    contexts: Contexts,
    params: TrainParams,
    out_dir: Path,
    *,
    model_name: str = "",
    dataset_name: str = "",
    progress=None,
) -> dict:
    """Train (or resume) and write a SAELens directory at `out_dir`; returns the metrics (also metrics.json).

    `progress(done_tokens, total_tokens)` is called after every training batch.
    """
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig

    out_dir = Path(out_dir)
    if (out_dir / "cfg.json").exists() and (out_dir / "metrics.json").exists():
        return json.loads((out_dir / "metrics.json").read_text())
    work = out_dir.with_name(out_dir.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    batch = params.batch_size_tokens
    store_prompts = max(1, min(32, batch // params.context_size))
    # SAELens's mixing buffer holds n_batches_in_buffer * context_size activations; it must be ≥ one batch
    # (pitfall) — 4 batches deep mixes activations across contexts (the corpus contexts are shuffled too).
    n_buffer = math.ceil(4 * batch / params.context_size)
    resume = latest_checkpoint(work)
    cfg = LanguageModelSAERunnerConfig(
        sae=_sae_config(params, lm.d_model),
        model_name=model_name or "custom",
        hook_name=params.hook,
        dataset_path="",
        is_dataset_tokenized=True,
        context_size=params.context_size,
        prepend_bos=True,
        training_tokens=params.tokens,
        train_batch_size_tokens=batch,
        store_batch_size_prompts=store_prompts,
        n_batches_in_buffer=n_buffer,
        lr=params.lr,
        device=str(lm.spec.device),
        seed=params.seed,
        n_checkpoints=params.n_checkpoints,
        checkpoint_path=str(work / "checkpoints"),
        resume_from_checkpoint=str(resume) if resume else None,
        output_path=str(work / "final"),
        logger=LoggingConfig(log_to_wandb=False),
        dead_feature_window=max(50, min(1000, params.tokens // batch // 4)),
        feature_sampling_window=max(50, min(2000, params.tokens // batch // 2)),
    )
    ds = _dataset(contexts, params.tokens, params.context_size)
    runner = LanguageModelSAETrainingRunner(cfg, override_model=lm.model, override_dataset=ds)
    resumed_from = int(resume.name.removeprefix("final_")) if resume else 0  # samples the checkpoint holds
    done = {"n": resumed_from}
    signals = _Signals()

    def on_batch(n):
        signals.check()
        done["n"] += n
        if progress:
            progress(min(done["n"], params.tokens), params.tokens)

    runner.activations_store = _Counting(runner.activations_store, on_batch)
    started = time.monotonic()
    try:
        with torch.enable_grad():  # load_model() switches autograd off process-wide
            runner.run()
    finally:
        signals.restore()
    train_seconds = time.monotonic() - started
    trained = done["n"] - resumed_from
    metrics = sae_evaluate(lm, work / "final", contexts, n_batches=params.eval_batches)
    metrics.update(
        {
            "architecture": params.arch,
            "width": params.width,
            "k": params.k if params.arch in ("topk", "batchtopk") else None,
            "training_tokens": params.tokens,
            "train_seconds": round(train_seconds, 1),
            "train_tokens_per_second": round(trained / train_seconds, 1) if train_seconds else None,
            "resumed_from_tokens": resumed_from,
            "hook": params.hook,
            "dataset": dataset_name,
            "params": asdict(params),
        }
    )
    (work / "final" / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (work / "final").rename(out_dir)  # the finished directory appears atomically
    shutil.rmtree(work, ignore_errors=True)
    return metrics


def sae_evaluate(lm: LoadedModel, sae_dir: Path, contexts: Contexts, *, n_batches: int = 4) -> dict:
    """SAELens `run_evals` on the last contexts of the shuffled corpus (unseen unless training ran past one
    epoch): L0, explained variance, CE-loss recovered, KL, dead features."""
    from datasets import Dataset
    from sae_lens import SAE, ActivationsStore
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler

    sae = SAE.load_from_disk(str(sae_dir), device=str(lm.spec.device))
    ctx = contexts.tokens.shape[1]
    held = contexts.tokens[-max(8, 8 * n_batches) :]
    ds = Dataset.from_dict({"tokens": held.tolist()})
    store = ActivationsStore.from_sae(
        lm.model,
        sae,
        dataset=ds,
        context_size=ctx,
        store_batch_size_prompts=8,
        n_batches_in_buffer=2,
        train_batch_size_tokens=8 * ctx,
        device=str(lm.spec.device),
    )
    eval_cfg = EvalConfig(
        batch_size_prompts=8,
        n_eval_reconstruction_batches=n_batches,
        n_eval_sparsity_variance_batches=n_batches,
        compute_ce_loss=True,
        compute_kl=True,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
    )
    with torch.no_grad():
        evals, _ = run_evals(sae, store, lm.model, ActivationScaler(), eval_cfg, exclude_special_tokens=False)
    perf = evals.get("model_performance_preservation", {})
    recon = evals.get("reconstruction_quality", {})
    sparsity = evals.get("sparsity", {})
    metrics = {
        "l0": sparsity.get("l0"),
        "explained_variance": recon.get("explained_variance"),
        "mse": recon.get("mse"),
        "cossim": recon.get("cossim"),
        "ce_loss_score": perf.get("ce_loss_score"),
        "ce_loss_with_sae": perf.get("ce_loss_with_sae"),
        "ce_loss_without_sae": perf.get("ce_loss_without_sae"),
        "ce_loss_with_ablation": perf.get("ce_loss_with_ablation"),
        "kl_div_score": evals.get("model_behavior_preservation", {}).get("kl_div_score"),
    }
    meta = sae.cfg.metadata
    metrics["num_dead_features"] = getattr(meta, "num_dead_features", None)
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()}
