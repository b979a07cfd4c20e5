"""One connection's slices, from its reader to its peer: queue, reconstruction, sending in order.

Used by both ends that reconstruct buckets: ``crunet serve``'s sessions
(:mod:`gadgets.session`, buckets from the chain's assembler) and the external gadget
under Gadgetron (:mod:`gadgets.gadget`, buckets from Gadgetron's accumulator).

* **Back-pressure**: slices wait for reconstruction in a bounded queue
  (``Limits.max_queued_slices``, ``crunet serve --max-queued-slices``); when it is full,
  :meth:`SliceJobs.put` (the connection's reader) waits until a slice starts, so the
  peer's sends wait in TCP and a peer faster than the machine holds a bounded amount
  of memory here. A stop, or a client seen gone, ends the wait (``check``).
* **Side by side**: a :class:`gadgets.worker.Worker` with as many threads as the device's
  model runner has lanes (a CPU 2, CUDA 1; ``crunet serve --parallel-slices``); its
  threads beyond the first start a slice only while the server has fewer slices in
  progress than that (:class:`gadgets.worker.Running`), so a lone client's series uses
  the machine and concurrent clients get one slice each; the model runner takes such a
  second slice's forwards only when no other forward waits (:func:`recon.scheduler.spare`).
* **In order**: each slice's images (or its failure), and every message passed
  through, go out in the order they came, images numbered 1, 2, ... in that order
  (:meth:`gadgets.chain.SliceReconstructor.number`); one send at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gadgets.bucket import Bucket
from gadgets.chain import ChainError, SliceReconstructor
from gadgets.worker import WAIT_STEP, Running, Worker
from recon.scheduler import spare


class SliceJobs:
    """The slices of one connection (see the module doc).

    ``send`` sends a message (an image, or an item passed through) to the peer, ``report``
    reports a :class:`~gadgets.chain.ChainError` (both raise OSError when the peer is gone),
    both in order; ``lost()`` says why the peer is gone (None while it is there),
    ``on_send_failed`` records a failed send. ``noise_sigma()`` is the noise level of the
    slices queued now, ``open_slices()`` the slices still arriving (the chain's assembler).
    """

    def __init__(self, recon: SliceReconstructor, *, threads: int, running: Running, max_queued: int,
                 send: Callable[[object], None], report: Callable[[ChainError], None],
                 lost: Callable[[], str | None], on_send_failed: Callable[[OSError], None], name: str,
                 noise_sigma: Callable[[], float | None] = lambda: None,
                 open_slices: Callable[[], list[int]] = list):
        self.recon = recon
        self.max_queued = max_queued
        self._send, self._report = send, report
        self._lost, self._on_send_failed = lost, on_send_failed
        self._noise_sigma, self._open_slices = noise_sigma, open_slices
        self.worker = Worker(name=name, threads=threads, shared=running, extra=spare)
        self.submitted: list[tuple[int, ...]] = []
        self.finished: list[tuple[int, ...]] = []
        self.held_s = 0.0  # seconds the reader waited for room in the queue

    def put(self, items: list, check: Callable[[], None]) -> None:
        """Queue ``items`` (buckets, chain errors, messages to pass through) in order, waiting
        for room before each bucket; ``check()`` raises to end a wait (peer gone, stopping)."""
        slices = {id(item): tuple(sorted({int(a.idx.slice) for a in list(item.data) + list(item.ref)}))
                  for item in items if isinstance(item, Bucket)}
        self.submitted += slices.values()  # before any wait for room: a stop then names them too
        for item in items:
            if isinstance(item, Bucket):
                self._wait_for_room(check)
                sigma = self._noise_sigma()
                self.worker.submit(self._job(lambda b=item, s=sigma, sl=slices[id(item)]: self._reconstruct(b, s, sl)))
            elif isinstance(item, ChainError):
                self.worker.submit(self._job(lambda e=item: lambda: self._report(e)))
            else:
                self.worker.submit(self._job(lambda m=item: lambda: self._send(m)))

    def _wait_for_room(self, check: Callable[[], None]) -> None:
        t0 = time.monotonic()
        while self.worker.pending() >= self.max_queued and not self.worker.wait(WAIT_STEP):
            check()
        self.held_s += time.monotonic() - t0

    def _job(self, compute):
        """A worker job: ``compute()`` (side by side with the connection's other slices) returns
        what sends its results, which the worker runs in submission order."""
        def run():
            if self._lost() is not None:
                return None
            send = compute()

            def then() -> None:
                if self._lost() is not None:
                    return
                try:
                    send()
                except OSError as exc:
                    self._on_send_failed(exc)
                    self.worker.cancel(interrupt=False)
            return then
        return run

    def _reconstruct(self, bucket: Bucket, sigma: float | None, slices: tuple[int, ...]):
        outs = self.recon.safe_bucket(bucket, noise_sigma=sigma, number=False)

        def send() -> None:
            done = outs if outs and isinstance(outs[0], ChainError) else self.recon.safe_number(outs, bucket)
            for out in done:
                if isinstance(out, ChainError):
                    self._report(out)
                else:
                    self._send(out)
            self.finished.append(slices)
        return send

    def not_reconstructed(self) -> list[int]:
        """Slices received (queued, waiting for room, or still arriving) whose images were not sent."""
        done = {s for sl in self.finished for s in sl}
        left = {s for sl in self.submitted for s in sl} - done
        return sorted(left | set(self._open_slices()))
