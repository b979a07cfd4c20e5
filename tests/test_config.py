"""The one validation mechanism (recon.config): every settings object, whatever its source,
gives the same unknown-key and type errors."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pytest

from recon.config import Settings, check_keys, convert, from_dict
from recon.errors import InputError


@dataclass(frozen=True)
class Inner(Settings):
    WHERE = "inner"

    size: tuple[int, int] = (6, 6)

    def check(self) -> None:
        if min(self.size) < 1:
            raise InputError(f"size must be >= 1, got {self.size}")


@dataclass(frozen=True)
class Outer(Settings):
    WHERE = "outer"

    flag: bool = True
    count: int = 1
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)


def test_text_values_parse_to_the_annotated_types():
    o = Outer.from_dict({"flag": "off", "count": " 3 ", "rate": "1e-2", "mode": "b", "limit": "none",
                         "inner": {"size": "4,5"}}, text=True)
    assert o == Outer(False, 3, 0.01, "b", None, Inner((4, 5)))
    assert Outer.from_dict({"limit": "7"}, text=True).limit == 7


def test_typed_values_are_checked_not_parsed():
    with pytest.raises(InputError, match=r"^outer\.count: expected an integer, got '3'$"):
        Outer.from_dict({"count": "3"})
    assert Outer.from_dict({"count": np.int64(3), "rate": 2}).rate == 2.0


@pytest.mark.parametrize("data, text, message", [
    ({"colour": 1}, False, "outer: unknown key(s) colour; valid keys: count, flag, inner, limit, mode, rate"),
    ({"flag": "maybe"}, True, "outer.flag: expected true/false, got 'maybe'"),
    ({"count": "x"}, True, "outer.count: expected an integer, got 'x'"),
    ({"rate": "fast"}, True, "outer.rate: expected a number, got 'fast'"),
    ({"mode": "c"}, False, "outer.mode: 'c' is not one of a, b"),
    ({"inner": {"size": [1]}}, False, "outer.inner.size: expected 2 values, got 1"),
    ({"inner": {"size": [0, 1]}}, False, "outer.inner: size must be >= 1, got (0, 1)"),
    ({"inner": {"sise": [1, 1]}}, False, "outer.inner: unknown key(s) sise; valid keys: size"),
])
def test_errors_name_the_source_and_the_key(data, text, message):
    with pytest.raises(InputError) as e:
        Outer.from_dict(data, text=text)
    assert str(e.value) == message


def test_objects_built_in_code_get_the_same_checks():
    assert Outer().validate() == Outer()
    with pytest.raises(InputError, match=r"^outer\.mode: 'z' is not one of a, b$"):
        Outer(mode="z").validate()
    with pytest.raises(InputError, match=r"^outer\.inner: size must be >= 1"):
        Outer(inner=Inner((0, 0))).validate()


def test_check_keys_and_convert_alone():
    check_keys("x", {"a": 1}, ["a", "b"])
    with pytest.raises(InputError, match="^x: unknown key\\(s\\) c; valid keys: none$"):
        check_keys("x", {"c": 1}, [])
    assert convert("auto", float | str, "lam") == "auto"
    with pytest.raises(InputError, match="^lam: expected one of float, str, got \\[1\\]$"):
        convert([1], float | str, "lam")


def test_every_source_uses_the_mechanism():
    """YAML configs, XML/JSON gadget settings, ESPIRiT options, method options: one message format."""
    from gadgets.settings import GadgetSettings
    from recon.coils.espirit import EspiritOptions
    from recon.methods import check_options
    from recon.models.config import ModelConfig

    for call, where in ((lambda: from_dict(ModelConfig, {"bogus": 1}, "run.yaml"), "run.yaml"),
                        (lambda: GadgetSettings.from_mapping({"bogus": "1"}), "gadget settings"),
                        (lambda: EspiritOptions.from_dict({"bogus": 1}), "ESPIRiT options"),
                        (lambda: check_options("sense", {"bogus": 1}), "method 'sense'")):
        with pytest.raises(InputError) as e:
            call()
        assert str(e.value).startswith(f"{where}: unknown key(s) bogus; valid keys: ")
    with pytest.raises(InputError, match=r"^gadget settings\.series_index: expected an integer, got 'x'$"):
        GadgetSettings.from_mapping({"series_index": "x"})
    with pytest.raises(InputError, match=r"^method 'lps'\.n_iter: expected an integer, got 2\.5$"):
        check_options("lps", {"n_iter": 2.5})


def test_threads_auto_count_or_a_clear_error(monkeypatch):
    import os

    import torch

    from recon import machine
    from recon.machine import THREADS_ENV, choose_threads, free_cores

    before = torch.get_num_threads()
    try:
        usable = len(os.sched_getaffinity(0))
        monkeypatch.setattr(machine, "busy_cores", lambda: 0.0)
        monkeypatch.setattr(os, "getloadavg", lambda: (usable + 5.0, 0.0, 0.0))  # the last minute's, not now
        assert free_cores() == usable
        monkeypatch.setattr(machine, "busy_cores", lambda: usable + 5.0)
        assert free_cores() == 1  # a busy machine: one thread, never zero
        monkeypatch.setattr(machine, "busy_cores", lambda: None)  # counters unreadable: the load average
        assert free_cores() == 1
        monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
        assert free_cores() == usable
        monkeypatch.setattr(machine, "busy_cores", lambda: usable + 5.0)
        assert choose_threads("auto", long_running=True) == usable  # a server: every core, lanes share them
        assert choose_threads(1) == 1 == torch.get_num_threads()
        monkeypatch.setenv(THREADS_ENV, "auto")
        assert choose_threads() == 1
        monkeypatch.setenv(THREADS_ENV, "many")
        with pytest.raises(InputError, match=r"threads must be 'auto' or a count >= 1, got 'many' \(from \$CRUNET"):
            choose_threads()
        with pytest.raises(InputError, match="got '0'"):
            choose_threads("0")
    finally:
        torch.set_num_threads(before)


def test_busy_cores_counts_the_cores_other_work_uses_now(monkeypatch):
    """busy_cores: the busy share of this process's CPUs' clock ticks over the window, times
    their count (two readings of /proc/stat); None when the counters cannot be read."""
    import os

    from recon import machine

    cpus = os.sched_getaffinity(0)
    readings = iter([(100, 1000), (100 + 150 * len(cpus) // 2, 1000 + 150 * len(cpus))])
    monkeypatch.setattr(machine, "_cpu_ticks", lambda _: next(readings))
    assert machine.busy_cores(window=0.0) == pytest.approx(len(cpus) / 2, abs=0.02)  # half of them busy
    monkeypatch.setattr(machine, "_cpu_ticks", lambda _: None)
    assert machine.busy_cores(window=0.0) is None
    monkeypatch.undo()
    if os.path.exists("/proc/stat"):  # the real counters: a number of cores between none and all
        assert 0.0 <= machine.busy_cores(window=0.05) <= len(cpus)


def test_choosing_threads_keeps_numpy_blas_to_one_thread():
    """choose_threads leaves the cores to torch: numpy's BLAS runs one thread afterwards
    (its spinning threads slowed the next torch forward by a quarter on 2 cores)."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from recon.machine import choose_threads

    before = torch.get_num_threads()
    try:
        with threadpool_limits(limits=2, user_api="blas"):  # as numpy starts on a 2-core machine
            choose_threads(2)
            blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
            assert blas and all(i["num_threads"] == 1 for i in blas)
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


_THREAD_SWING = """
import resource, sys, threading
import numpy as np
from recon.machine import limit_malloc_arenas, reuse_freed_memory
if sys.argv[1] == "one":
    assert limit_malloc_arenas()
assert reuse_freed_memory(trim=1 << 30)
faults = []
def work():  # a worker thread's large arrays, allocated and freed twice
    for _ in range(2):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        arrays = [np.ones(10 << 20) for _ in range(3)]  # 3 x 80 MiB
        del arrays
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
t = threading.Thread(target=work)
t.start(); t.join()
print(faults[-1])
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc arenas")
def test_a_worker_thread_reuses_its_large_arrays_in_one_arena():
    """Why servers run with one arena: a thread's own arena maps and unmaps heaps for large
    arrays, so their pages are faulted in again every time; in the main arena they are kept."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    faults = {mode: int(subprocess.run([sys.executable, "-c", _THREAD_SWING, mode], capture_output=True, text=True,
                                       check=True, env=env, timeout=60).stdout)
              for mode in ("one", "default")}
    assert faults["one"] < 100 < faults["default"], faults


def test_malloc_arenas_capped_unless_the_user_chose(monkeypatch):
    from recon.machine import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # the user's setting wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")

    if platform.libc_ver()[0] == "glibc":
        assert limit_malloc_arenas() is True


def test_trim_threshold_is_an_eighth_of_the_memory_within_bounds():
    from recon.machine import TRIM_THRESHOLD_MAX, TRIM_THRESHOLD_MIN, trim_threshold

    assert trim_threshold(24 << 30) == 3 << 30
    assert trim_threshold(1 << 30) == TRIM_THRESHOLD_MIN
    assert trim_threshold(1 << 40) == TRIM_THRESHOLD_MAX
    assert trim_threshold(0) == TRIM_THRESHOLD_MIN  # memory unknown
    assert TRIM_THRESHOLD_MIN <= trim_threshold() <= TRIM_THRESHOLD_MAX


_SWING = """
import resource, sys
import numpy as np
from recon.machine import reuse_freed_memory
assert reuse_freed_memory(trim=int(sys.argv[1]))
def swing():  # 256 MiB in 16 MiB arrays, then all freed
    arrays = [np.ones(2 << 20) for _ in range(16)]
    del arrays
swing()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
swing()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc thresholds")
def test_a_swing_below_the_trim_threshold_faults_no_pages_in_again():
    """The mechanism trim_threshold relies on: freed memory at the heap's top below the
    threshold is kept and reused (no page faults when the same arrays come again); above it,
    it is given back and faulted in again."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    faults = {trim: int(subprocess.run([sys.executable, "-c", _SWING, str(trim)], capture_output=True, text=True,
                                       check=True, env=env, timeout=60).stdout)
              for trim in (1 << 30, 64 << 20)}
    assert faults[1 << 30] < 100 < faults[64 << 20]


def test_freed_memory_reused_unless_the_user_chose(monkeypatch):
    """reuse_freed_memory raises glibc's mmap and trim thresholds (both applied on glibc);
    the user's MALLOC_*_THRESHOLD_ setting wins."""

    from recon.machine import reuse_freed_memory

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    assert reuse_freed_memory() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    if platform.libc_ver()[0] == "glibc":
        assert reuse_freed_memory() is True
