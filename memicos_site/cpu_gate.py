"""At most WEB_CPU_SLOTS requests of a web process run at a time; the others wait for a slot.

gunicorn's gthread worker runs every thread of a process under one GIL. With 16 clients reading back to back on
2 × 8 threads, the GIL handoffs and the cache thrash of 8 interleaved requests cost about a third of the CPU:
bench/load.py measured GET /api/feature at 540 req/s with 2 × 8 threads and 780 with 2 × 1. The threads are still
needed, because a steer, activation, search or autointerp request waits seconds for a worker. So a request holds a
slot while it runs and gives it back while it waits on another process (`released()`). A request that waited
WEB_CPU_SLOT_WAIT_MS for a slot runs without one rather than queue behind one stuck on I/O. Slots go to waiters in
the order they came (CpuGate says why). WEB_CPU_SLOTS=0 turns the gate off.
"""

import threading
from collections import deque
from contextlib import contextmanager

_local = threading.local()  # .gate: the gate of this thread's request; .held: whether it holds a slot now


class CpuGate:
    """A counting semaphore that hands a freed slot to the request that has waited longest. threading.Semaphore
    lets a request that just arrived take a freed slot before the waiter it woke gets the GIL back, and the waiter
    then queues again at the end, so a few requests waited several turns. In bench/load.py's closed loop (16 clients,
    interleaved runs against a server with the Semaphore) the dashboard's p99 fell from ~3.1× its p50 to ~2.1×, the
    API's from ~3.2× to ~2.5×, at the same requests/s."""

    def __init__(self, slots: int, wait_s: float):
        self._slots = self._free = slots
        self._waiters: deque[threading.Lock] = deque()  # each a held lock that give() releases to hand over a slot
        self._mutex = threading.Lock()
        self._wait_s = wait_s

    def take(self) -> bool:
        if self._slots <= 0:
            return False
        with self._mutex:
            if self._free and not self._waiters:
                self._free -= 1
                return True
            handoff = threading.Lock()
            handoff.acquire()
            self._waiters.append(handoff)
        if handoff.acquire(timeout=self._wait_s):
            return True
        with self._mutex:
            try:
                self._waiters.remove(handoff)
            except ValueError:  # give() handed this request a slot just as its patience ran out: it has one
                return True
        return False

    def give(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            elif self._free < self._slots:
                self._free += 1
            else:  # as threading.BoundedSemaphore: a slot given back that no one took is a bug
                raise ValueError("CpuGate.give() without a slot taken")

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
