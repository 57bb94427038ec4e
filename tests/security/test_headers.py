"""Security headers and cookies, `check --deploy` in production, and secrets that are never defaulted there."""

import json
import secrets
import subprocess
import sys

import pytest

from tests.conftest import ROOT, subprocess_env

pytestmark = pytest.mark.django_db


def production_env(**extra) -> dict:
    env = subprocess_env(
        MEMICOS_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="memicos.example.org,testserver",
        DJANGO_SETTINGS_MODULE="memicos_site.settings",
    )
    env.pop("MEMICOS_DEBUG", None)
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_with_production_settings():
    out = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env())
    assert out.returncode == 0, out.stdout + out.stderr
    assert "System check identified no issues" in out.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY must be set when MEMICOS_ENV=production"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS must be set when MEMICOS_ENV=production"),
        ({"MEMICOS_DEBUG": "1"}, "MEMICOS_DEBUG must be off when MEMICOS_ENV=production"),
    ],
    ids=["no-secret-key", "no-allowed-hosts", "debug-on"],
)
def test_production_refuses_to_start_without_what_it_must_not_default(env, message):
    out = run(["manage.py", "check"], production_env(**env))
    assert out.returncode != 0 and message in out.stderr


def test_production_redirects_to_https_and_sends_hsts_and_secure_cookies():
    # Behind the TLS proxy: X-Forwarded-Proto says https. Plain-HTTP health probes are not redirected.
    code = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
c = Client()
http = c.get("/accounts/login/")
health = c.get("/healthz?timeout=0.2")
https = c.get("/accounts/login/", headers={"x-forwarded-proto": "https"})
print(json.dumps({
    "http": [http.status_code, http.get("Location", "")],
    "health": health.status_code,
    "https": [https.status_code, https.get("Strict-Transport-Security", "")],
    "cookies": {name: [bool(m["secure"]), bool(m["httponly"]), m["samesite"]] for name, m in https.cookies.items()},
}))
"""
    out = run(["-c", code], production_env())
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["http"] == [301, "https://testserver/accounts/login/"]
    assert got["health"] in (200, 503)  # answered, not redirected
    status, hsts = got["https"]
    assert status == 200 and "max-age=31536000" in hsts and "includeSubDomains" in hsts and "preload" in hsts
    assert got["cookies"]["csrftoken"] == [True, False, "Lax"]  # the pages' scripts read the CSRF cookie


def test_pages_and_api_answers_carry_the_security_headers(client):
    for path in ("/", "/api/model/list", "/api/docs/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        if path != "/api/docs/":  # drf-spectacular's Swagger UI relaxes it for its OAuth2 pop-up
            assert response["Cross-Origin-Opener-Policy"] == "same-origin"
        csp = response["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp and "object-src 'none'" in csp


def test_the_session_cookie_is_http_only(client, user):
    response = client.post("/accounts/login/", {"username": user.username, "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert response.cookies["sessionid"]["httponly"]


@pytest.mark.django_db
def test_a_model_name_cannot_close_the_pages_script_element(client):
    from features.models import Model

    Model.objects.create(id="evil", display_name="</script><img src=x onerror=alert(1)>", inference_enabled=True)
    for url in ("/steer", "/search-inference", "/search-topk"):
        body = client.get(url).content.decode()
        assert "</script><img" not in body, url
        assert "\\u003C/script\\u003E\\u003Cimg" in body, url
