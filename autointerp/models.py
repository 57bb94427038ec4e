"""Autointerp's own rows: users' LLM provider keys (the domain tables live in features/models.py)."""

from django.conf import settings
from django.db import models


class ProviderKey(models.Model):
    """A user's own OpenAI-compatible provider credentials, used for the LLM calls they trigger.

    The key is stored encrypted (autointerp/crypto.py); `api_key` decrypts it, and only that user's jobs and
    requests read it (services.llm_config_for). `last4` is kept in clear so the account page can show a masked key
    without decrypting.
    """

    class Provider(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        OPENROUTER = "openrouter", "OpenRouter"
        CUSTOM = "custom", "Custom (OpenAI-compatible)"  # any OpenAI-compatible base URL (vLLM, Ollama, ...)

    DEFAULT_URLS = {
        Provider.OPENAI: "https://api.openai.com/v1",
        Provider.OPENROUTER: "https://openrouter.ai/api/v1",
    }

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="provider_keys")
    provider = models.CharField(max_length=16, choices=Provider.choices)
    base_url = models.CharField(max_length=512, blank=True)
    api_key_encrypted = models.TextField()
    last4 = models.CharField(max_length=4, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "provider"], name="providerkey_user_provider_uniq")]

    def __str__(self):
        return f"{self.user_id}/{self.provider}"

    @property
    def api_key(self) -> str:
        from autointerp.crypto import secret_decrypt

        return secret_decrypt(token=self.api_key_encrypted)

    @property
    def masked(self) -> str:
        return f"••••{self.last4}" if self.last4 else "••••"

    @property
    def url(self) -> str:
        return self.base_url or self.DEFAULT_URLS.get(self.provider, "")
