"""The steer, search-via-inference and top-k pages in a real browser (eager Celery, tiny model; Stop with a real
worker)."""

import json
import time

import pytest
from django.template.loader import render_to_string

from tests.inference.conftest import TINY_ID

pytestmark = [pytest.mark.slow]


def test_steer_page_streams_default_and_steered_and_its_share_url_reloads(page, live_server, tiny_db):
    page.goto(f"{live_server.url}/steer")
    page.select_option("#steer-model", TINY_ID)
    page.fill("#steer-prompt", "Once upon a time")
    page.fill("#feature-search", "0-res-std/3")
    page.click("#feature-hits li")
    page.click("#steer-settings summary")
    page.fill("input[name=n_tokens]", "12")
    page.click("#steer-go")
    page.wait_for_selector("#share:not([hidden])", timeout=30000)
    steered = page.inner_text("#out-steered")
    default = page.inner_text("#out-default")
    assert steered and default and steered != default
    assert "/steer/" in page.url
    from features.models import SteerOutput

    out_id = page.url.rsplit("/", 1)[1]
    assert SteerOutput.objects.get(id=out_id).output_text.strip() == steered.strip()
    page.goto(page.url)  # the share URL reloads the saved result
    assert page.inner_text("#out-steered") == steered
    assert page.input_value("#steer-prompt") == "Once upon a time"


def test_stop_aborts_the_steer_and_its_worker_stops_generating_then_the_next_steer_is_served_at_once(
    page, live_server, tiny_db, start_worker
):
    from celery.result import AsyncResult
    from playwright.sync_api import expect

    from features.models import SteerOutput
    from inference.selectors import heartbeat_key, redis_client, task_claim_key
    from memicos_site.queues import inference_queue

    start_worker([inference_queue(TINY_ID)], name="inf-stop")  # a real worker: eager mode would finish first
    r = redis_client()
    deadline = time.monotonic() + 60
    while not r.zcard(heartbeat_key(TINY_ID)) and time.monotonic() < deadline:
        time.sleep(0.1)
    before = set(r.scan_iter(task_claim_key("*")))
    page.goto(f"{live_server.url}/steer")
    page.select_option("#steer-model", TINY_ID)
    page.fill("#feature-search", "0-res-std/3")
    page.click("#feature-hits li")
    page.click("#steer-settings summary")
    page.fill("input[name=n_tokens]", "240")  # the tiny model's context is 256
    assert page.is_hidden("#steer-stop")
    page.click("#steer-go")
    expect(page.locator("#out-steered")).not_to_be_empty(timeout=60000)  # the first tokens are streaming in
    page.click("#steer-stop")
    expect(page.locator("#steer-status")).to_have_text("Stopped.", timeout=10000)
    assert page.is_hidden("#steer-stop")
    (claim,) = set(r.scan_iter(task_claim_key("*"))) - before
    value = AsyncResult(claim.decode().removeprefix(task_claim_key(""))).get(timeout=60, propagate=False)
    assert value.get("cancelled") and value["tokens"] < 240, value  # the worker stopped, not just the page
    assert SteerOutput.objects.count() == 0

    page.fill("input[name=n_tokens]", "8")
    page.click("#steer-go")
    page.wait_for_selector("#share:not([hidden])", timeout=30000)
    assert page.inner_text("#steer-status") == "Done." and page.inner_text("#out-steered")
    assert SteerOutput.objects.count() == 2


def test_search_page_ranks_features_and_clicking_a_token_re_sorts(page, live_server, tiny_db):
    page.goto(f"{live_server.url}/search-inference")
    page.select_option("#search-model", TINY_ID)
    page.fill("#search-text", "click a token to sort")
    page.click("#search-form button[type=submit]")
    page.wait_for_selector(".inf-result", timeout=30000)
    first_max = page.inner_text(".inf-result >> nth=0")
    page.click("#search-tokens .inf-tok >> nth=2")
    page.wait_for_selector("#search-tokens .inf-tok.selected", timeout=30000)
    page.wait_for_function("document.querySelector('.inf-result').innerText.includes('sum')", timeout=30000)
    assert "sum" in page.inner_text(".inf-result >> nth=0") and first_max


def test_topk_page_lists_features_per_token(page, live_server, tiny_db):
    page.goto(f"{live_server.url}/search-topk")
    page.select_option("#topk-model", TINY_ID)
    page.select_option("#topk-source", "1-res-jump")
    page.fill("input[name=densityThreshold]", "-1")
    page.fill("#topk-text", "tokens and their features")
    page.click("#topk-form button[type=submit]")
    page.wait_for_selector("#topk-table tbody tr", timeout=30000)
    assert page.locator("#topk-table tbody tr").count() >= 4
    assert page.locator(".inf-topk-feature").count() > 0


def test_activation_test_box_template_carries_the_feature_key(tiny_db):
    from features.models import Feature

    feature = Feature.objects.get(source__name="0-res-std", index=5)
    html = render_to_string("inference/activation_test_box.html", {"feature": feature})
    assert f'data-model-id="{TINY_ID}"' in html and 'data-source="0-res-std"' in html and 'data-index="5"' in html
    assert "inference/inference.js" in html and json.dumps(True)
