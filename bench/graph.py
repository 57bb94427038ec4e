"""Transcoder training tokens/s ÷ SAE training tokens/s on the same layer, in one run (issue 25, training part).

    python bench/graph.py [--model smollm2|tiny] [--layer 15] [--width 2048] [--k 32] [--tokens 40960]
    python bench/graph.py --demo-sizes [--width 1024 --k 32 --tokens 30000 --layers-per-pass 30]

Training: the same corpus contexts (Brown, 128 tokens), width, k and token count for both. The SAE is SAELens's
TopK trainer on `blocks.L.hook_resid_mid` (the transcoder's input, via inference/runtime/training.py); the
transcoder is ours (inference/runtime/transcoders.py), one layer, layers_per_pass 1. Both figures count the model
forward passes, which dominate on CPU. Printed: both tokens/s and their ratio (no target yet).

`--demo-sizes` (exploratory, not in run_all): trains a whole set for the model at the given sizes, prints the
per-layer quality and the set's CE figures, then times one graph ("The capital of France is").
"""

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MEMICOS_ENV", "test")


def load(model: str):
    from inference.runtime.models import ModelSpec, load_model

    if model == "tiny":
        return load_model(ModelSpec(kind="tiny", params={"n_layers": 2, "d_model": 64, "n_ctx": 256, "seed": 0}))
    return load_model(ModelSpec(kind="smollm2-gguf"))


def bench_training(args) -> None:
    from inference.runtime import transcoders as T
    from inference.runtime.corpus import corpus_contexts
    from inference.runtime.training import TrainParams, sae_train

    lm = load(args.model)
    layer = min(args.layer, lm.n_layers - 1)
    contexts = corpus_contexts(lm.tokenizer, "brown", context_size=128, max_tokens=max(200_000, 2 * args.tokens))
    with tempfile.TemporaryDirectory() as tmp:
        sae_params = TrainParams(
            hook=f"blocks.{layer}.hook_resid_mid",
            arch="topk",
            width=args.width,
            k=args.k,
            tokens=args.tokens,
            batch_size_tokens=args.batch,
            context_size=128,
            n_checkpoints=0,
            eval_batches=1,
        )
        sae = sae_train(lm, contexts, sae_params, Path(tmp) / "sae")
        tc_params = T.TranscoderParams(width=args.width, k=args.k, tokens=args.tokens, batch_size_tokens=args.batch)
        train, held = T._split(contexts, tc_params)
        started = time.monotonic()
        out = T._train_group(lm, train, held, [layer], tc_params, None)
        tc_seconds = time.monotonic() - started
    quality = out[layer][1]
    tc_tps = args.tokens / tc_seconds
    print(
        f"model {args.model}, layer {layer}, width {args.width}, k {args.k}, {args.tokens} tokens, batch {args.batch}"
    )
    print(f"SAE training (SAELens topk, resid_mid): {sae['train_tokens_per_second']:,.0f} tok/s")
    print(f"transcoder training (ours, topk):       {tc_tps:,.0f} tok/s (EV {quality.explained_variance:.3f})")
    print(f"ratio transcoder / SAE:                 {tc_tps / sae['train_tokens_per_second']:.2f}")


def demo_sizes(args) -> None:
    from inference.runtime import graphs as G
    from inference.runtime import transcoders as T
    from inference.runtime.corpus import corpus_contexts

    lm = load(args.model)
    contexts = corpus_contexts(lm.tokenizer, "brown", context_size=128, max_tokens=max(200_000, 2 * args.tokens))
    params = T.TranscoderParams(
        width=args.width,
        k=args.k,
        tokens=args.tokens,
        batch_size_tokens=args.batch,
        layers_per_pass=args.layers_per_pass,
        skip=args.skip,
        arch=args.arch,
    )
    out = Path(args.out or tempfile.mkdtemp(prefix="tc-demo-"))
    last = {"t": 0.0}

    def progress(layer, done, total):
        if time.monotonic() - last["t"] > 30:
            last["t"] = time.monotonic()
            print(f"  layer {layer}: {done}/{total} tokens", flush=True)

    started = time.monotonic()
    quality = T.transcoders_train(lm, contexts, params, out, model_name=args.model, progress=progress)
    train_s = time.monotonic() - started
    for row in quality.layers:
        print(
            f"layer {row.layer:2d}: EV {row.explained_variance:.3f}  L0 {row.l0:5.1f}  dead {row.dead_fraction:.3f}"
            f"  loss {row.first_loss:.3f}→{row.last_loss:.3f}"
        )
    print(json.dumps({k: v for k, v in asdict(quality).items() if k != "layers"}))
    print(f"training: {train_s:.0f} s for {lm.n_layers} layers ({out})")
    started = time.monotonic()
    rm = G.replacement_model_build(lm, T.transcoder_set_load(out))
    build_s = time.monotonic() - started
    result = G.graph_generate(
        lm,
        rm,
        prompt="The capital of France is",
        model_id=args.model,
        slug="bench",
        params=G.GraphParams(max_feature_nodes=args.max_feature_nodes),
    )
    print(
        f"graph: {result.seconds:.1f} s ({result.timings}), build {build_s:.1f} s; {result.n_nodes} nodes"
        f" ({result.n_feature_nodes} features), {result.n_links} links; replacement {result.replacement_score:.3f},"
        f" completeness {result.completeness_score:.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", choices=["smollm2", "tiny"])
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=40_960)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--demo-sizes", action="store_true")
    ap.add_argument("--layers-per-pass", type=int, default=1)
    ap.add_argument("--arch", default="topk")
    ap.add_argument("--skip", action="store_true")
    ap.add_argument("--max-feature-nodes", type=int, default=1000)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    demo_sizes(args) if args.demo_sizes else bench_training(args)


if __name__ == "__main__":
    main()
