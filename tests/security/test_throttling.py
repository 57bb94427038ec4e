"""API rate limits: Neuronpedia's scopes, per user or anonymous IP, 429 with Retry-After and the scope named."""

import json
import subprocess
import sys
import uuid

import pytest
from django.core.cache import cache
from django.test import override_settings

from memicos_site.redis_client import redis_client
from tests.conftest import ROOT, subprocess_env

pytestmark = pytest.mark.django_db

MISSING = {"steerOutputId": "no-such-output"}  # /api/steer-load: a cheap route in the `util` scope (404 here)


@pytest.fixture
def rates(settings):
    """rates(api=..., util=...) → these limits for the test, every counter starting at zero."""
    cache.clear()

    def set_rates(**overrides):
        current = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {**current, **{k.replace("_", "-"): v for k, v in overrides.items()}},
        }

    yield set_rates
    cache.clear()


def post(client, path, body=None, **headers):
    return client.post(path, json.dumps(body or {}), content_type="application/json", headers=headers)


def test_a_scoped_route_answers_429_with_retry_after_and_names_the_scope(client, rates):
    rates(util="2/hour")
    first, second, third = (post(client, "/api/steer-load", MISSING) for _ in range(3))
    assert first.status_code == 404 and first["X-RateLimit-Remaining"] == "1" and first["X-RateLimit-Limit"] == "2"
    assert second["X-RateLimit-Remaining"] == "0" and second["x-limit-remaining"] == "0"
    assert third.status_code == 429
    wait = int(third["Retry-After"])
    assert 0 < wait <= 3600 and third["X-RateLimit-Remaining"] == "0"
    body = third.json()
    assert body["scope"] == "util" and body["retryAfter"] == wait
    assert "util (2/hour)" in body["message"] and f"retry in {wait} s" in body["message"]


def test_every_api_route_counts_against_the_global_api_scope(client, rates):
    rates(api="2/minute")
    assert post(client, "/api/model/list").status_code == 200
    assert client.get("/api/model/list")["X-RateLimit-Remaining"] == "0"
    refused = post(client, "/api/steer-load", MISSING)
    assert refused.status_code == 429 and refused.json()["scope"] == "api" and 0 < int(refused["Retry-After"]) <= 60


def test_the_remaining_header_is_the_tightest_of_the_scopes(client, rates):
    rates(api="100/hour", util="5/hour")
    assert post(client, "/api/steer-load", MISSING)["X-RateLimit-Remaining"] == "4"
    assert post(client, "/api/model/list")["X-RateLimit-Remaining"] == "98"  # only `api` applies here


def test_users_are_counted_apart_from_each_other_and_from_anonymous_clients(
    client, rates, user, other_user, api_key_for
):
    rates(util="1/hour")
    assert post(client, "/api/steer-load", MISSING).status_code == 404
    assert post(client, "/api/steer-load", MISSING).status_code == 429  # anonymous, this IP: spent
    key = api_key_for(user)
    assert post(client, "/api/steer-load", MISSING, x_api_key=key).status_code == 404
    assert post(client, "/api/steer-load", MISSING, x_api_key=api_key_for(other_user)).status_code == 404
    # The same user by session shares the budget of their keys (new keys do not buy more requests).
    client.force_login(user)
    assert post(client, "/api/steer-load", MISSING).status_code == 429
    assert post(client, "/api/steer-load", MISSING, x_api_key=api_key_for(user)).status_code == 429


def test_anonymous_clients_are_counted_by_ip_and_cannot_choose_it_with_x_forwarded_for(client, rates):
    rates(util="1/hour")
    assert post(client, "/api/steer-load", MISSING, x_forwarded_for="10.0.0.1").status_code == 404
    assert post(client, "/api/steer-load", MISSING, x_forwarded_for="10.0.0.2").status_code == 429
    other_ip = client.post(
        "/api/steer-load", json.dumps(MISSING), content_type="application/json", REMOTE_ADDR="192.0.2.7"
    )
    assert other_ip.status_code == 404


def test_behind_one_proxy_the_client_ip_is_the_one_the_proxy_saw(client, rates, settings):
    rates(util="1/hour")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert post(client, "/api/steer-load", MISSING, x_forwarded_for="6.6.6.6, 10.0.0.1").status_code == 404
    # a forged first hop does not make a new client; the address the proxy appended does
    assert post(client, "/api/steer-load", MISSING, x_forwarded_for="7.7.7.7, 10.0.0.1").status_code == 429
    assert post(client, "/api/steer-load", MISSING, x_forwarded_for="10.0.0.2").status_code == 404


def test_a_scope_set_off_is_not_limited(client, rates):
    rates(api=None, util=None)
    responses = [post(client, "/api/steer-load", MISSING) for _ in range(3)]
    assert [r.status_code for r in responses] == [404, 404, 404]
    assert "X-RateLimit-Remaining" not in responses[-1]


def test_the_api_stays_up_when_the_rate_limit_cache_is_down(client, rates):
    rates(api="1/hour")
    down = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}}
    with override_settings(CACHES=down):
        responses = [post(client, "/api/model/list") for _ in range(2)]
    assert [r.status_code for r in responses] == [200, 200]


def test_on_redis_a_window_is_one_counter_that_expires_with_the_window(client, rates, settings):
    """Production counts in Redis with one pipelined round trip (the other tests run on the local-memory cache)."""
    rates(util="2/hour")
    prefix = f"test-throttle-{uuid.uuid4().hex}"
    on_redis = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": settings.REDIS_URL,
                            "KEY_PREFIX": prefix}}  # fmt: skip
    r = redis_client()
    try:
        with override_settings(CACHES=on_redis):
            responses = [post(client, "/api/steer-load", MISSING) for _ in range(3)]
        assert [x.status_code for x in responses] == [404, 404, 429]
        assert responses[0]["X-RateLimit-Remaining"] == "1" and responses[1]["X-RateLimit-Remaining"] == "0"
        keys = r.keys(f"{prefix}:*")
        assert len(keys) == 2  # this window's counters of the `api` and `util` scopes
        assert all(0 < r.ttl(k) <= 3600 for k in keys)
        (util,) = (k for k in keys if b":throttle:util:" in k)
        assert int(r.get(util)) == 3  # a refused request counts too
    finally:
        for k in r.keys(f"{prefix}:*"):
            r.delete(k)


def test_tests_run_with_limits_no_test_reaches(settings):
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    assert set(rates) >= {"api", "activation", "steer", "topk", "search-all", "explanation-search", "autointerp",
                          "upload"}  # fmt: skip
    assert all(rate == "1000000/hour" for rate in rates.values())


def _settings_in(env: dict) -> subprocess.CompletedProcess:
    code = (
        "import django; django.setup(); from django.conf import settings; import json;"
        "print(json.dumps({'rates': settings.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'],"
        " 'cache': settings.CACHES['default']['BACKEND'], 'proxies': settings.REST_FRAMEWORK['NUM_PROXIES']}))"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_limits_come_from_the_environment_with_neuronpedias_defaults_and_redis_counters():
    env = subprocess_env(
        MEMICOS_ENV="production", SECRET_KEY="x" * 50, ALLOWED_HOSTS="memicos.example.org",
        DJANGO_SETTINGS_MODULE="memicos_site.settings", RATE_LIMIT_STEER="30/minute", RATE_LIMIT_UPLOAD="off",
    )  # fmt: skip
    out = _settings_in(env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["rates"]["steer"] == "30/minute" and got["rates"]["upload"] is None
    assert got["rates"]["api"] == "25000/hour" and got["rates"]["explanation-search"] == "200/hour"
    assert got["rates"]["activation"] == "1000/hour" and got["rates"]["topk"] == "500/hour"
    assert got["cache"] == "django.core.cache.backends.redis.RedisCache" and got["proxies"] == 1


def test_a_malformed_limit_stops_startup_with_a_message():
    env = subprocess_env(DJANGO_SETTINGS_MODULE="memicos_site.settings", RATE_LIMIT_STEER="lots")
    out = _settings_in(env)
    assert out.returncode != 0 and "RATE_LIMIT_STEER must look like 240/hour" in out.stderr
