"""memicos_site/handler.py: the WSGI handler gunicorn runs leaves no reference cycles behind a request, so its
objects (an API response's activations) are freed when the server closes the response, not by the cyclic collector;
and it tells a request that waits on a worker whether its client is still connected.
"""

import gc
import io
import socket
import sys
import types

import pytest
from django.core.handlers.wsgi import WSGIHandler

from tests.factories import ActivationFactory, ExplanationFactory, FeatureFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def feature():
    feature = FeatureFactory()
    for _ in range(3):
        ActivationFactory(feature=feature)
    ExplanationFactory(feature=feature)
    return feature


def _serve(app, path: str) -> tuple[str, bytes]:
    """One request as gunicorn makes it: the WSGI call, the body read, then close()."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "testserver",
               "SERVER_PORT": "80", "HTTP_HOST": "testserver", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
               "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False}  # fmt: skip
    status = []
    body = app(environ, lambda s, headers, exc_info=None: status.append(s))
    try:
        return status[0], b"".join(body)
    finally:
        body.close()


def _garbage_of(app, paths: list[str]) -> tuple[list, list]:
    """(status and body of each request, the objects only the cyclic collector could free after them)."""
    for path in paths:  # first requests fill caches (URL resolver, prepared statements, templates)
        _serve(app, path)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        answers = [_serve(app, path) for path in paths]
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return answers, garbage


def test_no_request_leaves_a_reference_cycle_and_every_answer_is_whole(feature, wsgi_handler):
    m, s, i = feature.model_id, feature.source.name, feature.index
    paths = [f"/api/feature/{m}/{s}/{i}", f"/{m}/{s}/{i}/", "/api/feature/no-such-model/x/1"]

    answers, garbage = _garbage_of(wsgi_handler, paths)

    assert [status[:3] for status, _ in answers] == ["200", "200", "404"]
    assert b"parrots and other talking birds" in answers[0][1] and b'"tokens"' in answers[0][1]
    assert b"parrots and other talking birds" in answers[1][1] and b'class="act-row"' in answers[1][1]
    # Django's ORM compiles a query with select_related through a recursive local function: a function, its cell
    # and its closure tuple, holding no data of the request. Anything else is a cycle of ours to cut.
    functions = {f.__qualname__ for f in garbage if isinstance(f, types.FunctionType)}
    assert functions <= {"SQLCompiler.get_select.<locals>.get_select_from_parent"}, functions
    others = [o for o in garbage if not isinstance(o, (types.FunctionType, types.CellType, tuple))]
    assert others == [], sorted({type(o).__qualname__ for o in others})


def test_a_django_template_page_leaves_only_the_template_contexts_own_cycle(wsgi_handler):
    # Django's Context and each ContextDict it pushes point at each other, whoever renders them, and a RequestContext
    # holds its request: that cycle stays, but the request in it is emptied (nothing of the request's data, session
    # or response is caught with it).
    (answer,), garbage = _garbage_of(wsgi_handler, ["/no-such-page/"])
    assert answer[0].startswith("404")
    kinds = {type(o).__qualname__ for o in garbage}
    assert "ContextDict" in kinds and not kinds & {"HttpResponseNotFound", "SessionStore", "QueryDict"}, kinds
    assert all(vars(o) == {} for o in garbage if type(o).__qualname__ == "WSGIRequest")


def test_djangos_own_handler_leaves_the_response_data_in_cycles(feature, wsgi_handler):
    # What the handler is for: with Django's, a request's objects, its API response's data among them, wait for gc.
    # (wsgi_handler only for its test-transaction set-up: Django's own handler serves here.)
    path = f"/api/feature/{feature.model_id}/{feature.source.name}/{feature.index}"
    _answers, garbage = _garbage_of(WSGIHandler(), [path])
    kinds = {type(o).__qualname__ for o in garbage}
    assert {"WSGIRequest", "FeatureDetailView", "Response"} <= kinds
    assert any(isinstance(o, dict) and o.get("tokens") for o in garbage)  # an activation of the response's data


def test_client_gone_is_true_once_the_client_closed_and_false_while_open_or_unknown():
    from memicos_site import handler

    assert not handler.client_gone()  # no gunicorn socket (runserver, the test client): cannot tell
    server, client = socket.socketpair()
    handler._local.sock = server
    try:
        assert not handler.client_gone()  # open, nothing sent
        client.sendall(b"GET /next HTTP/1.1\r\n")
        assert not handler.client_gone()  # a pipelined next request is not a hang-up
        server.recv(100)
        client.close()
        assert handler.client_gone()
        server.close()
        assert not handler.client_gone()  # our own socket closed (fileno -1): unknown, not gone
    finally:
        handler._local.sock = None
