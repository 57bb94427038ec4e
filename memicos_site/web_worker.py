"""gunicorn's gthread worker with its requests run by the web process's CPU gate (memicos_site/cpu_gate.py,
CpuGate.submit) instead of a ThreadPoolExecutor: `gunicorn --worker-class memicos_site.web_worker.GateWorker`."""

from gunicorn.workers.gthread import _DEFER, DEFAULT_WORKER_DATA_TIMEOUT, ThreadWorker

from memicos_site import cpu_gate


class _Pool:
    """What gthread asks of its pool (submit, shutdown), by the gate, which exists only once the app has loaded
    (gthread makes its pool first). Without a gate (WEB_CPU_SLOTS=0), gthread's own pool."""

    def __init__(self, threads: int, fallback):
        self.threads, self.fallback, self.pool = threads, fallback, None

    def submit(self, fn, *args):
        if self.pool is None:
            gate = cpu_gate.active
            if gate is not None and gate.slots:
                gate.start_runners(self.threads)
                self.pool = gate
            else:
                self.pool = self.fallback()
        return self.pool.submit(fn, *args)

    def shutdown(self, wait=True, **kwargs):
        if self.pool is not None:
            self.pool.shutdown(wait=wait, **kwargs)


class GateWorker(ThreadWorker):
    def get_thread_pool(self):
        return _Pool(self.cfg.threads, super().get_thread_pool)

    def handle(self, conn):
        # A new connection may take seconds to send its request: wait for it without holding a slot.
        if not conn.initialized and not conn.data_ready:
            with cpu_gate.released():
                ready = conn.wait_for_data(DEFAULT_WORKER_DATA_TIMEOUT)
            if not ready:
                return _DEFER
        return super().handle(conn)
