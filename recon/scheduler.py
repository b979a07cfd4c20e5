"""One model runner per device, shared by every caller of the process: calls queue, batch and run in lanes.

Every learned reconstruction of a process (each connection of ``crunet serve``, each
connection of ``crunet gadget``, ``crunet recon-file``) goes through the runner of its
device (:func:`runner_for`): ``lanes`` daemon threads that take the queued calls in order.

* **One model per device**: the weights are loaded once per (directory, device)
  (:func:`recon.inference.load_cached`) and only the runner's lanes run them, so the
  number of forwards in flight (and their activation memory) is bounded by ``lanes``
  however many connections there are.
* **Lanes**: a CPU runner has 2 lanes when the machine has 2 or more cores; a CUDA
  runner has 1. A CPU lane that starts a forward while no other lane is busy and nothing
  waits uses all of the process's torch threads (the latency of a lone slice), else an
  even share of them (:meth:`ModelRunner.lane_threads`; with OpenMP the count is per
  thread, so each lane sets its own). Measured on the project's 2-core machine
  (crunet_ca, 128 x 128, 12 frames, 10 coils, bf16): one forward at a time with 2
  threads 1.82 slices/s; two at a time with 1 thread each 2.47, with 2 threads each
  (idle OpenMP threads sleeping, ``OMP_WAIT_POLICY=PASSIVE``) 2.51; one with 1 thread
  1.46. Through ``crunet serve`` (``crunet bench --what server``, 3 slices per client),
  2 threads for every forward: 1.29 slices/s with 1 client, 1.90 with 4; 1 thread for
  every forward: 1.15 and 2.11. A lone connection keeps both lanes busy by
  reconstructing two of its slices side by side (:mod:`gadgets.slicejobs`; 6 slices per
  client, one run: 2.78 slices/s with 1 client, 2.88 with 4, against 1.91 and 2.87 one
  slice at a time per connection).
* **Batching**: when a lane takes a call, calls already waiting with the same ``key``
  (same weights, precision and tensor shapes) join it, up to ``max_batch``, and run as
  one forward (``run(list_of_inputs) -> list_of_outputs``); nothing waits for a batch
  to fill. ``max_batch`` is 4 on CUDA and 1 on a CPU, where batching did not pay
  (same machine, 2 threads: 0.48 s per slice alone, 0.47 in twos, 0.80 in fours).
* **Spare work**: calls made inside :func:`spare` (a connection's second slice,
  :mod:`gadgets.slicejobs`) are taken only when no other call waits, so work that only
  fills idle lanes never delays a slice someone is waiting for first.
* **A failed batch** is retried call by call, so a slice that makes the model fail only
  fails its own call.
* **Cancellation**: a caller waits in short steps, so the asynchronous ``Cancelled`` of
  :class:`gadgets.worker.Worker` reaches it within one step; a call whose caller has
  gone is skipped if it has not started.

Each caller thread waits for its own result, so the queue holds at most one call per
connection worker.

* **The main thread runs its own calls** on a CPU (a one-shot command: ``crunet
  recon-file``, ``evaluate``, ``validate``, ``bench``): libgomp shortens every OpenMP
  thread's spin-wait to almost nothing once the process has more OpenMP worker threads
  than cores, and a lane's team next to the main thread's is one too many on 2 cores.
  Measured (crunet_ca, 128 x 128, 12 frames, 10 coils, bf16, 2 threads, 2 cores): 0.31 s
  per forward in the main thread, 0.45-0.50 s in a second thread once the main thread
  has run a parallel region, 0.31 s there when it has not. Servers still run every
  forward in a lane (their connection threads also run torch work), and pay this.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("crunet.scheduler")

#: the most calls one forward takes on CUDA (a 256 x 256 x 25-frame x 10-coil slice is 130 MB of k-space)
MAX_BATCH_CUDA = 4
#: seconds between checks of a waiting caller (how soon a cancelled caller lets go)
WAIT_STEP = 0.05


_LOCAL = threading.local()


@contextmanager
def spare():
    """Inside: this thread's calls to every runner wait behind the calls of other work (see the module doc)."""
    before = getattr(_LOCAL, "spare", False)
    _LOCAL.spare = True
    try:
        yield
    finally:
        _LOCAL.spare = before


@dataclass(eq=False)
class _Call:
    key: Hashable
    run: Callable[[Sequence[Any]], Sequence[Any]]
    item: Any
    spare: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    abandoned: bool = False


class ModelRunner:
    """Runs submitted calls in ``lanes`` daemon threads, batching calls of the same key (see module doc)."""

    def __init__(self, name: str, lanes: int = 1, max_batch: int = 1, threads: int | None = None):
        if lanes < 1 or max_batch < 1:
            raise ValueError(f"lanes and max_batch must be >= 1, got {lanes} and {max_batch}")
        self.name = name
        self.lanes = lanes
        self.max_batch = max_batch
        self.threads = threads  # CPU: torch threads of a lane running alone (shared evenly when not)
        self._busy = 0  # lanes running a batch (guarded by _cond)
        self._queue: deque[_Call] = deque()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.batch_sizes: Counter[int] = Counter()  # batch size -> how many batches ran with it

    def call(self, key: Hashable, run: Callable[[Sequence[Any]], Sequence[Any]], item: Any) -> Any:
        """``run([item, ...])[i]`` for this ``item``, run in the runner's thread; its error is raised here.

        ``run`` must map a list of items to a list of results of the same length, each
        result depending only on its own item (calls of one ``key`` are batched).
        """
        if self.threads is not None and threading.current_thread() is threading.main_thread():
            with self._cond:
                self.batch_sizes[1] += 1
            return run([item])[0]  # a one-shot command's main thread: its own OpenMP team (module doc)
        c = _Call(key, run, item, spare=getattr(_LOCAL, "spare", False))
        with self._cond:
            self._queue.append(c)
            if not self._threads:
                self._threads = [threading.Thread(target=self._loop, name=f"crunet-model-{self.name}-{i}", daemon=True)
                                 for i in range(self.lanes)]
                for t in self._threads:
                    t.start()
            self._cond.notify()
        try:
            while not c.done.wait(WAIT_STEP):
                pass
        except BaseException:
            c.abandoned = True  # skipped if not started; a running batch finishes for the others
            raise
        if c.error is not None:
            raise c.error
        return c.result

    def _take(self) -> tuple[list[_Call], int]:
        """The next batch and how many threads its lane may use (see :meth:`lane_threads`)."""
        with self._cond:
            while not self._queue:
                self._cond.wait()
            first = next((c for c in self._queue if not c.spare), self._queue[0])
            self._queue.remove(first)
            batch = [first]
            for c in list(self._queue):
                if len(batch) >= self.max_batch:
                    break
                if c.key == first.key:
                    self._queue.remove(c)
                    batch.append(c)
            batch = [c for c in batch if not c.abandoned]
            threads = self.lane_threads(alone=self._busy == 0 and not self._queue)
            if batch:
                self._busy += 1
                self.batch_sizes[len(batch)] += 1  # under the lock: lanes count side by side
        return batch, threads

    def lane_threads(self, alone: bool) -> int | None:
        """Threads for a lane's next forward on a CPU: all of them when it runs alone (no other
        lane busy, nothing queued), else an even share; None leaves torch's setting."""
        if self.threads is None:
            return None
        return self.threads if alone else max(1, self.threads // self.lanes)

    def _loop(self) -> None:
        current = None
        while True:
            batch, threads = self._take()
            if not batch:
                continue
            if threads is not None and threads != current:
                import torch

                torch.set_num_threads(threads)  # OpenMP: this lane's thread only
                current = threads
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._busy -= 1

    def _run(self, batch: list[_Call]) -> None:
        try:
            results = batch[0].run([c.item for c in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} gave {len(results)} results")
        except Exception as exc:  # noqa: BLE001 - handed to the callers
            if len(batch) == 1:
                batch[0].error = exc
                batch[0].done.set()
                return
            log.info("a batch of %d failed (%s); running its calls one by one", len(batch), exc)
            for c in batch:
                self._run([c])
            return
        for c, r in zip(batch, results):
            c.result = r
            c.done.set()


_RUNNERS: dict[str, ModelRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def runner_for(device) -> ModelRunner:
    """The process's runner for ``device`` (``cpu``, ``cuda:0``...), made on first use
    (lanes and batch size as measured, see the module doc)."""
    name = str(device)
    with _RUNNERS_LOCK:
        if name not in _RUNNERS:
            if name.startswith("cuda"):
                _RUNNERS[name] = ModelRunner(name, lanes=1, max_batch=MAX_BATCH_CUDA)
            else:
                import torch

                from recon.machine import usable_cores

                _RUNNERS[name] = ModelRunner(name, lanes=2 if usable_cores() >= 2 else 1, max_batch=1,
                                             threads=torch.get_num_threads())
        return _RUNNERS[name]
