"""Through real `inference.<model>` Celery worker processes and HTTP (slow: real processes, SmolLM2)."""

import json
import threading
import time

import pytest
import torch
from sae_lens import SAE

from features.models import Feature, SteerOutput
from inference.selectors import inference_workers_alive
from memicos_site.queues import inference_queue
from tests.inference.conftest import TINY_ID, write_sae

pytestmark = [pytest.mark.slow]
TTL = 3  # short heartbeat TTL so a killed worker is noticed quickly


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def wait_alive(model_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if inference_workers_alive(model_id=model_id):
            return
        time.sleep(0.2)
    raise AssertionError(f"no heartbeat from the {model_id} worker")


@pytest.fixture
def short_ttl(monkeypatch):
    monkeypatch.setenv("MEMICOS_HEARTBEAT_TTL", str(TTL))


def test_tiny_worker_serves_activation_and_streamed_steering_over_http(client, tiny_db, start_worker, short_ttl):
    start_worker([inference_queue(TINY_ID)], name="inf-tiny", MEMICOS_HEARTBEAT_TTL=TTL)
    wait_alive(TINY_ID)
    body = {"feature": {"modelId": TINY_ID, "source": "1-res-jump", "index": 2}, "customText": "through a real worker"}
    r = post(client, "/api/activation/new", body)
    assert r.status_code == 200, r.content
    from inference.runtime import worker  # the same computation in this process

    expected = worker.run_activation_single({"model_id": TINY_ID, "loader": tiny_db["model"].loader,
                                             "probe": {"sae": {"path": tiny_db["sources"]["1-res-jump"].sae_path}, "index": 2},
                                             "texts": ["through a real worker"]})  # fmt: skip
    assert r.json()["values"] == pytest.approx(expected["results"][0]["activation"]["values"], abs=1e-5)
    steer = {"modelId": TINY_ID, "prompt": "Hello", "n_tokens": 8, "temperature": 0, "stream": True,
             "features": [{"modelId": TINY_ID, "layer": "0-res-std", "index": 1, "strength": 30}]}  # fmt: skip
    resp = post(client, "/api/steer", steer)
    frames = [json.loads(c[6:]) for c in b"".join(resp.streaming_content).decode().split("\n\n") if c]
    assert len(frames) > 2 and frames[-1]["id"] and SteerOutput.objects.count() == 2


def test_smollm2_worker_activation_equals_direct_sae_encode_and_survives_a_killed_worker(
    client, transactional_db, start_worker, short_ttl, tmp_path
):
    from inference.runtime.models import ModelSpec, load_model
    from tests.factories import ModelFactory, SourceFactory, SourceSetFactory

    model = ModelFactory(id="smollm2-test", loader={"kind": "smollm2-gguf"}, inference_enabled=True, dimension=576)
    sae_dir = write_sae(
        tmp_path / "sae", architecture="standard", hook="blocks.3.hook_resid_post", d_in=576, d_sae=256, seed=1
    )
    source = SourceFactory(
        source_set=SourceSetFactory(model=model, name="res"), model=model, name="3-res", sae_path=str(sae_dir)
    )
    Feature.objects.bulk_create([Feature(model=model, source=source, index=i) for i in range(256)])
    first = start_worker([inference_queue(model.id)], name="inf-smol", MEMICOS_HEARTBEAT_TTL=TTL)
    wait_alive(model.id)

    lm = load_model(ModelSpec(kind="smollm2-gguf"))
    sae = SAE.load_from_disk(str(sae_dir))
    text = "The Eiffel Tower is in Paris"
    _, cache = lm.model.run_with_cache(lm.model.to_tokens(text))
    enc = sae.encode(cache["blocks.3.hook_resid_post"][0])
    index = int(enc[1:].max(dim=0).values.argmax())
    r = post(
        client,
        "/api/activation/new",
        {"feature": {"modelId": model.id, "source": "3-res", "index": index}, "customText": text},
    )
    assert r.status_code == 200, r.content
    assert torch.allclose(torch.tensor(r.json()["values"]), enc[1:, index], atol=1e-3)

    prompt = "The capital of France is"
    steer = {"modelId": model.id, "prompt": prompt, "n_tokens": 8, "temperature": 0,
             "features": [{"modelId": model.id, "layer": "3-res", "index": index, "strength": 60}]}  # fmt: skip
    data = post(client, "/api/steer", steer).json()
    ids = lm.tokenizer("<|im_start|>" + prompt, add_special_tokens=False)["input_ids"]
    greedy = lm.hf_model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)[0, len(ids) :]
    assert data["DEFAULT"] == prompt + lm.tokenizer.decode(greedy)  # unsteered = plain HF greedy decoding
    assert data["STEERED"] != data["DEFAULT"]

    # Kill the worker mid-generation: an error well within the timeout, nothing half-written.
    before = SteerOutput.objects.count()
    out = {}
    long = {**steer, "n_tokens": 250, "seed": 77, "temperature": 1.0}
    t = threading.Thread(target=lambda: out.update(r=post(client, "/api/steer", long)))
    t0 = time.monotonic()
    t.start()
    time.sleep(2.5)
    first.kill()
    t.join(60)
    assert not t.is_alive() and out["r"].status_code in (503, 504) and "message" in out["r"].json()
    assert time.monotonic() - t0 < 20
    assert SteerOutput.objects.count() == before
    start_worker([inference_queue(model.id)], name="inf-smol2", MEMICOS_HEARTBEAT_TTL=TTL)
    wait_alive(model.id)
    again = post(client, "/api/steer", {**steer, "seed": 78, "temperature": 0.5})
    assert again.status_code == 200 and again.json()["STEERED"]
