"""API rate limits after Neuronpedia's (shared/reference/neuronpedia.md §2): per user, or per client IP when anonymous.

Every API request counts against the `api` scope; a view that names a `throttle_scope` (steer, activation, ...)
also counts against that one. Rates are REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], read from the environment by
settings. Responses carry the tightest remaining count; a 429 names the scope and the wait.
"""

import functools
import logging
import math
import time
from dataclasses import dataclass

import redis
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework import exceptions
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

log = logging.getLogger(__name__)
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class RateStatus:
    scope: str
    rate: str  # as configured, e.g. "240/hour"
    limit: int
    remaining: int
    wait: float  # seconds until the window resets


def parse_rate(rate: str) -> tuple[int, int]:
    """'240/hour' → (240, 3600); the period is named by its first letter, as in DRF."""
    count, period = rate.split("/")
    return int(count), PERIODS[period.strip()[0]]


@functools.cache
def _client_over(pool: redis.ConnectionPool, client_class: type) -> redis.Redis:
    return client_class(connection_pool=pool)  # redis-py clients are thread-safe


def _redis_client(backend: RedisCache) -> redis.Redis:
    """A client over the cache's own write pool, kept as memicos_site/redis_client keeps the app's: Django's
    get_client() builds a new redis.Redis on every call, 60 µs of CPU each (its constructor fills a table of ~170
    response callbacks)."""
    return _client_over(backend._cache._get_connection_pool(write=True), backend._cache._client)


def _window_count(key: str, period: int) -> int:
    """This request's number in its window. On Redis one round trip (SET NX, INCR and EXPIRE pipelined; the
    cache API's add + incr took two, ~14 % of GET /api/feature's CPU in a profile under load); on another cache
    backend (tests), add + incr."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        full = backend.make_and_validate_key(key)
        pipe = _redis_client(backend).pipeline(transaction=False)
        # EXPIRE again after INCR: were the key to expire between SET and INCR, INCR would recreate it without one
        pipe.set(full, 0, ex=period, nx=True).incr(full).expire(full, period)
        return pipe.execute()[1]
    try:
        backend.add(key, 0, timeout=period)
        return backend.incr(key)
    except ValueError:  # the window's key expired between add and incr
        backend.set(key, 1, timeout=period)
        return 1


class FixedWindowThrottle(BaseThrottle):
    """`limit` requests per window, counted with one atomic cache increment.

    DRF's SimpleRateThrottle keeps every request's timestamp in one cache entry: at the global 25,000/hour that
    is a list of 25,000 floats read and rewritten on each request. A fixed window costs one INCR, at the price
    of letting up to twice the limit through across a window boundary.
    """

    scope: str | None = None

    def scope_for(self, view) -> str | None:
        return self.scope

    def allow_request(self, request, view) -> bool:
        self.status = None
        scope = self.scope_for(view)
        # Read per request, not at import like DRF's throttles, so that tests can change the rates.
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope) if scope else None
        if rate is None:
            return True
        limit, period = parse_rate(rate)
        now = time.time()
        key = f"throttle:{scope}:{self.ident(request)}:{int(now // period)}"
        try:
            count = _window_count(key, period)
        except (redis.RedisError, OSError) as exc:
            # Fail open: a Redis outage must not also take down the API reads that need only Postgres.
            log.warning("rate limit %s not checked: %s", scope, exc)
            return True
        self.status = RateStatus(scope, rate, limit, max(0, limit - count), period - now % period)
        return count <= limit

    def wait(self) -> float | None:
        return self.status.wait if self.status else None

    def ident(self, request) -> str:
        # x-api-key and session resolve to the same user, so a user's keys share one budget.
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return f"user:{user.pk}"
        return f"ip:{self.get_ident(request)}"  # honours REST_FRAMEWORK["NUM_PROXIES"]


class ApiRateThrottle(FixedWindowThrottle):
    scope = "api"


class RouteRateThrottle(FixedWindowThrottle):
    def scope_for(self, view) -> str | None:
        return getattr(view, "throttle_scope", None)


class RateLimited(exceptions.Throttled):
    def __init__(self, status: RateStatus):
        wait = math.ceil(status.wait)
        super().__init__(wait=wait, detail=f"Rate limit for {status.scope} ({status.rate}) reached; retry in {wait} s.")
        self.scope = status.scope


class RateLimitHeadersMixin:
    # DRF's check_throttles, keeping the tightest limit for the X-RateLimit-* headers and naming the scope in a 429.
    rate_status: RateStatus | None = None

    def check_throttles(self, request):
        refused = []
        for throttle in self.get_throttles():
            allowed = throttle.allow_request(request, self)
            status = getattr(throttle, "status", None)
            if status is None:
                if not allowed:  # a throttle of another kind
                    self.throttled(request, throttle.wait())
                continue
            if self.rate_status is None or status.remaining < self.rate_status.remaining:
                self.rate_status = status
            if not allowed:
                refused.append(status)
        if refused:
            raise RateLimited(max(refused, key=lambda s: s.wait))

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if self.rate_status is not None:
            response["X-RateLimit-Limit"] = str(self.rate_status.limit)
            response["X-RateLimit-Remaining"] = str(self.rate_status.remaining)
            response["X-Limit-Remaining"] = str(self.rate_status.remaining)  # Neuronpedia's name for it
        return response
