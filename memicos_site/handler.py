"""The WSGI handler gunicorn runs (memicos_site/wsgi.py): Django's, with each request's reference cycles broken
when the server closes the response.

A request's objects point at each other: the request at the lazy user and `auser` that close over it and at its
message storages that hold it; an API view at its own bound `head` and at the response, whose renderer context holds
the view. Reference counting cannot free a cycle, so everything reachable from one (an API response's `data`, ~200
lists and dicts of activations) waited for the cyclic collector: under bench/load.py's closed loop its collections
took ~10 % of the web processes' CPU on GET /api/feature. Cut at close, they are freed at once.
"""

from functools import partial

from django.core.handlers.wsgi import WSGIHandler


def _break_cycles(request, response) -> None:
    # The last closer: Django's own (request.close, the template's) have run, and nothing reads the request after.
    context = response.__dict__.pop("renderer_context", None)  # DRF: response → context → view → response
    if context:
        for obj in (context.get("view"), context.get("request")):
            if obj is not None:
                obj.__dict__.clear()
    request.__dict__.clear()


class Handler(WSGIHandler):
    def get_response(self, request):
        response = super().get_response(request)
        response._resource_closers.append(partial(_break_cycles, request, response))
        return response
