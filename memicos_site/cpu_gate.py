"""At most WEB_CPU_SLOTS requests of a web process run at a time; the others wait for a slot.

gunicorn's gthread worker runs every thread of a process under one GIL. With 16 clients reading back to back on
2 × 8 threads, the GIL handoffs and the cache thrash of 8 interleaved requests cost about a third of the CPU:
bench/load.py measured GET /api/feature at 540 req/s with 2 × 8 threads and 780 with 2 × 1. The threads are still
needed, because a steer, activation, search or autointerp request waits seconds for a worker. So a request holds a
slot while it runs and gives it back while it waits on another process (`released()`). A request that waited
WEB_CPU_SLOT_WAIT_MS for a slot runs without one rather than queue behind one stuck on I/O. WEB_CPU_SLOTS=0 turns
the gate off.
"""

import threading
from contextlib import contextmanager

_local = threading.local()  # .gate: the gate of this thread's request; .held: whether it holds a slot now


class CpuGate:
    def __init__(self, slots: int, wait_s: float):
        self._slots = threading.BoundedSemaphore(slots) if slots > 0 else None
        self._wait_s = wait_s

    def take(self) -> bool:
        return self._slots is not None and self._slots.acquire(timeout=self._wait_s)

    def give(self) -> None:
        self._slots.release()

    def wrap(self, app):
        """The WSGI app behind the gate. Only the app call holds a slot: gunicorn writes the response after it."""

        def gated(environ, start_response):
            _local.gate, _local.held = self, self.take()
            try:
                return app(environ, start_response)
            finally:
                if _local.held:
                    self.give()
                _local.gate, _local.held = None, False

        return gated


@contextmanager
def released():
    """Give this request's slot back while it blocks on another process (a Celery result, a worker ping), and
    take one again afterwards. Outside a gated request, or without a slot, it does nothing."""
    gate = getattr(_local, "gate", None)
    if gate is None or not _local.held:
        yield
        return
    gate.give()
    _local.held = False
    try:
        yield
    finally:
        _local.held = gate.take()
