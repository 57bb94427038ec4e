"""Shared pieces of the API views: a NaN-safe JSON renderer, a base view, and small input helpers."""

import math

import orjson
from drf_spectacular.openapi import AutoSchema
from rest_framework import permissions
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder as DRFJSONEncoder
from rest_framework.views import APIView

from features.api.parsers import AnyTypeJSONParser, SafeJSONParser
from features.api.throttles import RateLimitHeadersMixin

_DRF_JSON = DRFJSONEncoder()
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def _finite(value):
    """Replace NaN/±inf (possible in imported arrays) by null; strict JSON cannot carry them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class FiniteJSONRenderer(JSONRenderer):
    """JSON renderer that never turns a NaN in the data into a 500.

    Compact output (what clients ask for) is written by orjson, which writes NaN/±inf as null itself, in a ninth
    of the standard encoder's time on a feature's payload (16 vs 138 µs for 12 KB, the same bytes). Dates and
    types orjson does not know go through DRF's encoder, so the text is DRF's. Otherwise (an indent asked for,
    an integer beyond 64 bits) DRF's renderer, whose common case pays for one strict dump; only a payload
    holding NaN/inf is walked.
    """

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        if self.get_indent(accepted_media_type, renderer_context or {}) is None:
            try:
                return orjson.dumps(data, default=_DRF_JSON.default, option=_ORJSON_OPTIONS)
            except orjson.JSONEncodeError:
                pass
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except ValueError:  # "Out of range float values are not JSON compliant"
            return super().render(_finite(data), accepted_media_type, renderer_context)


class JsonAutoSchema(AutoSchema):
    """Document request bodies as application/json only (the */* parser is a leniency, not an API)."""

    def map_parsers(self):
        return ["application/json"]


class ApiView(RateLimitHeadersMixin, APIView):
    renderer_classes = [FiniteJSONRenderer]
    parser_classes = [SafeJSONParser, AnyTypeJSONParser]
    schema = JsonAutoSchema()
    permission_classes = [permissions.AllowAny]


class AuthedApiView(ApiView):
    """Routes that need a user: no or bad credentials → 401 `{"message"}` (see auth.authenticate_header)."""

    permission_classes = [permissions.IsAuthenticated]


def json_type(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), "null")


def validated(serializer_class, data, **kwargs) -> dict | list:
    """Validate request data with an input serializer; errors become 400 naming the field."""
    expected = list if kwargs.get("many") else dict
    if not isinstance(data, expected):
        shape = "array" if expected is list else "object"
        raise ValidationError({"body": f"must be a JSON {shape}, not {json_type(data)}."})
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
