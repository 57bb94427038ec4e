"""Fixtures for inference tests: the tiny random model in-process, tiny SAEs saved in SAELens format, DB rows."""

import json

import pytest

TINY_ID = "tiny-inference"
TINY_LOADER = {"kind": "tiny", "params": {"n_layers": 2, "d_model": 64, "n_ctx": 256, "seed": 0}}
D_SAE = 96

# name → (architecture, hook, extra cfg)
SAES = {
    "0-res-std": ("standard", "blocks.0.hook_resid_post", {}),
    "1-res-topk": ("topk", "blocks.1.hook_resid_pre", {"k": 8}),
    "1-res-jump": ("jumprelu", "blocks.1.hook_resid_post", {}),
}


def write_sae(path, *, architecture: str, hook: str, d_in: int, d_sae: int, seed: int, extra: dict | None = None):
    """A random SAE in SAELens' on-disk format (cfg.json + sae_weights.safetensors)."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {
        "W_enc": torch.randn(d_in, d_sae, generator=g) * 0.5,
        "W_dec": torch.randn(d_sae, d_in, generator=g) * 0.2,
        "b_enc": torch.full((d_sae,), 0.05),
        "b_dec": torch.randn(d_in, generator=g) * 0.01,
    }
    if architecture == "jumprelu":
        tensors["threshold"] = torch.full((d_sae,), 0.2)
    if architecture == "gated":
        del tensors["b_enc"]
        tensors.update(
            b_gate=torch.full((d_sae,), 0.05), b_mag=torch.zeros(d_sae), r_mag=torch.randn(d_sae, generator=g) * 0.1
        )
    save_file(tensors, str(path / "sae_weights.safetensors"))
    cfg = {
        "architecture": architecture,
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "metadata": {"sae_lens_version": "6.54.12", "hook_name": hook},
        **(extra or {}),
    }
    (path / "cfg.json").write_text(json.dumps(cfg))
    return path


@pytest.fixture(scope="session")
def sae_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("saes")
    return {
        name: write_sae(root / name, architecture=arch, hook=hook, d_in=64, d_sae=D_SAE, seed=i, extra=extra)
        for i, (name, (arch, hook, extra)) in enumerate(SAES.items())
    }


@pytest.fixture(scope="session")
def tiny_lm():
    """The same object the eager-mode worker uses for TINY_ID, so API results compare exactly."""
    from inference.runtime import worker

    return worker.model_for(TINY_ID, TINY_LOADER)


@pytest.fixture
def tiny_db(db, sae_dirs):
    """Model row + a source set with the three SAEs + Feature rows for every index + one vector feature."""
    from features.models import Feature
    from tests.factories import ModelFactory, SourceFactory, SourceSetFactory

    model = ModelFactory(id=TINY_ID, loader=TINY_LOADER, inference_enabled=True, layers=2, dimension=64)
    source_set = SourceSetFactory(model=model, name="res-t")
    sources = {}
    for name in SAES:
        sources[name] = SourceFactory(
            source_set=source_set, model=model, name=name, sae_path=str(sae_dirs[name]), inference_enabled=True
        )
        Feature.objects.bulk_create(
            [
                Feature(model=model, source=sources[name], index=i, frac_nonzero=0.5 if i % 10 == 0 else 0.001)
                for i in range(D_SAE)
            ]
        )
    vec_set = SourceSetFactory(model=model, name="neuronpedia-resid-post")
    vec_source = SourceFactory(source_set=vec_set, model=model, name="0-neuronpedia-resid-post")
    import torch

    vector = (torch.randn(64, generator=torch.Generator().manual_seed(7)) * 0.5).tolist()
    vec_feature = Feature.objects.create(
        model=model,
        source=vec_source,
        index=12345678,
        has_vector=True,
        vector=vector,
        hook_name="blocks.0.hook_resid_post",
    )
    return {"model": model, "source_set": source_set, "sources": sources, "vector": vec_feature}
