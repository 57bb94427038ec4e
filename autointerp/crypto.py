"""Encryption at rest of users' provider keys (Fernet: AES-128-CBC with an HMAC-SHA256, from `cryptography`).

The key is `MEMICOS_SECRETS_KEY` (a Fernet key: `Fernet.generate_key()`) when set, so it can live apart from
SECRET_KEY; otherwise one is derived from SECRET_KEY, so a deployment encrypts without new configuration. Either
way a database dump alone does not reveal the keys. Changing the secret makes stored keys unreadable: their owners
enter them again (provider_key_read says so instead of failing a job with a cryptic error).
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

from memicos_site.env import env_str

_DERIVE_CONTEXT = b"memicos provider keys v1\0"


class SecretUnreadable(Exception):
    """A stored secret that this deployment's key cannot decrypt (the secret changed, or the row was tampered with)."""


def _fernet() -> Fernet:
    explicit = env_str("MEMICOS_SECRETS_KEY")
    if explicit:
        return Fernet(explicit.encode())
    digest = hashlib.sha256(_DERIVE_CONTEXT + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def secret_encrypt(*, plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode("ascii")


def secret_decrypt(*, token: str) -> str:
    try:
        return _fernet().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, ValueError) as exc:
        raise SecretUnreadable("This stored key can no longer be read; enter it again on your account page.") from exc
