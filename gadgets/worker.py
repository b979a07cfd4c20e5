"""One connection's reconstruction worker: slices run in order in a thread that can be cancelled.

The connection's own thread keeps reading the socket while a slice reconstructs,
so it sees at once when the client goes away or the server stops; it then calls
:meth:`Worker.cancel`: slices not started are dropped, and the slice in progress
is interrupted by raising :class:`Cancelled` in the worker thread (CPython's
``PyThreadState_SetAsyncExc``; it takes effect at the next Python bytecode, so
after the torch or numpy call in progress, within a fraction of a second for
every method: their iterations and cascades are Python loops).

``Cancelled`` is a ``BaseException``: the per-slice ``except Exception`` handlers
of the chain do not swallow it. It is raised at most once per worker, and only
while a job runs.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger("crunet.worker")


class Cancelled(BaseException):
    """Raised inside the worker thread to stop the slice in progress."""


_END = object()


class Worker:
    """Runs ``job()`` callables one after another in a daemon thread."""

    def __init__(self, name: str = "crunet-worker"):
        self._jobs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._running = False  # a job is executing (guarded by _lock)
        self._interrupted = False
        self.cancelled = threading.Event()
        self.done = threading.Event()
        self.dropped = 0  # jobs cancelled before they started
        self.interrupted_job = False  # a job was stopped half-way
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        if self.cancelled.is_set():
            self.dropped += 1
            return
        self._jobs.put(job)

    def finish(self) -> None:
        """No more jobs: the thread ends after the queued ones."""
        self._jobs.put(_END)

    def pending(self) -> int:
        return self._jobs.qsize()

    def busy(self) -> bool:
        with self._lock:
            return self._running

    def wait(self, timeout: float | None = None) -> bool:
        """True once the thread has ended."""
        return self.done.wait(timeout)

    def cancel(self, interrupt: bool = True) -> None:
        """Drop the jobs not started; with ``interrupt``, stop the one running too (at most once).

        Called from a job (the worker's own thread) it never interrupts that job.
        """
        self.cancelled.set()
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not _END:
                self.dropped += 1
        self._jobs.put(_END)
        if not interrupt or self._interrupted or threading.current_thread() is self._thread:
            return
        with self._lock:
            if self._running and not self._interrupted:
                self._interrupted = True
                self._raise_in_thread()

    def _raise_in_thread(self) -> None:
        ident = self._thread.ident
        if ident is None or not self._thread.is_alive():
            return
        n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(Cancelled))
        if n != 1:  # 0: the thread is gone; >1 must not happen: undo
            if n > 1:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)
            return
        log.info("interrupting the slice in progress")

    def _loop(self) -> None:
        try:
            while True:
                job = self._jobs.get()
                if job is _END:
                    break
                if self.cancelled.is_set():
                    self.dropped += 1
                    continue
                self._run(job)
        except Cancelled:  # delivered just after a job ended
            self.interrupted_job = True
        finally:
            self.done.set()

    def _run(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._running = True
        t0 = time.perf_counter()
        try:
            job()
        except Cancelled:
            self.interrupted_job = True
            log.info("slice interrupted after %.2f s", time.perf_counter() - t0)
        except Exception:  # noqa: BLE001 - a job reports its own errors; never kill the loop
            log.exception("worker job failed")
        finally:
            with self._lock:
                self._running = False
