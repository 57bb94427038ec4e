"""search-all over 4 SAEs at different layers ÷ one forward to the deepest of them (SmolLM2-135M-Instruct).

    python bench/search_all.py [--repeats 15] [--d-sae 4608]

The SAEs are random SAELens-format directories (standard architecture, d_sae = 8 × d_model) at
blocks.{5,12,20,27}.hook_resid_post, written to a temp dir; the text is 64 tokens. The baseline is a bare
`run_with_cache` of the deepest hook with `stop_at_layer`, no SAE. Target: ratio ≤ 1.3.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from sae_lens import SAE  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from inference.runtime import activations as acts  # noqa: E402
from inference.runtime.models import ModelSpec, load_model  # noqa: E402

LAYERS = (5, 12, 20, 27)


def write_sae(path: Path, *, hook: str, d_in: int, d_sae: int, seed: int) -> Path:
    g = torch.Generator().manual_seed(seed)
    path.mkdir(parents=True)
    save_file(
        {
            "W_enc": torch.randn(d_in, d_sae, generator=g) / d_in**0.5,
            "W_dec": torch.randn(d_sae, d_in, generator=g) / d_in**0.5,
            "b_enc": torch.zeros(d_sae),
            "b_dec": torch.zeros(d_in),
        },
        str(path / "sae_weights.safetensors"),
    )
    cfg = {"architecture": "standard", "d_in": d_in, "d_sae": d_sae, "dtype": "float32",
           "metadata": {"sae_lens_version": "6.54.12", "hook_name": hook}}  # fmt: skip
    (path / "cfg.json").write_text(json.dumps(cfg))
    return path


def text_of(lm, n_tokens: int) -> str:
    base = "The history of the lighthouse begins with fires lit on hills to guide ships home at night. " * 8
    ids = lm.tokenizer(base, add_special_tokens=False)["input_ids"][: n_tokens - 1]
    return lm.tokenizer.decode(ids)


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    for fn in fns.values():
        fn()
    runs = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - t0)
    return {name: statistics.median(r) for name, r in runs.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--d-sae", type=int, default=4608)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    lm = load_model(ModelSpec(kind="smollm2-gguf"))
    text = text_of(lm, 64)
    ids = acts.tokenize(lm, text).ids
    with tempfile.TemporaryDirectory() as tmp:
        saes = {
            f"{layer}-res": SAE.load_from_disk(
                str(
                    write_sae(
                        Path(tmp) / str(layer),
                        hook=f"blocks.{layer}.hook_resid_post",
                        d_in=lm.d_model,
                        d_sae=args.d_sae,
                        seed=layer,
                    )
                )
            )
            for layer in LAYERS
        }
    deepest = f"blocks.{max(LAYERS)}.hook_resid_post"
    tokens = torch.tensor([ids])

    def forward_only():
        lm.model.run_with_cache(tokens, names_filter=lambda n: n == deepest, stop_at_layer=max(LAYERS) + 1)

    def search():
        acts.search_all(lm, saes=saes, text=text, sort_indexes=[], ignore_bos=True, num_results=50)

    t = interleaved({"forward": forward_only, "search": search}, args.repeats)
    print(f"threads={torch.get_num_threads()} tokens={len(ids)} saes={len(saes)} d_sae={args.d_sae} layers={LAYERS}")
    print(f"one forward to layer {max(LAYERS)}: {t['forward'] * 1000:7.1f} ms (p50)")
    print(f"search-all over 4 SAEs:    {t['search'] * 1000:7.1f} ms (p50)")
    print(f"ratio search-all / forward = {t['search'] / t['forward']:.2f}  (target <= 1.3)")


if __name__ == "__main__":
    main()
