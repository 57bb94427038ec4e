"""Attribution graphs (issue 25), three parts, each against a baseline measured in the same run:

    python bench/graph.py [--parts training,generate,draw] [--model smollm2|tiny] [--layer 15] [--width 2048]
                          [--k 32] [--tokens 40960] [--graph-model smollm2|tiny] [--repeats 3] [--no-worker]
    python bench/graph.py --demo-sizes [--width 1024 --k 32 --tokens 30000 --layers-per-pass 30 --epochs 6 --lr 1e-3]

training: transcoder training tokens/s ÷ SAE training tokens/s on the same layer. The same corpus contexts
(Brown, 128 tokens), width, k and token count for both. The SAE is SAELens's TopK trainer on
`blocks.L.hook_resid_mid` (the transcoder's input, via inference/runtime/training.py); the transcoder is ours
(inference/runtime/transcoders.py), one layer, layers_per_pass 1. Both figures count the model forward passes,
which dominate on CPU. No target yet.

generate: memicos's whole generation of one graph ÷ plain circuit-tracer's, same model, transcoders, prompt and
parameters (Neuronpedia's defaults: max_n_logits 10, desired_logit_prob 0.95, node 0.8 / edge 0.98, batch 48).
Ours is `graph_generate_start` on a scratch database (`bench_graph`) with eager Celery, so the job runs inline
through the job machinery: the Graph and Job rows, `graph_generate_run` (explanations for clerps, attribution,
scores, pruning, the JSON with our ids and metadata, gzip, the store) and the row updates. The baseline is
circuit-tracer 0.5.0's `attribute` + `create_graph_files` (prune, node/link builders, tokenizer from disk, the
JSON file) on the same replacement model. Unless --no-worker, a third variant sends the same job through Celery
to a real `celery worker -Q gpu_batch` (its own process and model) and waits for it with `graph_generate_wait`, as
POST /api/graph/generate does (polling every 0.25 s); its ratio is printed too. After one warm-up each, the
variants run back to back --repeats times (their order rotating); a ratio is the median of the rounds' ratios (a
shared machine's load drifts between rounds more than within one), the times are medians. Target: ratio ≤ 1.15. Transcoders: --graph-model tiny, a width-512 set
of the tiny test model (over a 42-token prompt); smollm2, a width-512 k-16 set of SmolLM2 trained here on a few
thousand tokens (kept under var/bench/; quality is irrelevant to the timing), graphs of at most
--max-feature-nodes features.

draw: the graph page's time to first draw in Chromium (Playwright, headless) for a graph of ≥ 5,000 links: the
tiny model's wide set over a long prompt (node threshold 0.95, 3000 feature nodes), shown at pruningThreshold=1
so every node and link is drawn. Measured from navigation start to the page's `graph:drawn` performance mark
(after layout, the canvas links and the SVG nodes); the baseline is the same load's `graph:data` mark (the page
served, the JSON fetched and parsed): what the page cannot avoid before drawing. Median of --draw-repeats reloads
after a warm load. Target: ≤ 1000 ms.

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
os.environ.setdefault("MEMICOS_TEST_DB", "bench_graph")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memicos_site.settings")
PROMPT = "The capital of France is"
LONG_PROMPT = (
    "The quick brown fox jumps over the lazy dog because the capital of France is Paris and the river Seine is long"
    " and slow, while the old man in the boat sings a song about the sea and the"
)
TINY_LOADER = {"kind": "tiny", "params": {"n_layers": 2, "d_model": 64, "n_ctx": 256, "seed": 0}}
SMOLLM2_LOADER = {"kind": "smollm2-gguf"}


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
        epochs=args.epochs,
        lr=args.lr,
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
            f"  dense {row.dense_fraction:.3f}"
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


# --- generate and draw ----------------------------------------------------------------------------------------


def django_setup(tmp: Path):
    """Django on the scratch database, eager Celery (jobs run inline), the graph store in `tmp`."""
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    connection.creation.create_test_db(verbosity=0, keepdb=True)
    settings.VAR_DIR = tmp
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from memicos_site.celery import app

    app.conf.task_always_eager = True


def transcoder_set(lm, name: str, params) -> Path:
    """A finished transcoder set for `lm` with `params`, trained once and kept under var/bench/."""
    from inference.runtime import transcoders as T
    from inference.runtime.corpus import corpus_contexts

    key = "-".join(f"{k}{v}" for k, v in sorted(asdict(params).items()) if k in ("width", "k", "tokens"))
    out = ROOT / "var" / "bench" / "graph-transcoders" / f"{name}-{key}"
    if not (out / "training.json").exists() or not T.transcoder_set_info(out).complete:
        started = time.monotonic()
        contexts = corpus_contexts(lm.tokenizer, "brown", context_size=32, max_tokens=max(16_384, 2 * params.tokens))
        T.transcoders_train(lm, contexts, params, out, model_name=name)
        print(f"trained the {name} transcoder set in {time.monotonic() - started:.0f} s ({out})")
    return out


def graph_model(model_id: str, loader: dict, set_dir: Path, set_name: str):
    from features.models import Model
    from graphs.models import Graph
    from graphs.services.transcoders import transcoder_set_register

    Graph.objects.filter(model_id=model_id).delete()
    Model.objects.filter(id=model_id).delete()
    n_layers = loader.get("params", {}).get("n_layers", 30)
    model = Model.objects.create(id=model_id, loader=loader, inference_enabled=True, layers=n_layers)
    transcoder_set_register(model=model, set_dir=set_dir, set_name=set_name, dataset="brown")
    return model


def bench_generate(args, tmp: Path) -> None:
    import statistics

    import torch

    from inference.runtime import graphs as G
    from inference.runtime import transcoders as T
    from inference.runtime import worker
    from inference.runtime.circuit_tracer_compat import ct_import

    if args.graph_model == "tiny":
        model_id, loader = "bench-graph-tiny", TINY_LOADER
        params = T.TranscoderParams(width=512, k=16, tokens=8192, batch_size_tokens=256, eval_contexts=8, lr=3e-3)
    else:
        model_id, loader = "bench-graph-smollm2", SMOLLM2_LOADER
        params = T.TranscoderParams(width=512, k=16, tokens=2048, batch_size_tokens=256, eval_contexts=4,
                                    layers_per_pass=30)  # fmt: skip
    from graphs.models import Graph
    from graphs.services.graphs import _replacement_model, graph_generate_start, graph_generate_wait
    from graphs.services.transcoders import transcoder_set_path
    from memicos_site.celery import app

    lm = worker.model_for(model_id, loader)  # the object the eager job's worker code uses
    set_dir = transcoder_set(lm, args.graph_model, params)
    model = graph_model(model_id, loader, set_dir, "bench-tc")
    settings = {"maxFeatureNodes": args.max_feature_nodes}
    gp = G.GraphParams(max_feature_nodes=args.max_feature_nodes)
    attribute = ct_import("attribution.attribute").attribute
    create_graph_files = ct_import("utils.create_graph_files").create_graph_files
    tokenizer_dir = tmp / "tokenizer"  # create_graph_files loads the tokenizer by name: a local copy
    lm.tokenizer.save_pretrained(tokenizer_dir)
    prompt = LONG_PROMPT if args.graph_model == "tiny" else PROMPT  # the tiny model's graph of PROMPT is 36 nodes
    tokens = G.prompt_tokens(lm, prompt)
    counter = iter(range(10_000))

    def ours():
        graph = graph_generate_start(model=model, prompt=prompt, slug=f"g{next(counter)}", settings=settings)
        graph.refresh_from_db()
        assert graph.status == Graph.Status.READY, graph.status
        return graph

    rm = None

    def theirs():
        with torch.enable_grad():  # the worker code this process ran switched gradients off, as workers do
            graph = attribute(tokens, rm, max_n_logits=gp.max_n_logits, desired_logit_prob=gp.desired_logit_prob,
                              batch_size=gp.batch_size, max_feature_nodes=gp.max_feature_nodes)  # fmt: skip
        slug = f"ct{next(counter)}"
        create_graph_files(graph, slug, tmp / "ct", scan=model_id, node_threshold=gp.node_threshold,
                           edge_threshold=gp.edge_threshold)  # fmt: skip
        return json.loads((tmp / "ct" / f"{slug}.json").read_text())

    def via_worker():
        """The same job sent through Celery to a real gpu_batch worker, waited for as POST generate waits."""
        app.conf.task_always_eager = False
        try:
            graph = graph_generate_start(model=model, prompt=prompt, slug=f"w{next(counter)}", settings=settings)
        finally:
            app.conf.task_always_eager = True
        graph = graph_generate_wait(graph=graph, timeout_s=900)
        assert graph.status == Graph.Status.READY, (graph.status, graph.job.error)
        return graph

    variants = {"ours": ours, "theirs": theirs}
    proc = None
    if args.worker:
        proc = start_worker(tmp)
        variants["worker"] = via_worker
    try:
        started = time.monotonic()
        warm = ours()  # loads the model's replacement model once, as a worker keeps it
        _, rm = _replacement_model(model, transcoder_set_path(source_set=model.source_sets.get()))  # the same object
        rm.cfg.tokenizer_name = str(tokenizer_dir)
        warm_ct = theirs()
        if proc:
            via_worker()  # the worker loads its model and builds its replacement model
        print(f"warm-up (replacement model built once, kept): {time.monotonic() - started:.1f} s")
        runs = {name: [] for name in variants}
        cpu = {name: [] for name in variants}
        names = list(variants)
        for i in range(args.repeats):  # back to back, their order rotating: a shared machine's load drifts
            for name in names[i % len(names) :] + names[: i % len(names)]:
                t0, c0 = time.perf_counter(), time.process_time()
                variants[name]()
                runs[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=60)
    ours_s, theirs_s = statistics.median(runs["ours"]), statistics.median(runs["theirs"])
    ratio = statistics.median(o / t for o, t in zip(runs["ours"], runs["theirs"], strict=True))
    cpu_ratio = statistics.median(o / t for o, t in zip(cpu["ours"], cpu["theirs"], strict=True))
    job = warm.job
    job.refresh_from_db()
    print(
        f"graph of {model_id} ({lm.n_layers} layers, width {params.width}), {tokens.numel()} tokens, max "
        f"{args.max_feature_nodes} feature nodes: ours {warm.n_nodes} nodes / {warm.n_links} links, circuit-tracer "
        f"{len(warm_ct['nodes'])} nodes / {len(warm_ct['links'])} links; our stages {job.result.get('timings')}"
    )
    print(
        f"circuit-tracer attribute + create_graph_files: {theirs_s:.2f} s (runs {[round(x, 2) for x in runs['theirs']]})"
    )
    print(f"memicos graph_generate job (eager):           {ours_s:.2f} s (runs {[round(x, 2) for x in runs['ours']]})")
    print(f"ratio memicos / circuit-tracer:               {ratio:.3f} (median of the {args.repeats} pairs' ratios)")
    print(f"  the same ratio in this process's CPU time:  {cpu_ratio:.3f} (less swayed by other processes' load)")
    if proc:
        w = runs["worker"]
        w_ratio = statistics.median(o / t for o, t in zip(w, runs["theirs"], strict=True))
        print(
            f"memicos job on a real worker (Celery, waited): {statistics.median(w):.2f} s (runs {[round(x, 2) for x in w]})"
        )
        print(f"ratio real worker / circuit-tracer:           {w_ratio:.3f}")


def start_worker(tmp: Path):
    """A `celery worker` for gpu_batch on the bench database, its graph store in `tmp` (as the tests start one)."""
    import subprocess
    from urllib.parse import quote

    from django.db import connection

    from memicos_site.celery import app

    s = connection.settings_dict
    host = s["HOST"] or "127.0.0.1"
    host = quote(host, safe="") if host.startswith("/") else host
    port = f":{s['PORT']}" if s["PORT"] else ""
    password = f":{quote(s['PASSWORD'])}" if s["PASSWORD"] else ""
    env = dict(os.environ, MEMICOS_ENV="test", CELERY_TASK_ALWAYS_EAGER="0", MEMICOS_VAR_DIR=str(tmp),
               DATABASE_URL=f"postgresql://{s['USER']}{password}@{host}{port}/{s['NAME']}", PYTHONPATH=str(ROOT))  # fmt: skip
    name = f"bench-graph-{os.getpid()}"
    cmd = [sys.executable, "-m", "celery", "-A", "memicos_site", "worker", "-Q", "gpu_batch", "-n", f"{name}@%h",
           "-P", "solo", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {proc.returncode}")
        if any(name in next(iter(r)) for r in app.control.ping(timeout=0.5) or []):
            return proc
    proc.terminate()
    raise RuntimeError("the worker did not answer within 120 s")


def bench_draw(args, tmp: Path) -> None:
    import gzip
    import statistics

    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread

    from graphs.models import Graph
    from graphs.services.storage import graph_object_put
    from inference.runtime import graphs as G
    from inference.runtime import transcoders as T
    from inference.runtime import worker

    model_id = "bench-graph-draw"
    lm = worker.model_for(model_id, TINY_LOADER)
    params = T.TranscoderParams(width=512, k=16, tokens=8192, batch_size_tokens=256, eval_contexts=8, lr=3e-3)
    set_dir = transcoder_set(lm, "tiny", params)
    model = graph_model(model_id, TINY_LOADER, set_dir, "bench-tc")
    rm = G.replacement_model_build(lm, T.transcoder_set_load(set_dir, scan=model_id))
    result = G.graph_generate(lm, rm, prompt=LONG_PROMPT, model_id=model_id, slug="big",
                              params=G.GraphParams(node_threshold=0.95, max_feature_nodes=3000))  # fmt: skip
    assert result.n_links >= 5000, result.n_links
    body = gzip.compress(json.dumps(result.graph, separators=(",", ":")).encode())
    graph_object_put(key="bench/big.json", body=body)
    Graph.objects.create(model=model, slug="big", prompt=LONG_PROMPT, storage_key="bench/big.json",
                         prompt_tokens=result.prompt_tokens, n_nodes=result.n_nodes, n_links=result.n_links)  # fmt: skip
    server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop in this thread; the server has its own
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{server.port}/{model_id}/graph?slug=big&pruningThreshold=1"
    marks = "() => ['graph:data', 'graph:drawn'].map(n => performance.getEntriesByName(n)[0].startTime)"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(url)  # warm: static files, the connection
        page.wait_for_selector("body[data-graph-drawn]", state="attached", timeout=60_000)
        data_ms, drawn_ms = [], []
        for _ in range(args.draw_repeats):
            page.reload()
            page.wait_for_selector("body[data-graph-drawn]", state="attached", timeout=60_000)
            d, w = page.evaluate(marks)
            data_ms.append(d)
            drawn_ms.append(w)
        n_drawn = page.locator("#graph-svg .graph-node").count()
        browser.close()
    server.terminate()
    assert n_drawn == result.n_nodes, (n_drawn, result.n_nodes)
    data, drawn = statistics.median(data_ms), statistics.median(drawn_ms)
    print(f"graph page: {result.n_nodes} nodes, {result.n_links} links, {len(body):,} bytes gzipped, all drawn")
    print(
        f"page served + graph JSON fetched and parsed (graph:data): {data:.0f} ms (runs {[round(x) for x in data_ms]})"
    )
    print(
        f"time to first draw (graph:drawn):                        {drawn:.0f} ms (runs {[round(x) for x in drawn_ms]})"
    )
    print(f"ratio first draw / JSON loaded:                          {drawn / data:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="training,generate,draw")
    ap.add_argument("--model", default="smollm2", choices=["smollm2", "tiny"])
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=40_960)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--demo-sizes", action="store_true")
    ap.add_argument("--layers-per-pass", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1, help="--demo-sizes: replays of the distinct tokens")
    ap.add_argument("--lr", type=float, default=1e-3, help="--demo-sizes: the transcoders' learning rate")
    ap.add_argument("--arch", default="topk")
    ap.add_argument("--skip", action="store_true")
    ap.add_argument("--max-feature-nodes", type=int, default=None, help="default 1000 (tiny) / 200 (smollm2)")
    ap.add_argument("--graph-model", default="smollm2", choices=["smollm2", "tiny"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--draw-repeats", type=int, default=5)
    ap.add_argument("--no-worker", dest="worker", action="store_false", help="generate: skip the real-worker runs")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.demo_sizes:
        args.max_feature_nodes = args.max_feature_nodes or 1000
        demo_sizes(args)
        return
    args.max_feature_nodes = args.max_feature_nodes or (1000 if args.graph_model == "tiny" else 200)
    parts = [p for p in args.parts.split(",") if p]
    if unknown := set(parts) - {"training", "generate", "draw"}:
        ap.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    if "training" in parts:
        bench_training(args)
    if "generate" in parts or "draw" in parts:
        with tempfile.TemporaryDirectory(prefix="bench-graph-") as tmp:
            django_setup(Path(tmp))
            if "generate" in parts:
                bench_generate(args, Path(tmp))
            if "draw" in parts:
                bench_draw(args, Path(tmp))


if __name__ == "__main__":
    main()
