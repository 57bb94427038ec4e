"""JSON request bodies, read defensively: every way a body can be unusable is a 4xx naming the problem.

DRF's JSONParser lets RecursionError out of deeply nested JSON as a 500,
and accepts strings that Postgres or UTF-8 cannot hold (NUL, lone surrogates from `\\ud800` escapes), which then
fail as 500s wherever they reach the database or get encoded; DRF reads a JSON body through `request.body`, whose
size guard (DATA_UPLOAD_MAX_MEMORY_SIZE) answers an HTML 400. This parser is not a JSONParser subclass, so DRF
hands it the raw stream: it refuses a body over the route's limit before reading it (413), and refuses all the
rest before a view sees the data.
"""

import json
import math
import re

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser, get_encoding
from rest_framework.utils.mediatypes import _MediaType

# Neuronpedia's bodies are at most ~5 levels deep; the cap keeps every recursive walk of request data (renderers,
# error flattening) far from Python's recursion limit.
MAX_DEPTH = 64
# Only bodies holding these escapes can carry a NUL or a lone surrogate, so only they are walked.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."


def body_limit(view) -> int:
    """Upload routes (`large_body = True`) take up to DATA_UPLOAD_MAX_MEMORY_SIZE, others API_MAX_BODY_BYTES."""
    if getattr(view, "large_body", False):
        return settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return settings.API_MAX_BODY_BYTES


def _content_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _check(data, *, strings: bool) -> None:
    """Depth, and (when `strings`) NUL and lone surrogates, walked without recursion; the error names the place."""
    stack = [(data, "body", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise ParseError(f"{path}: contains a NUL character (\\u0000), which text cannot hold.")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ParseError(
                    f"{path}: contains a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not text."
                ) from None
            continue
        if depth > MAX_DEPTH:
            raise ParseError(f"JSON nested more than {MAX_DEPTH} levels deep.")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if strings and isinstance(key, str):
                stack.append((key, f"{path} (a key)"[:200], depth))
            if (strings and isinstance(item, str)) or isinstance(item, (dict, list)):
                stack.append(
                    (item, f"{path}.{key}"[:200] if isinstance(key, str) else f"{path}[{key}]"[:200], depth + 1)
                )


class SafeJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        request, view = parser_context.get("request"), parser_context.get("view")
        limit = body_limit(view)
        if request is not None and _content_length(request) > limit:
            raise RequestTooLarge(f"Request body is {_content_length(request):,} bytes; the limit is {limit:,}.")
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(f"Request body is over the limit of {limit:,} bytes.")
        # Django ignores a charset codecs cannot find (UTF-8 then); get_encoding refuses bytes-to-bytes codecs
        # (charset=zlib_codec would inflate a small body without bound) with a 400 naming the charset.
        encoding = get_encoding(parser_context)
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(
                f"Request body is not valid {encoding}: byte 0x{raw[exc.start]:02x} at position {exc.start}."
            ) from None
        try:
            data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        except RecursionError:
            raise ParseError(f"JSON nested too deeply (the limit is {MAX_DEPTH} levels).") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        strings = _SUSPECT_ESCAPE.search(text) is not None
        if strings or (isinstance(data, (dict, list)) and text.count("[") + text.count("{") > MAX_DEPTH):
            _check(data, strings=strings)
        return data


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows (send a finite number)")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal[:40]} is out of the range of a 64-bit float")
    return value


class AnyTypeJSONParser(SafeJSONParser):
    """Neuronpedia reads every body as JSON whatever its Content-Type (`curl -d '{...}'` sends a form type),
    so a body sent with another type is parsed as JSON too; if it is not JSON the answer is a 400 that says so."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except ParseError as exc:
            sent = _MediaType(media_type or "").orig or "none"
            raise ParseError(f"{exc.detail} (Content-Type was {sent}; this API reads JSON bodies).") from None
