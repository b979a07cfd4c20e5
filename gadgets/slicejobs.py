"""One connection's slices, from its assembler to its client: queue, reconstruction, sending.

* **Back-pressure**: slices wait for reconstruction in a bounded queue
  (``Limits.max_queued_slices``, ``crunet serve --max-queued-slices``); when it is full,
  :meth:`SliceJobs.put` (the connection's reader) waits until a slice starts, so the
  client's sends wait in TCP and a client faster than the machine holds a bounded amount
  of memory. A stop, or a client seen gone, ends the wait (``check``).
* **Side by side**: a :class:`gadgets.worker.Worker` with as many threads as the device's
  model runner has lanes (a CPU 2, CUDA 1; ``crunet serve --parallel-slices``); its
  threads beyond the first start a slice only while the server has fewer slices in
  progress than that (:class:`gadgets.worker.Running`), so a lone client's series uses
  the machine and concurrent clients get one slice each; the model runner takes such a
  second slice's forwards only when no other forward waits (:func:`recon.scheduler.spare`).
* **In order**: each slice's images (or its failure) go out in the order the slices
  came, numbered 1, 2, ... in that order (:meth:`gadgets.chain.SliceReconstructor.number`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import ismrmrd

from gadgets.bucket import Bucket
from gadgets.chain import ChainAssembler, ChainError, SliceReconstructor
from gadgets.worker import WAIT_STEP, Running, Worker
from recon.scheduler import spare


class SliceJobs:
    """The slices of one connection (see the module doc).

    ``send_image`` / ``send_text`` send to the client (OSError when it is gone);
    ``lost()`` says why the client is gone (None while it is there), ``on_send_failed``
    records a failed send.
    """

    def __init__(self, recon: SliceReconstructor, assembler: ChainAssembler, *, threads: int, running: Running,
                 max_queued: int, send_image: Callable[[ismrmrd.Image], None], send_text: Callable[[str], None],
                 lost: Callable[[], str | None], on_send_failed: Callable[[OSError], None], name: str):
        self.recon = recon
        self.assembler = assembler
        self.max_queued = max_queued
        self._send_image, self._send_text = send_image, send_text
        self._lost, self._on_send_failed = lost, on_send_failed
        self.worker = Worker(name=name, threads=threads, shared=running, extra=spare)
        self.submitted: list[tuple[int, ...]] = []
        self.finished: list[tuple[int, ...]] = []
        self.errors = 0
        self.held_s = 0.0  # seconds the reader waited for room in the queue

    def put(self, items: list, check: Callable[[], None]) -> None:
        """Queue the assembler's ``items`` (buckets and chain errors), waiting for room;
        ``check()`` raises to end a wait (client gone, server stopping)."""
        slices = {id(item): tuple(sorted({int(a.idx.slice) for a in list(item.data) + list(item.ref)}))
                  for item in items if isinstance(item, Bucket)}
        self.submitted += slices.values()  # before any wait for room: a stop then names them too
        for item in items:
            if isinstance(item, Bucket):
                self._wait_for_room(check)
                sigma = self.assembler.noise_sigma
                self.worker.submit(self._job(lambda b=item, s=sigma, sl=slices[id(item)]: self._reconstruct(b, s, sl)))
            else:
                self.worker.submit(self._job(lambda e=item: lambda: self.report(e)))

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
            if outs and isinstance(outs[0], ChainError):
                self.report(outs[0])
            else:
                for image in self.recon.number(outs):
                    self._send_image(image)
            self.finished.append(slices)
        return send

    def report(self, error: ChainError) -> None:
        """A failed slice or chain error: TEXT, and the marker image with ``error_reporting=image``."""
        self.errors += 1
        self._send_text(error.message)
        if error.slices and self.recon.settings.error_reporting == "image":
            self._send_image(self.recon.failure_image(error))

    def not_reconstructed(self) -> list[int]:
        """Slices received (queued, waiting for room, or still arriving) whose images were not sent."""
        done = {s for sl in self.finished for s in sl}
        left = {s for sl in self.submitted for s in sl} - done
        return sorted(left | set(self.assembler.trigger.open_slices()))
