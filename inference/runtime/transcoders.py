"""Per-layer transcoders (MLP input → MLP output): training, saving, loading and quality.

One transcoder per layer reads `blocks.L.hook_resid_mid` and predicts `blocks.L.hook_mlp_out`: the hooks
circuit-tracer's TransformerLens backend replaces (`feature_input_hook` / `feature_output_hook`; the MLP's own
LayerNorm sits inside what the transcoder learns). SAELens loads transcoders but cannot train them, so the loop
is ours, on torch.

Architectures:
- `topk`: TopK while training (k latents per token). At save time one threshold, calibrated on the last buffer so
  that k latents per token fire on average (as BatchTopK does at inference), makes it a plain JumpReLU that
  both circuit-tracer and SAELens run exactly (neither has a TopK transcoder loader).
- `jumprelu`: JumpReLU with straight-through threshold gradients and an L0 penalty.
Either can have a skip connection (`W_skip`, a linear map from input to output added to the reconstruction).
Dead features are revived with the auxiliary-k loss (a few dead latents reconstruct the residual error).

Inputs and outputs are scaled to mean norm √d while training (one scalar per side and layer, estimated from
the first buffer) so one learning rate and one threshold init work across models; the scalars are folded
into the saved weights.

Directory of a set (`TRANSCODER SET LAYOUT`):
    config.yaml              circuit-tracer's cache config (model_kind transcoder_set, hooks, scan) plus ours
                             (model, width, k, architecture, skip, params); written last, when all layers are done
    metrics.json             set quality: CE loss clean / all MLPs replaced / MLPs zero-ablated, per-layer rows
    training.json            the parameters, written first; a restart with other parameters is refused
    layer_{L}.safetensors    circuit-tracer's per-layer file (W_enc [d_tc, d], W_dec, b_enc, b_dec,
                             activation_function.threshold, W_skip) — `load_transcoders_from_cache` reads these
    layer_{L}/               a SAELens directory (cfg.json jumprelu[_skip]_transcoder, sae_weights.safetensors,
                             metrics.json) — `SAE.load_from_disk` / `JumpReLUTranscoder.load_from_disk`
    .pass_{A}-{B}.pt         while layers A..B train together: their weights, optimiser state, step and buffer
                             position, saved every CHECKPOINT_SECONDS; removed once the pass's layers are written
A layer is finished when `layer_{L}/metrics.json` exists (the directory appears by an atomic rename after the
circuit-tracer file is written); training resumes at the first unfinished layer, and a pass of several layers
resumes from its checkpoint at the step it had reached.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from inference.runtime.corpus import Contexts
from inference.runtime.models import LoadedModel

ARCHITECTURES = ("topk", "jumprelu")
INPUT_HOOK = "hook_resid_mid"
OUTPUT_HOOK = "hook_mlp_out"
# A pass of many layers (the demo trains all 30 in one) would otherwise lose minutes of steps to a kill.
CHECKPOINT_SECONDS = 60.0


@dataclass
class TranscoderParams:
    width: int = 2048
    arch: str = "topk"
    k: int = 32  # topk: active features per token (batch average)
    skip: bool = False
    tokens: int = 200_000  # training tokens per layer
    batch_size_tokens: int = 1024
    lr: float = 1e-3
    l0_coefficient: float = 2e-3  # jumprelu: weight of the (straight-through) L0 penalty
    jumprelu_bandwidth: float = 0.05  # jumprelu: width of the straight-through window, in scaled units
    aux_k: int = 256  # dead latents used by the auxiliary loss (capped at width // 2)
    aux_coefficient: float = 1 / 32
    dead_tokens: int = 20_000  # a latent silent for this many training tokens counts as dead for aux-k
    layers_per_pass: int = 1  # layers trained together from one model forward pass (faster, coarser resume)
    buffer_batches: int = 8  # activations of this many batches are shuffled together
    epochs: int = 1  # >1: `tokens / epochs` distinct tokens are run through the model once, kept in memory
    # (float16) and replayed, reshuffled, `epochs` times — on a CPU the forward pass costs far more than a step
    eval_contexts: int = 16  # held-out contexts (the last of the corpus) for quality
    seed: int = 0

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"Unknown transcoder architecture {self.arch!r}; one of {', '.join(ARCHITECTURES)}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a whole number ≥ 1 (got {self.epochs!r})")


@dataclass
class LayerQuality:
    layer: int
    explained_variance: float  # of the MLP output, on held-out tokens (BOS excluded)
    l0: float  # mean active features per token
    dead_fraction: float  # features that never fired on the held-out tokens
    mse: float
    eval_tokens: int
    first_loss: float  # training loss (normalised MSE + penalties) of the first and last tenth of steps
    last_loss: float
    train_seconds: float
    tokens_per_second: float
    resumed_at_step: int = 0  # >0: a kill interrupted this layer's pass, which went on from its checkpoint here
    dense_fraction: float | None = None  # features firing on over DENSE_FRACTION of the held-out tokens


@dataclass
class SetQuality:
    ce_loss_clean: float
    ce_loss_replaced: float  # every MLP replaced by its transcoder (reconstruction, no error term)
    ce_loss_zero_ablated: float  # every MLP output zeroed, for scale
    ce_loss_score: float  # (zero − replaced) / (zero − clean): 1 = as good as the real MLPs
    layers: list[LayerQuality] = field(default_factory=list)


@dataclass
class TranscoderSetInfo:
    path: Path
    model_name: str
    n_layers: int
    d_model: int
    width: int
    arch: str
    k: int | None
    skip: bool
    feature_input_hook: str
    feature_output_hook: str
    complete: bool
    finished_layers: list[int]
    quality: SetQuality | None


# progress(layer, done_tokens, total_tokens): after every training batch of `layer`
Progress = Callable[[int, int, int], None]


class _Trainee(torch.nn.Module):
    """One layer's transcoder while training, in scaled units."""

    def __init__(self, d_in: int, d_out: int, p: TranscoderParams, gen: torch.Generator):
        super().__init__()
        self.p = p
        w = torch.randn(p.width, d_in, generator=gen)
        # small encoder rows: the first (random) latents then add little noise, so the loss starts near 1
        self.W_enc = torch.nn.Parameter(0.1 * w / w.norm(dim=1, keepdim=True))
        d = torch.randn(p.width, d_out, generator=gen)
        self.W_dec = torch.nn.Parameter(d / d.norm(dim=1, keepdim=True))
        self.b_enc = torch.nn.Parameter(torch.zeros(p.width))
        self.b_dec = torch.nn.Parameter(torch.zeros(d_out))
        self.W_skip = torch.nn.Parameter(torch.zeros(d_out, d_in)) if p.skip else None
        self.log_threshold = torch.nn.Parameter(torch.zeros(p.width)) if p.arch == "jumprelu" else None
        self.register_buffer("topk_threshold", torch.tensor(0.0))  # set by calibrate_threshold (topk)
        self.register_buffer("silent_tokens", torch.zeros(p.width))

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """→ (reconstruction, pre-activations, which latents fired [width], L0 term for the loss)."""
        pre = x @ self.W_enc.T + self.b_enc
        fired = torch.zeros(self.p.width, dtype=torch.bool, device=x.device)
        if self.p.arch == "topk":
            # Decode from the k chosen rows only (gather, not a dense [B, width] @ [width, d] product): about
            # 20% less time per step on CPU at width 2048.
            vals, idx = pre.topk(min(self.p.k, self.p.width), dim=-1)
            vals = vals.relu()
            rows = self.W_dec.index_select(0, idx.flatten()).view(*idx.shape, -1)
            recon = torch.bmm(vals[:, None, :], rows)[:, 0] + self.b_dec
            fired[idx[vals > 0]] = True
            l0 = pre.new_zeros(())
        else:
            theta = self.log_threshold.exp()
            acts = _JumpReLU.apply(pre, theta, self.p.jumprelu_bandwidth)
            recon = acts @ self.W_dec + self.b_dec
            fired = (acts > 0).any(0)
            l0 = _Step.apply(pre, theta, self.p.jumprelu_bandwidth).sum(-1).mean()
        if self.W_skip is not None:
            recon = recon + x @ self.W_skip.T
        return recon, pre, fired, l0

    @torch.no_grad()
    def calibrate_threshold(self, x: torch.Tensor) -> None:
        """topk: the one threshold that keeps k active features per token on average over `x` — BatchTopK
        at inference is then a JumpReLU, independent of which tokens share a batch."""
        relu = (x @ self.W_enc.T + self.b_enc).relu().flatten()
        n = min(relu.numel(), self.p.k * x.shape[0])
        self.topk_threshold.copy_(relu.topk(n, sorted=False).values.min())

    def decode(self, acts: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = acts @ self.W_dec + self.b_dec
        return out + x @ self.W_skip.T if self.W_skip is not None else out

    def threshold(self) -> torch.Tensor:
        if self.p.arch == "jumprelu":
            return self.log_threshold.detach().exp()
        return self.topk_threshold.clamp_min(0).expand(self.p.width).clone()


def _rect(x: torch.Tensor) -> torch.Tensor:
    return ((x > -0.5) & (x < 0.5)).to(x)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, bw):
        ctx.save_for_backward(x, theta)
        ctx.bw = bw
        return x * (x > theta)

    @staticmethod
    def backward(ctx, g):
        x, theta = ctx.saved_tensors
        g_theta = (-(theta / ctx.bw) * _rect((x - theta) / ctx.bw) * g).sum(0)
        return (x > theta) * g, g_theta, None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, bw):
        ctx.save_for_backward(x, theta)
        ctx.bw = bw
        return (x > theta).to(x)

    @staticmethod
    def backward(ctx, g):
        x, theta = ctx.saved_tensors
        g_theta = (-(1.0 / ctx.bw) * _rect((x - theta) / ctx.bw) * g).sum(0)
        return torch.zeros_like(x), g_theta, None


def hook_names(layer: int) -> tuple[str, str]:
    return f"blocks.{layer}.{INPUT_HOOK}", f"blocks.{layer}.{OUTPUT_HOOK}"


def mlp_io(lm: LoadedModel, tokens: torch.Tensor, layers: list[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """MLP inputs and outputs [n_tokens, d] per layer, BOS position dropped (circuit-tracer zeroes it too)."""
    names = {n for layer in layers for n in hook_names(layer)}
    saved: dict[str, torch.Tensor] = {}

    def save(act, hook):
        saved[hook.name] = act[:, 1:].reshape(-1, act.shape[-1]).float()

    with torch.no_grad():
        lm.model.run_with_hooks(
            tokens.to(lm.spec.device),
            fwd_hooks=[(lambda n: n in names, save)],
            stop_at_layer=max(layers) + 1,
        )
    return {layer: (saved[hook_names(layer)[0]], saved[hook_names(layer)[1]]) for layer in layers}


class _Buffer:
    """Shuffled MLP activations for a group of layers. With one epoch they are refilled from the training
    contexts in order; with several, the distinct tokens are collected once and replayed, reshuffled."""

    def __init__(self, lm: LoadedModel, contexts: torch.Tensor, layers: list[int], p: TranscoderParams):
        self.lm, self.contexts, self.layers, self.p = lm, contexts, layers, p
        self.next_context = 0
        self.gen = torch.Generator().manual_seed(p.seed)
        self.data: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.cache: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None
        self.perm = torch.empty(0, dtype=torch.long)
        self.pos = 0
        self.size = 0
        self.refilled_from: tuple[int, torch.Tensor] = (0, self.gen.get_state())

    def _rows(self, n: int) -> list[int]:
        rows = [(self.next_context + i) % self.contexts.shape[0] for i in range(n)]  # epochs when short
        self.next_context = (self.next_context + n) % self.contexts.shape[0]
        return rows

    def _fill(self):
        self.refilled_from = (self.next_context, self.gen.get_state())
        per_context = self.contexts.shape[1] - 1
        if self.p.epochs > 1:
            if self.cache is None:
                distinct = max(self.p.tokens / self.p.epochs, self.p.batch_size_tokens)
                rows = self._rows(math.ceil(distinct / per_context))
                parts: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {layer: [] for layer in self.layers}
                for i in range(0, len(rows), 16):  # bounded peak memory: float32 for 16 contexts at a time
                    for layer, (x, y) in mlp_io(self.lm, self.contexts[rows[i : i + 16]], self.layers).items():
                        parts[layer].append((x.half(), y.half()))
                self.cache = {
                    layer: (torch.cat([x for x, _ in xs]), torch.cat([y for _, y in xs])) for layer, xs in parts.items()
                }
                self.size = len(rows) * per_context
            self.perm = torch.randperm(self.size, generator=self.gen)
            self.pos = 0
            return
        n = max(1, math.ceil(self.p.batch_size_tokens * self.p.buffer_batches / per_context))
        got = mlp_io(self.lm, self.contexts[self._rows(n)], self.layers)
        perm = torch.randperm(n * per_context, generator=self.gen)
        self.data = {layer: (x[perm], y[perm]) for layer, (x, y) in got.items()}
        self.pos, self.size = 0, n * per_context

    def next(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        b = self.p.batch_size_tokens
        if self.pos + b > self.size:
            self._fill()
        sl = slice(self.pos, self.pos + b)
        self.pos += b
        if self.cache is not None:
            idx = self.perm[sl]
            return {layer: (x[idx].float(), y[idx].float()) for layer, (x, y) in self.cache.items()}
        return {layer: (x[sl], y[sl]) for layer, (x, y) in self.data.items()}

    def state(self) -> dict:
        """Where the buffer is: enough to rebuild the current fill exactly (the contexts and the shuffle)."""
        return {"next_context": self.refilled_from[0], "gen": self.refilled_from[1], "pos": self.pos}

    def restore(self, state: dict) -> None:
        # with replayed epochs the cache is always built from the first contexts; only the shuffle differs
        if self.p.epochs == 1:
            self.next_context = state["next_context"]
        self.gen.set_state(state["gen"])
        self._fill()
        self.pos = state["pos"]

    def inputs(self, layer: int) -> torch.Tensor:
        """Recent MLP inputs of `layer` (one buffer's worth), to calibrate the saved threshold on."""
        if self.cache is not None:
            return self.cache[layer][0][: self.p.batch_size_tokens * self.p.buffer_batches].float()
        return self.data[layer][0]


def _scale(t: torch.Tensor) -> float:
    """The scalar that brings the mean row norm of `t` to √d."""
    return math.sqrt(t.shape[-1]) / float(t.norm(dim=-1).mean().clamp_min(1e-8))


def _train_step(tc: _Trainee, opt, x: torch.Tensor, y: torch.Tensor, p: TranscoderParams) -> float:
    recon, pre, fired, l0 = tc.forward_train(x)
    err = y - recon
    var = (y - y.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
    loss = err.pow(2).sum(-1).mean() / var
    if p.arch == "jumprelu":
        loss = loss + p.l0_coefficient * l0
    tc.silent_tokens.add_(x.shape[0]).masked_fill_(fired, 0)
    dead = (tc.silent_tokens > p.dead_tokens).nonzero()[:, 0]
    n_aux = min(p.aux_k, p.width // 2, dead.numel())
    if n_aux > 0:
        # aux-k: dead latents learn to explain what the live ones miss, so they come back to life
        dead_pre = pre[:, dead].relu()
        vals, idx = dead_pre.topk(n_aux, dim=-1)
        aux_recon = torch.zeros_like(dead_pre).scatter(-1, idx, vals) @ tc.W_dec[dead]
        target = err.detach()
        aux_var = (target - target.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
        loss = loss + p.aux_coefficient * (target - aux_recon).pow(2).sum(-1).mean() / aux_var
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(tc.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        tc.W_dec.div_(tc.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))
    return float(loss.detach())


def _saved_tensors(tc: _Trainee, s_in: float, s_out: float) -> dict[str, torch.Tensor]:
    """Fold the scaling into the weights: the saved transcoder maps raw MLP input to raw MLP output."""
    with torch.no_grad():
        out = {
            "W_enc": (tc.W_enc * s_in).contiguous(),  # [width, d_in]
            "W_dec": (tc.W_dec / s_out).contiguous(),  # [width, d_out]
            "b_enc": tc.b_enc.clone(),
            "b_dec": (tc.b_dec / s_out).clone(),
            "threshold": tc.threshold().contiguous(),
        }
        if tc.W_skip is not None:
            out["W_skip"] = (tc.W_skip * (s_in / s_out)).contiguous()  # [d_out, d_in]
    return {k: v.detach().float().cpu() for k, v in out.items()}


def _sae_lens_cfg(w: dict, layer: int, model_name: str) -> dict:
    skip = "W_skip" in w
    width, d_in = w["W_enc"].shape
    return {
        "architecture": "jumprelu_skip_transcoder" if skip else "jumprelu_transcoder",
        "d_in": d_in,
        "d_sae": width,
        "d_out": w["W_dec"].shape[1],
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            # without a 6.x version SAELens treats the config as legacy and rebuilds the metadata without ours
            "sae_lens_version": importlib.metadata.version("sae-lens"),
            "model_name": model_name,
            "hook_name": hook_names(layer)[0],
            "hook_name_out": hook_names(layer)[1],
            "prepend_bos": True,
        },
    }


def _write_layer(out_dir: Path, layer: int, w: dict, quality: LayerQuality, model_name: str) -> None:
    from safetensors.torch import save_file

    ct = {k: v for k, v in w.items() if k != "threshold"}
    ct["activation_function.threshold"] = w["threshold"]
    tmp_file = out_dir / f".layer_{layer}.safetensors.tmp"
    save_file(ct, str(tmp_file))
    tmp_file.rename(out_dir / f"layer_{layer}.safetensors")
    tmp_dir = out_dir / f".layer_{layer}.tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir()
    sae = {"W_enc": w["W_enc"].T.contiguous(), "W_dec": w["W_dec"], "b_enc": w["b_enc"], "b_dec": w["b_dec"]}
    sae["threshold"] = w["threshold"]
    if "W_skip" in w:
        sae["W_skip"] = w["W_skip"]
    save_file(sae, str(tmp_dir / "sae_weights.safetensors"))
    (tmp_dir / "cfg.json").write_text(json.dumps(_sae_lens_cfg(w, layer, model_name), indent=1))
    (tmp_dir / "metrics.json").write_text(json.dumps(asdict(quality), indent=1))
    final = out_dir / f"layer_{layer}"
    shutil.rmtree(final, ignore_errors=True)
    tmp_dir.rename(final)  # the layer counts as finished from here


def finished_layers(out_dir: Path) -> list[int]:
    out = []
    for p in Path(out_dir).glob("layer_*/metrics.json"):
        layer = int(p.parent.name.removeprefix("layer_"))
        if (Path(out_dir) / f"layer_{layer}.safetensors").exists():
            out.append(layer)
    return sorted(out)


def _encode_saved(w: dict, x: torch.Tensor) -> torch.Tensor:
    pre = x @ w["W_enc"].T + w["b_enc"]
    return pre * (pre > w["threshold"])


def _decode_saved(w: dict, acts: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    out = acts @ w["W_dec"] + w["b_dec"]
    return out + x @ w["W_skip"].T if "W_skip" in w else out


DENSE_FRACTION = 0.1  # a feature active on more tokens than this says little about any one of them


def layer_quality_eval(w: dict, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Explained variance of y, L0, dead and dense fractions and MSE of the saved-form transcoder `w` on (x, y)."""
    acts = _encode_saved(w, x)
    recon = _decode_saved(w, acts, x)
    resid = (y - recon).pow(2).sum()
    total = (y - y.mean(0)).pow(2).sum().clamp_min(1e-12)
    return {
        "explained_variance": float(1 - resid / total),
        "l0": float((acts > 0).sum(-1).float().mean()),
        "dead_fraction": float(((acts > 0).sum(0) == 0).float().mean()),
        "dense_fraction": float(((acts > 0).float().mean(0) > DENSE_FRACTION).float().mean()),
        "mse": float((y - recon).pow(2).mean()),
        "eval_tokens": int(x.shape[0]),
    }


def _split(contexts: Contexts, p: TranscoderParams) -> tuple[torch.Tensor, torch.Tensor]:
    toks = contexts.tokens
    n_eval = min(p.eval_contexts, max(1, toks.shape[0] // 5))
    if toks.shape[0] - n_eval < 1:
        raise ValueError(f"The corpus has {toks.shape[0]} contexts; transcoder training needs at least 2")
    return toks[:-n_eval], toks[-n_eval:]


def _checkpoint_path(out_dir: Path, layers: list[int]) -> Path:
    return out_dir / f".pass_{layers[0]}-{layers[-1]}.pt"


def _checkpoint_load(path: Path | None, layers: list[int]) -> dict | None:
    if path is None or not path.exists():
        return None
    try:
        ckpt = torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 — a checkpoint cut short by a kill is only lost time, never an error
        return None
    return ckpt if ckpt.get("layers") == layers else None


def _checkpoint_save(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.rename(path)  # atomic: a kill while saving leaves the previous checkpoint


def _train_group(
    lm: LoadedModel,
    train: torch.Tensor,
    held: torch.Tensor,
    layers: list[int],
    p: TranscoderParams,
    progress,
    checkpoint: Path | None = None,
    checkpoint_every: float = CHECKPOINT_SECONDS,
) -> dict[int, tuple[dict, LayerQuality]]:
    gen = torch.Generator().manual_seed(p.seed + 1000 * layers[0])
    buf = _Buffer(lm, train, layers, p)
    ckpt = _checkpoint_load(checkpoint, layers)
    trainees = {}
    n_steps = max(1, p.tokens // p.batch_size_tokens)
    if ckpt is None:
        first = buf.next()
        scales = {layer: (_scale(x), _scale(y)) for layer, (x, y) in first.items()}
        for layer in layers:
            x, y = first[layer]
            s_in, s_out = scales[layer]
            tc = _Trainee(x.shape[1], y.shape[1], p, gen)
            with torch.no_grad():
                tc.b_dec.copy_((y * s_out).mean(0))
                if p.arch == "jumprelu":  # start with about 4k of `width` latents above threshold
                    pre = (x * s_in) @ tc.W_enc.T
                    q = 1 - min(0.5, 4 * p.k / p.width)
                    tc.log_threshold.fill_(math.log(max(1e-3, float(pre.quantile(q)))))
            trainees[layer] = tc
        start, pending, spent = 0, first, 0.0
        losses: dict[int, list[float]] = {layer: [] for layer in layers}
        seconds = dict.fromkeys(layers, 0.0)
    else:
        # the buffer is rebuilt exactly (same contexts, same shuffle): the resumed pass trains on the batches the
        # killed one would have, so its result is the uninterrupted one
        buf.restore(ckpt["buffer"])
        scales = {layer: tuple(ckpt["scales"][layer]) for layer in layers}
        for layer in layers:
            w_enc = ckpt["trainees"][layer]["W_enc"]
            tc = _Trainee(w_enc.shape[1], ckpt["trainees"][layer]["W_dec"].shape[1], p, gen)
            tc.load_state_dict(ckpt["trainees"][layer])
            trainees[layer] = tc
        start, pending, spent = ckpt["step"], None, ckpt["wall"]
        losses, seconds = ckpt["losses"], ckpt["seconds"]
    opts = {layer: torch.optim.Adam(tc.parameters(), lr=p.lr, betas=(0.9, 0.999)) for layer, tc in trainees.items()}
    if ckpt is not None:
        for layer, opt in opts.items():
            opt.load_state_dict(ckpt["optimizers"][layer])
    started = last_saved = time.monotonic()
    with torch.enable_grad():  # load_model() switches autograd off process-wide
        for step in range(start, n_steps):
            batch, pending = (pending if pending is not None else buf.next()), None
            # linear warmup over the first 5% of steps (≤ 20), linear decay over the last 20%
            lr = p.lr * min(1.0, (step + 1) / min(20, max(1, n_steps // 20))) * min(1.0, 5 * (n_steps - step) / n_steps)
            for layer in layers:
                t0 = time.monotonic()
                for g in opts[layer].param_groups:
                    g["lr"] = lr
                s_in, s_out = scales[layer]
                x, y = batch[layer]
                losses[layer].append(_train_step(trainees[layer], opts[layer], x * s_in, y * s_out, p))
                seconds[layer] += time.monotonic() - t0
                if progress:
                    progress(layer, (step + 1) * p.batch_size_tokens, n_steps * p.batch_size_tokens)
            if checkpoint is not None and step + 1 < n_steps and time.monotonic() - last_saved >= checkpoint_every:
                _checkpoint_save(checkpoint, {
                    "layers": layers, "step": step + 1, "buffer": buf.state(), "wall": spent + time.monotonic() - started,
                    "scales": {layer: list(scales[layer]) for layer in layers}, "losses": losses, "seconds": seconds,
                    "trainees": {layer: trainees[layer].state_dict() for layer in layers},
                    "optimizers": {layer: opts[layer].state_dict() for layer in layers},
                })  # fmt: skip
                last_saved = time.monotonic()
    wall = spent + time.monotonic() - started
    if p.arch == "topk":
        for layer in layers:
            trainees[layer].calibrate_threshold(buf.inputs(layer) * scales[layer][0])
    held_io = mlp_io(lm, held, layers)
    out = {}
    for layer in layers:
        w = _saved_tensors(trainees[layer], *scales[layer])
        q = layer_quality_eval(w, *held_io[layer])
        tenth = max(1, n_steps // 10)
        # tokens/s counts the model forward passes too (shared by the group), as SAE training's figure does
        share = wall * seconds[layer] / max(1e-9, sum(seconds.values()))
        out[layer] = (
            w,
            LayerQuality(
                layer=layer,
                first_loss=sum(losses[layer][:tenth]) / tenth,
                last_loss=sum(losses[layer][-tenth:]) / tenth,
                train_seconds=round(share, 2),
                resumed_at_step=start,
                tokens_per_second=round(n_steps * p.batch_size_tokens / max(1e-9, share), 1),
                **q,
            ),
        )
    return out


def transcoders_train(
    lm: LoadedModel,
    contexts: Contexts,
    params: TranscoderParams,
    out_dir: Path,
    *,
    model_name: str = "",
    progress: Progress | None = None,
    checkpoint_every: float = CHECKPOINT_SECONDS,
) -> SetQuality:
    """Train (or resume) one transcoder per layer into `out_dir`; returns the set's quality.

    Layers already finished in `out_dir` are kept as they are. A pass of several layers (`layers_per_pass`) saves
    its state every `checkpoint_every` seconds, so a kill loses at most that much of its training.
    `progress(layer, done_tokens, total_tokens)` runs after every batch; raising from it stops training.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recorded = out_dir / "training.json"
    mine = {"model_name": model_name, "params": asdict(params)}
    if recorded.exists():
        theirs = json.loads(recorded.read_text())
        if theirs != mine:
            raise ValueError(f"{out_dir} holds transcoders trained with other parameters: {theirs}")
    else:
        recorded.write_text(json.dumps(mine, indent=1))
    train, held = _split(contexts, params)
    done = set(finished_layers(out_dir))
    todo = [layer for layer in range(lm.n_layers) if layer not in done]
    for i in range(0, len(todo), params.layers_per_pass):
        group = todo[i : i + params.layers_per_pass]
        # one layer's pass is short, and its finished file is the resume point already
        ckpt = _checkpoint_path(out_dir, group) if len(group) > 1 else None
        trained = _train_group(lm, train, held, group, params, progress, ckpt, checkpoint_every)
        for layer, (w, quality) in trained.items():
            _write_layer(out_dir, layer, w, quality, model_name)
        if ckpt is not None:
            ckpt.unlink(missing_ok=True)
    for stale in out_dir.glob(".pass_*.pt*"):  # a pass killed while writing its layers resumed as a smaller one
        stale.unlink()
    quality = set_quality(lm, out_dir, held)
    (out_dir / "metrics.json").write_text(json.dumps(asdict(quality), indent=1))
    _write_config(out_dir, lm, params, model_name)
    return quality


def _write_config(out_dir: Path, lm: LoadedModel, params: TranscoderParams, model_name: str) -> None:
    import yaml

    config = {
        # read by circuit-tracer (utils/caching.py: load_transcoders_from_cache)
        "model_kind": "transcoder_set",
        "feature_input_hook": INPUT_HOOK,
        "feature_output_hook": OUTPUT_HOOK,
        "scan": model_name or out_dir.name,
        "model_name": model_name,
        # ours
        "n_layers": lm.n_layers,
        "d_model": lm.d_model,
        "width": params.width,
        "architecture": params.arch,
        "k": params.k if params.arch == "topk" else None,
        "skip": params.skip,
        "params": asdict(params),
    }
    tmp = out_dir / ".config.yaml.tmp"
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.rename(out_dir / "config.yaml")


def load_layer_weights(out_dir: Path, layer: int) -> dict[str, torch.Tensor]:
    """The saved-form tensors of one layer (circuit-tracer's file; `threshold` renamed)."""
    from safetensors.torch import load_file

    w = load_file(str(Path(out_dir) / f"layer_{layer}.safetensors"))
    w["threshold"] = w.pop("activation_function.threshold")
    return w


def set_quality(lm: LoadedModel, out_dir: Path, held: torch.Tensor) -> SetQuality:
    """CE loss on `held` clean, with every MLP replaced by its transcoder, and with every MLP zeroed."""
    weights = {layer: load_layer_weights(out_dir, layer) for layer in range(lm.n_layers)}
    inputs: dict[int, torch.Tensor] = {}

    def keep_input(act, hook):
        inputs[int(hook.name.split(".")[1])] = act

    def replace(act, hook):
        layer = int(hook.name.split(".")[1])
        x = inputs[layer]
        w = weights[layer]
        return _decode_saved(w, _encode_saved(w, x), x).to(act.dtype)

    def zero(act, hook):  # noqa: ARG001
        return torch.zeros_like(act)

    held = held.to(lm.spec.device)
    with torch.no_grad():
        clean = float(lm.model(held, return_type="loss"))
        replaced = float(
            lm.model.run_with_hooks(
                held,
                return_type="loss",
                fwd_hooks=[
                    (lambda n: n.endswith(INPUT_HOOK), keep_input),
                    (lambda n: n.endswith(OUTPUT_HOOK), replace),
                ],
            )
        )
        zeroed = float(
            lm.model.run_with_hooks(held, return_type="loss", fwd_hooks=[(lambda n: n.endswith(OUTPUT_HOOK), zero)])
        )
    layers = [
        LayerQuality(**json.loads((Path(out_dir) / f"layer_{i}" / "metrics.json").read_text()))
        for i in range(lm.n_layers)
    ]
    return SetQuality(
        ce_loss_clean=clean,
        ce_loss_replaced=replaced,
        ce_loss_zero_ablated=zeroed,
        ce_loss_score=(zeroed - replaced) / (zeroed - clean) if zeroed != clean else float("nan"),
        layers=layers,
    )


def transcoder_set_info(path: Path) -> TranscoderSetInfo:
    """What a set directory holds (finished or not), read from its files only."""
    import yaml

    path = Path(path)
    complete = (path / "config.yaml").exists()
    if complete:
        cfg = yaml.safe_load((path / "config.yaml").read_text())
        p = cfg.get("params") or {}
        model_name = cfg.get("model_name", "")
    else:
        rec = json.loads((path / "training.json").read_text())
        p, model_name = rec["params"], rec["model_name"]
        cfg = {}
    layers = finished_layers(path)
    d_model = n_layers = 0
    if layers:
        w = json.loads((path / f"layer_{layers[0]}" / "cfg.json").read_text())
        d_model = w["d_in"]
    quality = None
    if complete and (path / "metrics.json").exists():
        m = json.loads((path / "metrics.json").read_text())
        m["layers"] = [LayerQuality(**row) for row in m["layers"]]
        quality = SetQuality(**m)
    n_layers = cfg.get("n_layers", len(layers))
    return TranscoderSetInfo(
        path=path,
        model_name=model_name,
        n_layers=n_layers,
        d_model=cfg.get("d_model", d_model),
        width=p.get("width", 0),
        arch=p.get("arch", ""),
        k=p.get("k") if p.get("arch") == "topk" else None,
        skip=bool(p.get("skip")),
        feature_input_hook=cfg.get("feature_input_hook", INPUT_HOOK),
        feature_output_hook=cfg.get("feature_output_hook", OUTPUT_HOOK),
        complete=complete,
        finished_layers=layers,
        quality=quality,
    )


def transcoder_set_load(
    path: Path, *, device: str = "cpu", dtype: torch.dtype = torch.float32, scan: str | None = None
):
    """circuit-tracer's TranscoderSet for a finished set directory, through circuit-tracer's own cache loader."""
    from inference.runtime.circuit_tracer_compat import ct_import

    path = Path(path).resolve()
    if not (path / "config.yaml").exists():
        raise FileNotFoundError(f"{path} is not a finished transcoder set (no config.yaml)")
    caching = ct_import("utils.caching")
    tset, config = caching.load_transcoders_from_cache(
        path.name,
        cache_dir=str(path.parent),
        device=torch.device(device),
        dtype=dtype,
        lazy_encoder=False,
        lazy_decoder=False,
    )
    if scan is not None:
        tset.scan = scan
    return tset
