"""Benchmark: ``crunet serve`` under 1, 4, 8... concurrent clients — latency, throughput, memory.

One server runs as users run it, ``crunet serve`` in its own process (with this
process's torch threads); each client replays the same simulated multi-slice raw file
through the replay client (:func:`gadgets.client.replay`), from threads of this process,
at the same time as the others. Per number of
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
* ``rss_mb_peak``: the server process's peak resident memory while the clients ran
  (``rss_mb_idle``: after the warm-up, model loaded);
* ``one_at_a_time``: the one-client row of a server that reconstructs one slice of a
  connection at a time (``--parallel-slices 1``), and ``side_by_side_gain``, the
  default's one-client throughput over it: what reconstructing a connection's slices
  side by side gives a lone client, in the same run.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch


def _rss_mb(pid: int | str = "self") -> float:
    """A process's resident set size in MiB (Linux ``/proc``; 0 elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class _RssPeak:
    """Samples process ``pid``'s RSS every ``every`` s in a thread, inside ``with``."""

    def __init__(self, pid: int, every: float = 0.1):
        self.pid, self.every, self.peak = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb(self.pid))
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, _rss_mb(self.pid))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(server: subprocess.Popen, port: int, log: Path, timeout: float = 120.0) -> None:
    """Until ``crunet serve`` accepts connections on ``port`` (a RuntimeError with its log if it exits)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.poll() is not None:
            raise RuntimeError(f"crunet serve exited with status {server.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"crunet serve did not listen on port {port} within {timeout:g} s")


def _slice_latencies(res) -> tuple[list[float], list[bool]]:
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


def _serve_and_replay(raw: Path, work: Path, clients: tuple[int, ...], n_slices: int, n_phases: int, chain: str,
                      pace: float, extra_args: tuple[str, ...] = ()) -> tuple[list[dict], float]:
    """Start ``crunet serve`` (with ``extra_args``), warm it up, replay ``raw`` with each number of
    concurrent ``clients``; the rows of the module doc and the idle RSS."""
    from gadgets.client import replay

    port = _free_port()
    log = open(work / "serve.log", "w")  # noqa: SIM115 - closed in finally; a file, so a full pipe never blocks it
    server = subprocess.Popen([sys.executable, "-m", "crunet", "serve", "--port", str(port), "--log-level", "WARNING",
                               "--max-connections", str(max(clients) + 1), "--threads", str(torch.get_num_threads()),
                               *extra_args], stdout=subprocess.DEVNULL, stderr=log)
    rows, idle = [], 0.0
    try:
        _wait_listening(server, port, work / "serve.log")
        replay(raw, None, port=port, config=chain, group="warm-up")
        idle = _rss_mb(server.pid)
        for n in clients:
            results: list = [None] * n

            def one(i: int) -> None:
                results[i] = replay(raw, None, port=port, config=chain, group=f"client {i}", pace=pace)

            with _RssPeak(server.pid) as rss:
                t0 = time.perf_counter()
                threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                seconds = time.perf_counter() - t0
            latencies, early = [], []
            for r in results:
                lat, ok = _slice_latencies(r)
                latencies += lat
                early += ok
            first = [r.arrivals[0] if r.arrivals else None for r in results]
            rows.append({
                "clients": n, "seconds": seconds, "slices_per_s": n * n_slices / seconds, "first_image_s": first,
                "first_image_s_median": float(np.median([x for x in first if x is not None] or [np.nan])),
                "slice_latency_s": latencies, "before_next_slice": early,
                "images": sum(len(r.images) for r in results), "images_expected": n * n_slices * n_phases,
                "texts": [t for r in results for t in r.texts + r.problems], "rss_mb_peak": rss.peak,
            })
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    return rows, idle


def bench_server(clients: tuple[int, ...] = (1, 4, 8), n_slices: int = 3, shape: tuple[int, int] = (96, 96),
                 n_phases: int = 12, n_coils: int = 8, acceleration: int = 8, chain: str = "crunet",
                 pace: float = 0.0, workdir: str | Path | None = None, one_at_a_time: bool = True) -> dict:
    """Replay an ``n_slices`` simulated series through ``chain`` with each number of concurrent ``clients``.

    Returns a JSON-ready dict (see the module doc); one warm-up replay first loads the model.
    ``one_at_a_time``: also replay with one client through a server that reconstructs one
    slice of a connection at a time (``--parallel-slices 1``), in the same run:
    ``one_at_a_time`` and ``side_by_side_gain`` (one client's throughput, default over that).
    """
    import tempfile

    from recon.simulate.cine import SimulationConfig, simulate_to_file

    if not clients or min(clients) < 1:
        raise ValueError(f"clients must be >= 1, got {clients}")
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    work = Path(tmp.name if tmp else workdir)
    try:
        raw = work / "bench_server_raw.h5"
        simulate_to_file(SimulationConfig(n_slices=n_slices, n_phases=n_phases, n_coils=n_coils, matrix=tuple(shape),
                                          acceleration=acceleration, noise_scan=False), raw)
        rows, idle = _serve_and_replay(raw, work, clients, n_slices, n_phases, chain, pace)
        single = (_serve_and_replay(raw, work, (1,), n_slices, n_phases, chain, pace, ("--parallel-slices", "1"))[0][0]
                  if one_at_a_time else None)
    finally:
        if tmp:
            tmp.cleanup()
    one_client = next((r["slices_per_s"] for r in rows if r["clients"] == 1), None)
    for r in rows:
        r["throughput_ratio"] = r["slices_per_s"] / one_client if one_client else None
    out = {"chain": chain, "rss_mb_idle": idle, "slices": n_slices, "shape": list(shape), "phases": n_phases,
           "coils": n_coils, "acceleration": acceleration, "pace_s": pace, "threads": torch.get_num_threads(),
           "runs": rows}
    if single is not None:
        out["one_at_a_time"] = single
        out["side_by_side_gain"] = one_client / single["slices_per_s"] if one_client else None
    return out
