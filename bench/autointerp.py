"""Explanations per minute with the local endpoint (serve_llm, SmolLM2-135M-Instruct), and tokens per explanation.

    python bench/autointerp.py [--features 12] [--type np_max-act] [--base-url URL]

Starts `manage.py serve_llm` on a free port unless --base-url is given, then explains `--features`
activation sets through the same code path as the batch job (explainers.explain → openai client → endpoint).
The activation sets are the feature dashboards in the database if a source is named (`--model M --source S`),
else sentences from the planted test topics (tests/autointerp/planted.py). Prints explanations/minute,
mean prompt and completion tokens per explanation, and the parse failure count.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MEMICOS_ENV", "test")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memicos_site.settings")


def start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "manage.py", "serve_llm", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("serve_llm did not start")


def planted_inputs(n: int):
    from autointerp.examples import Example
    from autointerp.explainers import ExplainInput
    from tests.autointerp.planted import TOPICS, _tokens

    inputs = []
    topics = list(TOPICS.values())
    for i in range(n):
        _, sentences = topics[i % len(topics)]
        examples = []
        for k, sentence in enumerate(sentences[(i // len(topics)) % 2 :]):
            tokens, values = _tokens(*sentence)
            examples.append(Example(tokens=tokens, values=[v * (1 - 0.1 * k) for v in values]))
        inputs.append(ExplainInput(examples=examples, top_logits=[]))
    return inputs


def db_inputs(model_id: str, source_id: str, n: int):
    from autointerp.services import feature_explain_input
    from features.models import Feature

    features = Feature.objects.filter(model_id=model_id, source__name=source_id, activations__isnull=False)
    features = features.distinct().order_by("index")[:n]
    return [feature_explain_input(feature=f) for f in features]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=int, default=12)
    parser.add_argument("--type", default="np_max-act")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--source", default=None)
    args = parser.parse_args()

    import django

    django.setup()
    from autointerp.explainers import ExplanationParseError, explain, explainer_get
    from autointerp.llm import LLMConfig

    inputs = db_inputs(args.model, args.source, args.features) if args.source else planted_inputs(args.features)
    proc = None
    url = args.base_url
    if url is None:
        proc, url = start_server()
    try:
        config = LLMConfig(base_url=url, api_key="local", model="smollm2-135m-instruct", max_retries=0)
        explainer = explainer_get(args.type)
        try:  # warm-up, not counted
            explain(explainer=explainer, data=inputs[0], config=config)
        except ExplanationParseError:
            pass
        prompt, completion, failures = [], [], 0
        started = time.perf_counter()
        for data in inputs:
            try:
                r = explain(explainer=explainer, data=data, config=config)
            except ExplanationParseError:
                failures += 1
                continue
            prompt.append(r.prompt_tokens)
            completion.append(r.completion_tokens)
        elapsed = time.perf_counter() - started
    finally:
        if proc:
            proc.terminate()
            proc.wait(20)
    n = len(inputs)
    print(f"explainer {args.type} on {url} (SmolLM2-135M-Instruct, CPU): {n} features in {elapsed:.1f} s")
    print(f"explanations per minute: {60 * n / elapsed:.1f}")
    if prompt:
        print(
            f"tokens per explanation: prompt {statistics.mean(prompt):.0f}, completion {statistics.mean(completion):.1f}"
        )
    print(f"parse failures: {failures}/{n}")


if __name__ == "__main__":
    main()
