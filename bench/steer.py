"""Steered decoding tokens/s ÷ plain Hugging Face `generate` tokens/s (SmolLM2-135M-Instruct, same prompt/length).

    python bench/steer.py [--tokens 64] [--repeats 3]

Both decode greedily for exactly N tokens on the same HF weights. The steered run adds an SAE-style
decoder direction at blocks.15.hook_resid_post with SIMPLE_ADDITIVE and returns 5 top logprobs per token
(what /api/steer does). Target: ratio ≥ 0.9.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from inference.runtime import steering  # noqa: E402
from inference.runtime.activations import tokenize  # noqa: E402
from inference.runtime.models import ModelSpec, load_model  # noqa: E402

PROMPT = "In a quiet village by the sea, the old lighthouse keeper"


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per function, runs alternated so a busy shared machine slows both alike."""
    for fn in fns.values():
        fn()  # warm-up
    runs = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - t0)
    return {name: statistics.median(r) for name, r in runs.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    lm = load_model(ModelSpec(kind="smollm2-gguf"))
    ids = tokenize(lm, PROMPT).ids
    n = args.tokens
    direction = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0))
    vec = [steering.SteerVector("blocks.15.hook_resid_post", (direction / direction.norm() * 8).tolist(), 1.0)]
    params = steering.SteerParams(n_tokens=n, temperature=0, stop_at_eos=False, n_logprobs=5)

    t = interleaved(
        {
            "hf": lambda: steering.hf_generate_baseline(lm, prompt_ids=ids, n_tokens=n),
            "steer": lambda: steering.generate(lm, prompt_ids=ids, types=["STEERED"], vectors=vec, params=params),
            "both": lambda: steering.generate(
                lm, prompt_ids=ids, types=["DEFAULT", "STEERED"], vectors=vec, params=params
            ),
        },
        args.repeats,
    )
    hf_s, steer_s, both_s = t["hf"], t["steer"], t["both"]
    hf_tps, steer_tps = n / hf_s, n / steer_s
    print(f"threads={torch.get_num_threads()} prompt_tokens={len(ids)} new_tokens={n}")
    print(f"HF generate (greedy):          {hf_tps:7.1f} tok/s  ({hf_s:.2f} s)")
    print(f"steered decoding (+logprobs):  {steer_tps:7.1f} tok/s  ({steer_s:.2f} s)")
    print(f"DEFAULT+STEERED in one batch:  {2 * n / both_s:7.1f} tok/s total ({both_s:.2f} s for both)")
    print(f"ratio steered / HF = {steer_tps / hf_tps:.2f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
