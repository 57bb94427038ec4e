"""`manage.py health ROLE`: exit 0 when this host's process of ROLE is healthy, 1 (with the reason) when not.

docker-compose.yml's health checks call it, one role per service:

    web              GET /healthz on this host answers 200 (the web process reaches Postgres and Redis)
    worker           this host's Celery node answers a ping. A solo-pool node (gpu_batch) cannot answer while it
                     runs a task, so it also counts as healthy while this host holds the lease of a RUNNING job:
                     the runner refreshes that lease every few seconds (features.services.jobs.job_lease)
    inference MODEL  this host's inference worker has a fresh heartbeat for MODEL in Redis: it loaded the model
                     and its process is alive (inference.tasks._beat); the web side reads the same heartbeat
    llm              the OpenAI-compatible server on this host lists its models
"""

import json
import socket
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

ROLES = ("web", "worker", "inference", "llm")


def _host_header() -> str:
    """A host the web process accepts (Django answers 400 to any other), taken from ALLOWED_HOSTS."""
    for host in settings.ALLOWED_HOSTS:
        if host and host != "*":
            return host.lstrip(".")
    return "localhost"


def _get(url: str, *, timeout: float, host: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:  # refused, timed out, no route: the process is not serving
        raise CommandError(f"{url} is unreachable ({exc})") from None


def check_web(*, url: str, timeout: float) -> str:
    status, body = _get(url, timeout=timeout, host=_host_header())
    if status != 200:
        raise CommandError(f"{url} answered {status}: {body[:300].decode(errors='replace')}")
    return f"{url} answered 200"


def check_worker(*, node: str, timeout: float) -> str:
    from memicos_site.celery import app

    if app.control.ping(destination=[node], timeout=timeout):
        return f"{node} answered a ping"
    if job := _job_leased_by_this_host():
        return f"{node} did not answer a ping but runs job {job} (its lease is fresh)"
    raise CommandError(f"{node} did not answer a ping within {timeout} s and holds no job lease")


def _job_leased_by_this_host() -> int | None:
    from features.models import Job
    from features.services.jobs import job_lease_key
    from memicos_site.redis_client import redis_client

    prefix = f"{socket.gethostname()}:".encode()
    for job_id in Job.objects.filter(status=Job.Status.RUNNING).values_list("pk", flat=True):
        holder = redis_client().get(job_lease_key(job_id))
        if holder and holder.startswith(prefix):
            return job_id
    return None


def check_inference(*, model_id: str) -> str:
    from inference.selectors import heartbeat_key, heartbeat_ttl, redis_client

    prefix = f"{socket.gethostname()}:"
    beats = redis_client().zrange(heartbeat_key(model_id), 0, -1, withscores=True)
    mine = [score for member, score in beats if member.decode().startswith(prefix)]
    if not mine:
        raise CommandError(f"no inference worker on {socket.gethostname()} has announced {model_id} (still loading?)")
    age = time.time() - max(mine)
    if age > heartbeat_ttl():
        raise CommandError(f"the inference heartbeat for {model_id} is {age:.0f} s old (limit {heartbeat_ttl():.0f} s)")
    return f"inference worker for {model_id} beat {age:.1f} s ago"


def check_llm(*, url: str, timeout: float) -> str:
    status, body = _get(url, timeout=timeout)
    if status != 200:
        raise CommandError(f"{url} answered {status}")
    try:
        models = [m["id"] for m in json.loads(body)["data"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"{url} did not answer a model list ({exc})") from None
    if not models:
        raise CommandError(f"{url} lists no model")
    return f"{url} serves {', '.join(models)}"


class Command(BaseCommand):
    help = "Exit 0 when this host's web/worker/inference/llm process is healthy (docker-compose health checks)."

    def add_arguments(self, parser):
        parser.add_argument("role", choices=ROLES)
        parser.add_argument("model_id", nargs="?", help="inference: the model the worker serves")
        parser.add_argument("--url", help="web: default http://127.0.0.1:8000/healthz; llm: …:8101/v1/models")
        parser.add_argument("--node", help="worker: the Celery node name (default celery@<hostname>)")
        parser.add_argument("--timeout", type=float, default=5.0)

    def handle(self, *args, role, model_id, url, node, timeout, **options):
        if role == "inference" and not model_id:
            raise CommandError("health inference needs the MODEL_ID the worker serves")
        if role == "web":
            message = check_web(url=url or "http://127.0.0.1:8000/healthz", timeout=timeout)
        elif role == "worker":
            message = check_worker(node=node or f"celery@{socket.gethostname()}", timeout=timeout)
        elif role == "inference":
            message = check_inference(model_id=model_id)
        else:
            message = check_llm(url=url or "http://127.0.0.1:8101/v1/models", timeout=timeout)
        self.stdout.write(f"healthy: {message}")
