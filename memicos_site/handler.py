"""The WSGI handler gunicorn runs (memicos_site/wsgi.py): Django's, with each request's reference cycles broken
when the server closes the response.

A request's objects point at each other: the request at the lazy user and `auser` that close over it and at its
message storages that hold it; an API view at its own bound `head` and at the response, whose renderer context holds
the view. Reference counting cannot free a cycle, so everything reachable from one (an API response's `data`, ~200
lists and dicts of activations) waited for the cyclic collector: under bench/load.py's closed loop its collections
took ~10 % of the web processes' CPU on GET /api/feature. Cut at close, they are freed at once.

It also keeps each request's client connection at hand (client_gone()), so a request waiting on a worker can see
that nobody is left to answer.
"""

import select
import socket
import threading
from functools import partial

from django.core.handlers.wsgi import WSGIHandler

_local = threading.local()  # .sock: the client connection of this thread's request (gunicorn's), while it runs


def _break_cycles(request, response) -> None:
    # The last closer: Django's own (request.close, the template's) have run, and nothing reads the request after.
    context = response.__dict__.pop("renderer_context", None)  # DRF: response → context → view → response
    if context:
        for obj in (context.get("view"), context.get("request")):
            if obj is not None:
                obj.__dict__.clear()
    request.__dict__.clear()


class Handler(WSGIHandler):
    def __call__(self, environ, start_response):
        _local.sock = environ.get("gunicorn.socket")
        try:
            return super().__call__(environ, start_response)
        finally:
            _local.sock = None

    def get_response(self, request):
        response = super().get_response(request)
        response._resource_closers.append(partial(_break_cycles, request, response))
        return response


def client_gone() -> bool:
    """Has the client of this thread's request closed its connection? For a request that waits seconds on a worker
    without writing anything (a non-streamed steer): a client that hung up is otherwise noticed only when the answer
    is written. Readable with nothing to read = closed (bytes of a pipelined next request leave it open). False
    whenever it cannot tell: no gunicorn socket (runserver, tests), or TLS in gunicorn itself (MSG_PEEK refused)."""
    sock = getattr(_local, "sock", None)
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except ValueError:
        return False
    except OSError:  # reset by the peer
        return True
