"""The app's own Redis client (heartbeats, admission slots, job leases, live import progress), one per URL and
process; Celery's broker and Django's cache keep their own connections."""

import functools

import redis
from django.conf import settings


@functools.cache
def _redis_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def redis_client() -> redis.Redis:
    return _redis_for(settings.REDIS_URL)
