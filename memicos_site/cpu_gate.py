"""At most WEB_CPU_SLOTS requests of a web process run at a time; the others wait for a slot.

gunicorn's gthread worker runs every thread of a process under one GIL. With 16 clients reading back to back on
2 × 8 threads, the GIL handoffs and the cache thrash of 8 interleaved requests cost about a third of the CPU:
bench/load.py measured GET /api/feature at 540 req/s with 2 × 8 threads and 780 with 2 × 1. The threads are still
needed, because a steer, activation, search or autointerp request waits seconds for a worker. So a request holds a
slot while it runs and gives it back while it waits on another process (`released()`). A request that waited
WEB_CPU_SLOT_WAIT_MS for a slot runs without one rather than queue behind one stuck on I/O. Slots go to waiters in
the order they came (CpuGate says why). WEB_CPU_SLOTS=0 turns the gate off.

Under gunicorn, memicos_site.web_worker.GateWorker makes the gate the worker's thread pool too (CpuGate.submit): a
request gets its thread only with a slot, and the thread that finishes one runs the next, so a busy process keeps
about WEB_CPU_SLOTS threads running instead of waking one per request.
"""

import threading
import time
from collections import deque
from concurrent.futures import Future
from contextlib import contextmanager

# The gate wrap() put in front of this process's WSGI app; memicos_site/web_worker.py runs requests by it.
active = None
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
        # The run queue (submit()): requests not started yet, and idle runner threads, each waiting on a held lock
        # that hands it a slot; the runner that went idle last is woken first (its stack is still in cache).
        self._work: deque[tuple[Future, object, tuple, float]] = deque()
        self._idle: list[threading.Lock] = []
        self._runners = 0
        self._max_runners = 0
        self._closed = False

    @property
    def slots(self) -> int:
        return self._slots

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
            self._pass()

    def _pass(self) -> None:
        """Let go of a slot (the mutex held): to the longest waiter, else with queued work to a runner, else free."""
        if self._waiters:
            self._waiters.popleft().release()
        elif self._work and self._wake_runner():
            pass
        elif self._free < self._slots:
            self._free += 1
        else:  # as threading.BoundedSemaphore: a slot given back that no one took is a bug
            raise ValueError("CpuGate.give() without a slot taken")

    def _wake_runner(self) -> bool:
        """Hand a slot to an idle runner, or to a new one (the mutex held); False when every runner is busy."""
        if self._idle:
            self._idle.pop().release()
        elif self._runners < self._max_runners:
            self._spawn(True)
        else:
            return False
        return True

    def _spawn(self, held: bool) -> None:
        self._runners += 1
        threading.Thread(target=self._run, args=(held,), daemon=True, name="cpu-gate-runner").start()

    # ---- run queue: a thread pool whose threads run only while they hold a slot

    def start_runners(self, max_runners: int) -> None:
        """Let submit() run work on at most `max_runners` threads (a web worker's thread count)."""
        self._max_runners = max_runners

    def submit(self, fn, *args) -> Future:
        """Run fn(*args) on a runner thread once a slot is free, as ThreadPoolExecutor.submit (gunicorn's gthread
        worker calls it for each request). A runner that finishes a request takes the next queued one with the slot
        it holds: under load the same few threads run back to back, instead of each request waking a thread that
        then queues for the GIL. bench/load.py, closed loop, interleaved: the page at ~1.25× the requests/s of
        gthread's own pool behind the gate, as much as 2 threads a process without the gate, while a request that
        waits on a worker (released()) lets another run."""
        future = Future()
        with self._mutex:
            if self._closed:
                raise RuntimeError("CpuGate: submit() after shutdown()")
            self._work.append((future, fn, args, time.monotonic()))
            if self._free and not self._waiters:
                self._free -= 1
                if not self._wake_runner():
                    self._free += 1  # every runner is busy: the next one to finish takes this work
            elif not self._idle and self._runners < self._max_runners:
                self._spawn(False)  # an idle runner, to run this work without a slot if its patience runs out
        return future

    def shutdown(self, wait: bool = True, **_) -> None:
        with self._mutex:
            self._closed = True
            for lock in self._idle:
                lock.release()
            self._idle.clear()

    def _run(self, held: bool) -> None:
        """A runner: while it holds a slot, take queued work; without work (or a slot), sleep until handed one. A
        request that has waited WEB_CPU_SLOT_WAIT_MS runs without a slot, as take() lets a request do."""
        _local.gate = self
        while True:
            item = None
            with self._mutex:
                if self._closed:
                    self._runners -= 1
                    return
                if not held and self._free and not self._waiters and self._work:
                    self._free -= 1
                    held = True
                if held and self._work and not self._waiters:
                    item = self._work.popleft()
                else:
                    if held:
                        self._pass()
                        held = False
                    wake = threading.Lock()
                    wake.acquire()
                    self._idle.append(wake)
            if item is None:
                if wake.acquire(timeout=self._wait_s or None):
                    held = not self._closed  # handed a slot (or woken to stop)
                    continue
                with self._mutex:
                    try:
                        self._idle.remove(wake)
                    except ValueError:  # handed a slot just as the wait ran out
                        held = not self._closed
                        continue
                    if not (self._work and time.monotonic() - self._work[0][3] >= self._wait_s):
                        continue
                    item = self._work.popleft()  # it waited its patience out: run it without a slot
            future, fn, args, _ = item
            _local.held = held
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)
            held = _local.held  # released() may have given the slot back and not got one again

    def wrap(self, app):
        """The WSGI app behind the gate. Only the app call holds a slot, unless the server runs the whole request by
        submit() (memicos_site/web_worker.py), which then holds the slot from reading the request to writing the
        response."""
        global active
        active = self

        def gated(environ, start_response):
            if getattr(_local, "gate", None) is self:  # a runner of this gate: the request already has its slot
                return app(environ, start_response)
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
