"""Benchmark: ``crunet serve`` under 1, 4, 8... concurrent clients — latency, throughput, memory.

One server runs in this process (:func:`gadgets.server.start_background`); each
client replays the same simulated multi-slice raw file through the replay client
(:func:`gadgets.client.replay`) at the same time as the others. Per number of
clients the result holds:

* ``seconds``: wall time from the first client's start to the last client's end;
  ``slices_per_s``: slices reconstructed per second over all clients, and its ratio to
  one client (``throughput_ratio``: > 1 when concurrent connections use the machine
  better than one does alone);
* ``first_image_s``: per client, seconds from its first byte sent to its first image;
  ``slice_latency_s``: per slice, seconds from its last line sent to its first image
  (when ``pace`` > 0: the lines are sent at a scanner's pace, so a slice's images can
  come back while the next slice is still arriving, ``before_next_slice``);
* ``images`` received against ``images_expected`` (nothing may be lost), ``texts``
  (the server's failure messages, expected none);
* ``rss_mb_peak``: this process's peak resident memory while the clients ran;
* ``batches``: how many forwards the per-device model runner ran with 1, 2, ...
  slices (:mod:`recon.scheduler`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch


def _rss_mb() -> float:
    """This process's resident set size in MiB (Linux ``/proc``; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class _RssPeak:
    """Samples the RSS every ``every`` s in a thread between ``start()`` and ``stop()``."""

    def __init__(self, every: float = 0.1):
        self.every, self.peak = every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, _rss_mb())


def _slice_latencies(res, n_phases: int) -> tuple[list[float], list[bool]]:
    """Per slice: first image arrival minus the time its last line was sent; and whether that
    first image came before the next slice's last line was sent."""
    first: dict[int, float] = {}
    for img, t in zip(res.images, res.arrivals):
        first.setdefault(int(img.slice), t)
    latency, early = [], []
    for s, sent in sorted(res.slices_sent.items()):
        if s in first:
            latency.append(first[s] - sent)
            nxt = res.slices_sent.get(s + 1)
            if nxt is not None:
                early.append(first[s] < nxt)
    return latency, early


def bench_server(clients: tuple[int, ...] = (1, 4, 8), n_slices: int = 3, shape: tuple[int, int] = (96, 96),
                 n_phases: int = 12, n_coils: int = 8, acceleration: int = 8, chain: str = "crunet",
                 pace: float = 0.0, workdir: str | Path | None = None) -> dict:
    """Replay an ``n_slices`` simulated series through ``chain`` with each number of concurrent ``clients``.

    Returns a JSON-ready dict (see the module doc); one warm-up replay first loads the model.
    """
    import tempfile

    from gadgets.client import replay
    from gadgets.server import start_background
    from recon.scheduler import runner_for
    from recon.simulate.cine import SimulationConfig, simulate_to_file

    if not clients or min(clients) < 1:
        raise ValueError(f"clients must be >= 1, got {clients}")
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    work = Path(tmp.name if tmp else workdir)
    raw = work / "bench_server_raw.h5"
    simulate_to_file(SimulationConfig(n_slices=n_slices, n_phases=n_phases, n_coils=n_coils, matrix=tuple(shape),
                                      acceleration=acceleration, noise_scan=False), raw)
    server, _ = start_background(max_connections=max(clients) + 1)
    runner = runner_for("cuda:0" if torch.cuda.is_available() else "cpu")
    rows = []
    try:
        replay(raw, None, port=server.port, config=chain, group="warm-up")
        for n in clients:
            results: list = [None] * n
            before = len(runner.batches)

            def one(i: int) -> None:
                results[i] = replay(raw, None, port=server.port, config=chain, group=f"client {i}", pace=pace)

            with _RssPeak() as rss:
                t0 = time.perf_counter()
                threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                seconds = time.perf_counter() - t0
            latencies, early = [], []
            for r in results:
                lat, ok = _slice_latencies(r, n_phases)
                latencies += lat
                early += ok
            rows.append({
                "clients": n, "seconds": seconds, "slices_per_s": n * n_slices / seconds,
                "first_image_s": [r.arrivals[0] if r.arrivals else None for r in results],
                "slice_latency_s": latencies, "before_next_slice": early,
                "images": sum(len(r.images) for r in results), "images_expected": n * n_slices * n_phases,
                "texts": [t for r in results for t in r.texts + r.problems],
                "rss_mb_peak": rss.peak, "batches": dict(Counter(runner.batches[before:])),
            })
    finally:
        server.shutdown(grace=5)
        server.server_close()
        if tmp:
            tmp.cleanup()
    one_client = next((r["slices_per_s"] for r in rows if r["clients"] == 1), None)
    for r in rows:
        r["throughput_ratio"] = r["slices_per_s"] / one_client if one_client else None
        r["first_image_s_median"] = float(np.median([x for x in r["first_image_s"] if x is not None] or [np.nan]))
    return {"chain": chain, "slices": n_slices, "shape": list(shape), "phases": n_phases, "coils": n_coils,
            "acceleration": acceleration, "pace_s": pace, "threads": torch.get_num_threads(), "runs": rows}
