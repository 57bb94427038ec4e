"""p50 of POST /api/activation/new over HTTP through Celery ÷ p50 of a bare in-process forward + encode.

    python bench/activation.py [--requests 30]

Starts, on a scratch database (`bench_inference`, kept between runs) and Redis DB 13 unless REDIS_URL
says otherwise: a gunicorn web server and `manage.py inference_worker` for SmolLM2-135M-Instruct, with a
random SAELens-format SAE (d_sae 4608) at blocks.15.hook_resid_post. The text is 64 tokens. The baseline
is `run_with_cache(stop_at_layer=16)` + `sae.encode` in this process. HTTP requests and baseline runs
alternate so a busy shared machine slows both alike. Target: ratio ≤ 1.5.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MEMICOS_ENV", "test")
os.environ.setdefault("MEMICOS_TEST_DB", "bench_inference")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memicos_site.settings")
MODEL_ID = "bench-smollm2"
LAYER = 15


def database_url(connection) -> str:
    s = connection.settings_dict
    host = s["HOST"] or "127.0.0.1"
    hostpart = quote(host, safe="") if host.startswith("/") else host
    port = f":{s['PORT']}" if s["PORT"] else ""
    password = f":{quote(s['PASSWORD'])}" if s["PASSWORD"] else ""
    return f"postgresql://{s['USER']}{password}@{hostpart}{port}/{s['NAME']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=30)
    args = ap.parse_args()

    import django

    django.setup()
    from django.db import connection

    connection.creation.create_test_db(verbosity=0, keepdb=True)
    import torch
    from sae_lens import SAE

    sys.path.insert(0, str(ROOT / "bench"))
    from search_all import text_of, write_sae

    from features.models import Feature, Model, Source, SourceSet
    from inference.runtime.models import ModelSpec, load_model
    from inference.selectors import inference_workers_alive

    tmp = tempfile.mkdtemp(prefix="bench-sae-")
    hook = f"blocks.{LAYER}.hook_resid_post"
    sae_dir = write_sae(Path(tmp) / "sae", hook=hook, d_in=576, d_sae=4608, seed=3)
    Model.objects.filter(id=MODEL_ID).delete()
    model = Model.objects.create(id=MODEL_ID, loader={"kind": "smollm2-gguf"}, inference_enabled=True, dimension=576)
    sset = SourceSet.objects.create(model=model, name="bench-res")
    source = Source.objects.create(model=model, source_set=sset, name=f"{LAYER}-bench-res", sae_path=str(sae_dir))
    Feature.objects.create(model=model, source=source, index=0)

    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection),
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "PYTHONPATH": str(ROOT),
    }
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "inference_worker", MODEL_ID, "--loglevel", "WARNING"], cwd=ROOT, env=env
        ),
        subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "memicos_site.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--worker-class",
                "gthread",
                "--workers",
                "1",
                "--threads",
                "4",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        ),  # fmt: skip
    ]
    try:
        deadline = time.monotonic() + 120
        while not inference_workers_alive(model_id=MODEL_ID):
            if time.monotonic() > deadline:
                raise SystemExit("the inference worker did not start")
            time.sleep(0.5)
        torch.set_grad_enabled(False)
        lm = load_model(ModelSpec(kind="smollm2-gguf"))
        sae = SAE.load_from_disk(str(sae_dir))
        text = text_of(lm, 64)
        tokens = lm.model.to_tokens(text)
        url = f"http://127.0.0.1:{port}/api/activation/new"
        body = {"feature": {"modelId": MODEL_ID, "source": source.name, "index": 0}, "customText": text}

        def bare():
            _, cache = lm.model.run_with_cache(tokens, names_filter=lambda n: n == hook, stop_at_layer=LAYER + 1)
            sae.encode(cache[hook][0])

        for _ in range(60):  # wait for gunicorn, warm both paths
            try:
                result = post(url, body)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise SystemExit("the web server did not answer")
        bare()
        http_runs, bare_runs = [], []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            result = post(url, body)
            http_runs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            bare()
            bare_runs.append(time.perf_counter() - t0)
        h, b = statistics.median(http_runs), statistics.median(bare_runs)
        print(f"threads={torch.get_num_threads()} tokens={tokens.shape[1]} hook={hook} requests={args.requests}")
        print(f"check: {len(result['tokens'])} tokens returned, maxValue {result['maxValue']:.3f}")
        print(f"bare forward to layer {LAYER} + encode: {b * 1000:7.1f} ms (p50)")
        print(f"POST /api/activation/new (HTTP+Celery): {h * 1000:7.1f} ms (p50)")
        print(f"ratio HTTP / bare = {h / b:.2f}  (target <= 1.5)")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        Model.objects.filter(id=MODEL_ID).delete()


if __name__ == "__main__":
    main()
