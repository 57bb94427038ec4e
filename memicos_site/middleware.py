"""Response headers that Django's SecurityMiddleware does not set (Django 5.2 has no CSP support), and 503s for
outages of the database or Redis."""

import logging

from django.conf import settings


def content_security_policy(get_response):
    def middleware(request):
        response = get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:  # a view may set a stricter one
            response["Content-Security-Policy"] = policy
        return response

    return middleware


OUTAGE_RETRY_AFTER_S = 10


def outage_of(exc: BaseException | None) -> str | None:
    """Which backing service an exception says is down (the database, Redis), or None for any other error."""
    import redis
    from django.db import InterfaceError, OperationalError
    from kombu.exceptions import OperationalError as BrokerError

    if isinstance(exc, (OperationalError, InterfaceError)):
        return "The database"
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, BrokerError)):
        return "The task queue (Redis)"
    return None


def outage_response(request, service: str):
    """503 + Retry-After: clients and load balancers retry, instead of reading a 500 as a bug."""
    from django.http import HttpResponse, JsonResponse

    message = f"{service} is unavailable right now; retry in a few seconds."
    if request.path.startswith("/api/"):
        response = JsonResponse({"message": message}, status=503)
    else:
        response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(OUTAGE_RETRY_AFTER_S)
    return response


class ServiceOutageMiddleware:
    """A database or Redis outage (restart, failover) answers 503 + Retry-After, not a 500 traceback page.
    Connections come back on their own: CONN_HEALTH_CHECKS makes the next request reconnect."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        service = outage_of(exception)
        if service is None:
            return None
        logging.getLogger(__name__).warning(
            "%s %s: %s unavailable: %s", request.method, request.path, service, exception
        )
        return outage_response(request, service)
