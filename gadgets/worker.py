"""One connection's reconstruction worker: slices run in ``threads`` threads that can be cancelled.

The connection's own thread keeps reading the socket while slices reconstruct,
so it sees at once when the client goes away or the server stops; it then calls
:meth:`Worker.cancel`: slices not started are dropped, and the slices in progress
are interrupted by raising :class:`Cancelled` in their worker threads (CPython's
``PyThreadState_SetAsyncExc``; it takes effect at the next Python bytecode, so
after the torch or numpy call in progress, within a fraction of a second for
every method: their iterations and cascades are Python loops).

With more than one thread, jobs start in submission order and run side by side;
what a job returns (a callable: e.g. sending its images) runs in submission order,
after the results of every earlier job (or their failure, or their being dropped).

``Cancelled`` is a ``BaseException``: the per-slice ``except Exception`` handlers
of the chain do not swallow it. It is raised at most once per thread, and only
while a job runs there.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

log = logging.getLogger("crunet.worker")


class Cancelled(BaseException):
    """Raised inside the worker thread to stop the slice in progress."""


_END = object()
#: seconds between checks of a job waiting for its turn, or of a thread waiting for room to start one
WAIT_STEP = 0.05


Job = Callable[[], "Callable[[], None] | None"]


class Running:
    """How many jobs run in a group of workers (see :class:`Worker`'s ``shared``)."""

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.count += n


class Worker:
    """Runs ``job()`` callables in ``threads`` daemon threads, started in submission order; what
    a job returns, ``None`` or a callable, is called in submission order (see the module doc)."""

    def __init__(self, name: str = "crunet-worker", threads: int = 1, shared: Running | None = None,
                 extra: Callable[[], AbstractContextManager] = nullcontext):
        """``shared``: the running jobs of every worker of the process (a server's connections);
        then threads beyond the first start a job only while fewer than ``threads`` run in all
        of them (a lone connection uses them all, concurrent ones one each); None: always.
        ``extra``: the context the threads beyond the first run their jobs in (e.g.
        :func:`recon.scheduler.spare`)."""
        if threads < 1:
            raise ValueError(f"a worker needs >= 1 thread, got {threads}")
        self._jobs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._running: set[threading.Thread] = set()  # threads executing a job (guarded by _lock)
        self._interrupted: set[threading.Thread] = set()  # threads Cancelled was raised in
        self._alive = threads
        self.cancelled = threading.Event()
        self.done = threading.Event()
        self.dropped = 0  # jobs cancelled before they started
        self._submitted = 0  # jobs numbered as submitted
        self._turn = 0  # the job whose result runs next
        self._over: set[int] = set()  # later jobs whose turn is already done (failed, dropped, or ran)
        self._order = threading.Condition()
        self.interrupted = 0  # jobs stopped half-way
        self._shared = shared
        self._extra = extra
        self._threads = [threading.Thread(target=self._loop, args=(i > 0,),
                                          name=name if threads == 1 else f"{name}-{i}", daemon=True)
                         for i in range(threads)]
        for t in self._threads:
            t.start()

    def submit(self, job: Job) -> None:
        with self._order:
            seq = self._submitted
            self._submitted += 1
        if self.cancelled.is_set():
            self._drop((seq, job))
            return
        self._jobs.put((seq, job))

    def finish(self) -> None:
        """No more jobs: the threads end after the queued ones."""
        for _ in self._threads:
            self._jobs.put(_END)

    def pending(self) -> int:
        """Jobs submitted and not started."""
        with self._jobs.mutex:
            return sum(1 for j in self._jobs.queue if j is not _END)

    def wait(self, timeout: float | None = None) -> bool:
        """True once every thread has ended."""
        return self.done.wait(timeout)

    def cancel(self, interrupt: bool = True) -> None:
        """Drop the jobs not started; with ``interrupt``, stop the ones running too (at most once each).

        Called from a job (a worker thread) it never interrupts that job.
        """
        self.cancelled.set()
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not _END:
                self._drop(item)
        for _ in self._threads:
            self._jobs.put(_END)
        if not interrupt:
            return
        me = threading.current_thread()
        with self._lock:
            for t in self._running - self._interrupted - {me}:
                self._interrupted.add(t)
                _raise_in(t)

    def _drop(self, item: tuple[int, Job]) -> None:
        self.dropped += 1
        self._settle(item[0])

    def _settle(self, seq: int) -> None:
        """Job ``seq`` is over (its result ran, or it failed or was dropped): later results may run."""
        with self._order:
            self._over.add(seq)
            while self._turn in self._over:
                self._over.discard(self._turn)
                self._turn += 1
            self._order.notify_all()

    def _wait_turn(self, seq: int) -> None:
        with self._order:
            while self._turn < seq:
                self._order.wait(WAIT_STEP)  # in steps: Cancelled reaches a waiting job too

    def _next(self, extra: bool):
        """The next queued item; a thread beyond the first takes a job only while fewer than
        ``threads`` jobs run in the workers of ``shared`` (its end marker always)."""
        if not extra or self._shared is None:
            return self._jobs.get()
        while True:
            with self._jobs.mutex:
                head = self._jobs.queue[0] if self._jobs.queue else None
            if head is _END or (head is not None and self._shared.count < len(self._threads)):
                try:
                    return self._jobs.get_nowait()
                except queue.Empty:  # another thread took it
                    pass
            time.sleep(WAIT_STEP)

    def _loop(self, extra: bool) -> None:
        try:
            while True:
                item = self._next(extra)
                if item is _END:
                    break
                if self.cancelled.is_set():
                    self._drop(item)
                    continue
                with self._extra() if extra else nullcontext():
                    self._run(*item)
        except Cancelled:  # delivered just after a job ended
            self.interrupted += 1
        finally:
            with self._lock:
                self._alive -= 1
                if self._alive == 0:
                    self.done.set()

    def _run(self, seq: int, job: Job) -> None:
        me = threading.current_thread()
        with self._lock:
            self._running.add(me)
        if self._shared is not None:
            self._shared.add(1)
        t0 = time.perf_counter()
        try:
            then = job()
            if then is not None:
                self._wait_turn(seq)
                then()
        except Cancelled:
            self.interrupted += 1
            log.info("slice interrupted after %.2f s", time.perf_counter() - t0)
        except Exception:  # noqa: BLE001 - a job reports its own errors; never kill the loop
            log.exception("worker job failed")
        finally:
            if self._shared is not None:
                self._shared.add(-1)
            self._settle(seq)
            with self._lock:
                self._running.discard(me)


def _raise_in(thread: threading.Thread) -> None:
    """Raise :class:`Cancelled` in ``thread`` at its next bytecode."""
    ident = thread.ident
    if ident is None or not thread.is_alive():
        return
    n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(Cancelled))
    if n != 1:  # 0: the thread is gone; >1 must not happen: undo
        if n > 1:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)
        return
    log.info("interrupting the slice in progress")
