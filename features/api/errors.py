"""Every API error is JSON `{"message": ...}` with the right status (Neuronpedia's shape)."""

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from features.api.parsers import RequestTooLarge


class NotFound(exceptions.NotFound):
    pass


def _flatten(detail, prefix: str = "") -> list[str]:
    """Turn DRF's nested error detail into 'field: problem' lines that name the field."""
    if isinstance(detail, dict):
        lines = []
        for key, value in detail.items():
            if isinstance(key, int):  # ListSerializer (many=True) reports errors by item position
                lines.extend(_flatten(value, f"{prefix}[{key}]"))
                continue
            name = key if key != "non_field_errors" else ""
            path = f"{prefix}.{name}" if prefix and name else (prefix or name)
            lines.extend(_flatten(value, path))
        return lines
    if isinstance(detail, list):
        lines = []
        for i, value in enumerate(detail):
            if isinstance(value, (dict, list)):
                lines.extend(_flatten(value, f"{prefix}[{i}]"))
            else:
                lines.extend(_flatten(value, prefix))
        return lines
    return [f"{prefix}: {detail}" if prefix else str(detail)]


def api_exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "Permission denied.")
    elif isinstance(exc, RequestDataTooBig):  # request.body read before a parser could refuse it
        exc = RequestTooLarge(f"Request body is over the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes.")
    elif isinstance(exc, DjangoValidationError):
        # keep the field names of ValidationError({"field": ...}) raised by services
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        message = "; ".join(_flatten(exc.detail)) or "Invalid request."
    elif isinstance(exc.detail, (dict, list)):
        message = "; ".join(_flatten(exc.detail))
    else:
        message = str(exc.detail)
    body = {"message": message}
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        body["retryAfter"] = int(exc.wait)
        if getattr(exc, "scope", None):  # features.api.throttles.RateLimited
            body["scope"] = exc.scope
    return Response(body, status=response.status_code, headers=_headers(response))


def _headers(response) -> dict:
    return {k: v for k, v in response.items() if k.lower() in ("www-authenticate", "retry-after")}


def json_error(message: str, status_code: int = status.HTTP_400_BAD_REQUEST) -> JsonResponse:
    return JsonResponse({"message": message}, status=status_code)
