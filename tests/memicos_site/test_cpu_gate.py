"""memicos_site/cpu_gate.py: at most N requests of a web process run at a time, waits on other processes give
their slot back, and a request never waits forever for one."""

import threading
import time

import pytest

from memicos_site.cpu_gate import CpuGate, released


def _start(app, n: int = 1, environ: dict | None = None) -> list[threading.Thread]:
    threads = [threading.Thread(target=app, args=(environ or {}, None)) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def _while_one_holds(gated, environ: dict) -> tuple[threading.Thread, float]:
    """A first request in the background, given time to take its slot; then the time the second one starts."""
    (first,) = _start(gated, environ=environ)
    time.sleep(0.05)
    return first, time.monotonic()


class _Peak:
    """How many requests were inside `with peak:` at once, at most."""

    def __init__(self):
        self.running, self.most, self._lock = 0, 0, threading.Lock()

    def __enter__(self):
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)

    def __exit__(self, *exc):
        with self._lock:
            self.running -= 1


@pytest.mark.parametrize("slots", [1, 2])
def test_at_most_slots_requests_run_at_once_and_all_of_them_run(slots):
    peak, done = _Peak(), []

    def app(environ, start_response):
        with peak:
            time.sleep(0.02)
        done.append(1)
        return [b"ok"]

    for t in _start(CpuGate(slots, wait_s=10).wrap(app), 8):
        t.join(10)
    assert (peak.most, len(done)) == (slots, 8)


def test_a_request_waiting_on_another_process_lets_the_next_one_run():
    worker_done, order = threading.Event(), []

    def app(environ, start_response):
        if environ.get("waits"):
            with released():  # e.g. a Celery result
                worker_done.wait(10)
            order.append("waiter")
        else:
            order.append("reader")
            worker_done.set()
        return [b"ok"]

    gated = CpuGate(1, wait_s=10).wrap(app)
    waiter, started = _while_one_holds(gated, {"waits": True})
    gated({}, None)  # would wait the full 10 s for the slot had the waiter kept it
    waiter.join(10)
    assert order == ["reader", "waiter"] and time.monotonic() - started < 5


def test_a_request_runs_without_a_slot_after_waiting_its_patience():
    release = threading.Event()

    def app(environ, start_response):
        if environ.get("hog"):
            release.wait(10)  # holds the slot: I/O that does not give it back
        return [b"ok"]

    gated = CpuGate(1, wait_s=0.1).wrap(app)
    hog, started = _while_one_holds(gated, {"hog": True})
    assert gated({}, None) == [b"ok"]
    waited = time.monotonic() - started
    release.set()
    hog.join(10)
    assert 0.09 <= waited < 2
    # the impatient request gave back no slot it did not take (a BoundedSemaphore would raise): one slot again
    assert gated({}, None) == [b"ok"]


def test_an_exception_gives_the_slot_back():
    def app(environ, start_response):
        raise RuntimeError("view crashed")

    gate = CpuGate(1, wait_s=0.5)
    with pytest.raises(RuntimeError):
        gate.wrap(app)({}, None)
    assert gate.take()  # the slot is free


def test_no_slots_means_no_gate_and_released_outside_a_request_does_nothing():
    gate = CpuGate(0, wait_s=0.5)
    assert not gate.take()
    with released():
        pass
    assert gate.wrap(lambda environ, start_response: [b"ok"])({}, None) == [b"ok"]


def test_a_freed_slot_goes_to_the_longest_waiter_not_to_a_request_that_just_arrived():
    gate, entered = CpuGate(1, wait_s=10), []
    assert gate.take()  # a request holds the only slot

    def waiter(name):
        assert gate.take()
        entered.append(name)
        gate.give()

    threads = []
    for name in ("first", "second", "third"):
        threads.append(threading.Thread(target=waiter, args=(name,)))
        threads[-1].start()
        time.sleep(0.05)  # queued in this order
    gate._wait_s = 0.0  # the next take() tries once; the three are already waiting with 10 s of patience
    gate.give()  # handed to "first" at once: a request arriving now finds no free slot (a Semaphore would let it in)
    assert gate.take() is False
    for t in threads:
        t.join(10)
    assert entered == ["first", "second", "third"]
    assert gate.take()  # and the slot is free again
    with pytest.raises(ValueError):
        gate.give(), gate.give()  # one more than was taken


# ---- the run queue (CpuGate.submit), which memicos_site/web_worker.GateWorker gives gunicorn as its thread pool


def _queue(slots: int, runners: int = 4, wait_s: float = 10) -> CpuGate:
    gate = CpuGate(slots, wait_s=wait_s)
    gate.start_runners(runners)
    return gate


def test_submit_runs_every_request_at_most_slots_at_once_and_returns_results_and_errors():
    gate, peak = _queue(2, runners=6), _Peak()

    def work(i):
        with peak:
            time.sleep(0.01)
        if i == 7:
            raise RuntimeError("request 7 failed")
        return i * i

    futures = [gate.submit(work, i) for i in range(20)]
    assert [f.exception(10) is None and f.result() for f in futures if f is not futures[7]] == [
        i * i for i in range(20) if i != 7
    ]
    assert "request 7 failed" in str(futures[7].exception())
    assert peak.most == 2
    gate.shutdown()


def test_a_runner_that_finishes_takes_the_queued_requests_itself():
    """Under load the thread that holds the slot runs the next request: no thread is woken for each one (what
    made gthread's own pool behind the gate cost a quarter more CPU per request)."""
    gate, go, names = _queue(1, runners=8), threading.Event(), []
    first = gate.submit(go.wait, 10)
    time.sleep(0.05)
    futures = [gate.submit(lambda: names.append(threading.current_thread().ident)) for _ in range(10)]
    go.set()
    first.result(10)
    for f in futures:
        f.result(10)
    assert len(names) == 10 and len(set(names)) == 1
    gate.shutdown()


def test_a_request_waiting_on_a_worker_lets_a_queued_one_run_then_gets_a_slot_again():
    gate, reply, order = _queue(1), threading.Event(), []

    def steer():
        order.append("steer starts")
        with released():  # waits on an inference worker
            reply.wait(10)
        order.append("steer answers")

    def page():
        order.append("page")
        reply.set()

    a = gate.submit(steer)
    time.sleep(0.05)
    b = gate.submit(page)
    a.result(10), b.result(10)
    assert order == ["steer starts", "page", "steer answers"]
    assert gate.take()  # the slot is free again
    gate.give()
    gate.shutdown()


def test_a_queued_request_runs_without_a_slot_once_its_patience_runs_out():
    gate, stuck = _queue(1, wait_s=0.2), threading.Event()
    held = gate.submit(stuck.wait, 10)  # holds the only slot (a slow client, say) and never gives it back
    time.sleep(0.05)
    t = time.monotonic()
    assert gate.submit(lambda: "served").result(5) == "served"
    assert 0.15 <= time.monotonic() - t < 2
    stuck.set()
    held.result(5)
    gate.shutdown()
