"""docker-compose.yml (checked as YAML: no Docker daemon in CI) and the `manage.py health` checks it runs."""

import json
import re
import shlex
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError

from features.models import Job
from memicos_site.management.commands.health import ROLES, _get
from memicos_site.queues import INFERENCE_PREFIX, STATIC_QUEUES
from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = {name: s for name, s in SERVICES.items() if s.get("build") == "."}


def _health_argv(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    return shlex.split(test[1]) if test[0] == "CMD-SHELL" else test[1:]


def _queues(argv: list[str]) -> list[str]:
    return argv[argv.index("-Q") + 1].split(",") if "-Q" in argv else []


def test_every_long_running_compose_service_has_a_health_check():
    missing = [name for name, s in SERVICES.items() if name != "migrate" and "healthcheck" not in s]
    assert missing == []
    assert SERVICES["migrate"]["restart"] == "no"


def test_every_app_service_starts_after_migrate_has_finished_and_autointerp_after_the_llm():
    for name, service in APP_SERVICES.items():
        deps = service["depends_on"]
        assert deps["postgres"] == {"condition": "service_healthy"}, name
        assert deps["redis"] == {"condition": "service_healthy"}, name
        if name != "migrate":
            assert deps["migrate"] == {"condition": "service_completed_successfully"}, name
    assert SERVICES["autointerp"]["depends_on"]["llm"] == {"condition": "service_healthy"}


def test_compose_commands_and_health_checks_name_real_management_commands_and_queues():
    commands = get_commands()
    for name, service in APP_SERVICES.items():
        for argv in (service["command"], *([_health_argv(service)] if "healthcheck" in service else [])):
            if "manage.py" in argv:
                command = argv[argv.index("manage.py") + 1]
                assert command in commands, f"{name}: no management command {command!r}"
                if command == "health":
                    assert argv[argv.index("health") + 1] in ROLES, name
            for queue in _queues(argv):
                assert queue in STATIC_QUEUES, f"{name}: unknown queue {queue!r}"
    for name, service in APP_SERVICES.items():  # an inference service's check watches the model it serves
        if service["command"][2:3] == ["inference_worker"]:
            assert _health_argv(service)[-1] == service["command"][3], name


def test_compose_consumes_every_queue_and_runs_the_web_under_gunicorn():
    consumed = {q for s in APP_SERVICES.values() for q in _queues(s["command"])}
    assert set(STATIC_QUEUES) <= consumed
    procfile = re.findall(r"-Q ([\w,]+)", (ROOT / "Procfile").read_text())
    assert {q for spec in procfile for q in spec.split(",")} <= consumed
    assert any(s["command"][2:3] == ["inference_worker"] for s in APP_SERVICES.values()), INFERENCE_PREFIX
    web = SERVICES["web"]["command"]
    assert web[:2] == ["gunicorn", "memicos_site.wsgi"] and "0.0.0.0:8000" in web
    assert SERVICES["web"]["ports"] == ["8000:8000"]


def test_the_image_copies_the_app_and_collects_static_files_for_gunicorn():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY . ." in dockerfile and "collectstatic --noinput" in dockerfile
    uses_curl = any("curl" in " ".join(s["healthcheck"]["test"]) for s in SERVICES.values() if "healthcheck" in s)
    assert not uses_curl or "curl" in dockerfile


# ---------------------------------------------------------------- manage.py health


@pytest.fixture
def heartbeat():
    from inference.selectors import heartbeat_key, redis_client

    key = heartbeat_key("health-test-model")
    redis_client().delete(key)
    yield lambda member, age: redis_client().zadd(key, {member: time.time() - age})
    redis_client().delete(key)


def test_health_inference_needs_a_fresh_heartbeat_from_this_host(heartbeat, capsys):
    here = socket.gethostname()
    heartbeat("elsewhere:1", 0)
    with pytest.raises(CommandError, match="no inference worker"):
        call_command("health", "inference", "health-test-model")
    heartbeat(f"{here}:7", 120)
    with pytest.raises(CommandError, match="old"):
        call_command("health", "inference", "health-test-model")
    heartbeat(f"{here}:7", 1)
    call_command("health", "inference", "health-test-model")
    assert "healthy" in capsys.readouterr().out


@pytest.mark.django_db
def test_health_worker_counts_a_solo_node_busy_with_a_leased_job_as_healthy(capsys):
    from features.services.jobs import job_lease_key
    from memicos_site.redis_client import redis_client

    with pytest.raises(CommandError, match="did not answer a ping"):
        call_command("health", "worker", "--node", "nobody@nowhere", "--timeout", "0.3")
    job = Job.objects.create(kind="dashboards", status=Job.Status.RUNNING)
    redis_client().set(job_lease_key(job.pk), "another-host:1:abcd", ex=30)
    with pytest.raises(CommandError, match="no job lease"):
        call_command("health", "worker", "--node", "nobody@nowhere", "--timeout", "0.3")
    redis_client().set(job_lease_key(job.pk), f"{socket.gethostname()}:1:abcd", ex=30)
    try:
        call_command("health", "worker", "--node", "nobody@nowhere", "--timeout", "0.3")
    finally:
        redis_client().delete(job_lease_key(job.pk))
    assert f"runs job {job.pk}" in capsys.readouterr().out


@pytest.mark.slow
def test_health_worker_is_healthy_when_the_node_answers_a_ping(start_worker, capsys):
    worker = start_worker(["default"], name="health-ping")
    call_command("health", "worker", "--node", f"{worker.name}@{socket.gethostname()}")
    assert "answered a ping" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_health_web_sends_an_allowed_host_and_reads_healthz(live_server, settings, capsys):
    settings.ALLOWED_HOSTS = [".memicos.example"]
    url = f"{live_server.url}/healthz?timeout=0.1"
    assert _get(url, timeout=10)[0] == 400  # without the Host header Django refuses the request
    call_command("health", "web", "--url", url)
    assert "answered 200" in capsys.readouterr().out
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(CommandError, match="unreachable"):
        call_command("health", "web", "--url", f"http://127.0.0.1:{closed}/healthz", "--timeout", "2")


def _serve(models: list[str]) -> ThreadingHTTPServer:
    body = json.dumps({"object": "list", "data": [{"id": m, "object": "model"} for m in models]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_health_llm_needs_a_model_list_with_a_model(capsys):
    good, empty = _serve(["smollm2-135m-instruct"]), _serve([])
    try:
        call_command("health", "llm", "--url", f"http://127.0.0.1:{good.server_port}/v1/models")
        assert "serves smollm2-135m-instruct" in capsys.readouterr().out
        with pytest.raises(CommandError, match="lists no model"):
            call_command("health", "llm", "--url", f"http://127.0.0.1:{empty.server_port}/v1/models")
        with pytest.raises(CommandError, match="answered 404"):
            call_command("health", "llm", "--url", f"http://127.0.0.1:{good.server_port}/nothing")
    finally:
        good.shutdown()
        empty.shutdown()
