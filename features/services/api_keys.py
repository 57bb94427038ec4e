"""API keys: random, shown once, stored as SHA-256 (high-entropy keys need no slow hash), revocable."""

import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.utils import timezone

from features.models import ApiKey

KEY_PREFIX = "mk-"


def _hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(*, user, name: str = "") -> tuple[ApiKey, str]:
    """Returns the stored row and the raw key; the raw key is never stored and cannot be shown again."""
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(user=user, name=name, prefix=raw[:10], key_hash=_hash(raw))
    return key, raw


def api_key_authenticate(*, raw_key: str):
    """The active user owning this key, or None."""
    if not raw_key:
        return None
    key = (
        ApiKey.objects.select_related("user")
        .filter(key_hash=_hash(raw_key), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if key is None:
        return None
    now = timezone.now()
    # Avoid a write per request: last_used_at is informational, minute precision is enough.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key.user


def api_key_revoke(*, user, key_id: int) -> bool:
    return bool(ApiKey.objects.filter(pk=key_id, user=user, revoked_at__isnull=True).update(revoked_at=timezone.now()))


def user_get_or_create(*, username: str, staff: bool = False):
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
    if staff and not user.is_staff:
        user.is_staff = True
    user.save()
    return user
