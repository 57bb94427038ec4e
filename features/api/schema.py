"""drf-spectacular extensions: how our authenticators appear in the OpenAPI schema."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthScheme(OpenApiAuthenticationExtension):
    target_class = "features.api.auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "x-api-key"}


class SessionAuthScheme(OpenApiAuthenticationExtension):
    target_class = "features.api.auth.SessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}


# Answers any route may give, whatever its view documents: the body-size guard (features/api/parsers.py), the
# throttles (features/api/throttles.py) and the outage middleware (memicos_site/middleware.py).
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
_COMMON_RESPONSES = {
    "413": "The body is larger than the route's limit; the message names the limit.",
    "429": "Rate limit exceeded for the named scope; `Retry-After` gives the seconds to wait.",
    "503": "The database or Redis is unavailable (or, where documented, no worker is); retry after `Retry-After`.",
}


def add_common_responses(result, generator, request, public):
    """POSTPROCESSING_HOOKS entry: document 413 (on operations with a body), 429 and 503 on every operation."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            for code, description in _COMMON_RESPONSES.items():
                if code == "413" and "requestBody" not in operation:
                    continue
                responses.setdefault(code, {"content": _ERROR, "description": description})
    return result
