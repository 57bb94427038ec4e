"""API authentication: `x-api-key` header (Neuronpedia's), or the browser session (with CSRF)."""

from rest_framework import authentication, exceptions

from features.services.api_keys import api_key_authenticate


class ApiKeyAuthentication(authentication.BaseAuthentication):
    header = "HTTP_X_API_KEY"

    def authenticate(self, request):
        raw = request.META.get(self.header)
        if raw is None:
            return None
        user = api_key_authenticate(raw_key=raw.strip())
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key (x-api-key header).")
        return (user, None)

    def authenticate_header(self, request):
        # Makes DRF answer 401 (not 403) when credentials are missing.
        return "x-api-key"


class SessionAuthentication(authentication.SessionAuthentication):
    """Session auth whose CSRF failure reads as a JSON message like every other error."""
