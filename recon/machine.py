"""The machine: the one device resolver (where to compute) and one description of what a
result was measured on (benchmarks, training runs, cards)."""

from __future__ import annotations

import functools
import os
import platform
import time
from typing import Literal, get_args


@functools.cache
def _cpuinfo(field: str) -> str | None:
    """The value of the first ``field`` line of ``/proc/cpuinfo`` (Linux), None elsewhere; read once."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def physical_memory() -> int:
    """The machine's physical memory in bytes (``sysconf``), 0 where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def cpu_model() -> str:
    """The CPU's marketing name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown CPU"


def describe_machine(device: str | None = None) -> dict:
    """``{"cpu", "cpu_count", "arch", "torch", "threads", "gpu"?}`` of this process's machine.

    ``device`` (``cuda...``) adds the GPU's name; ``threads`` is torch's intra-op count now.
    """
    import torch

    info = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "arch": platform.machine(),
            "torch": str(torch.__version__),  # a plain str: checkpoints are loaded with weights_only
            "threads": torch.get_num_threads()}
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def machine_line(info: dict) -> str:
    """E.g. ``Intel(R) Xeon(R) ... (2 CPUs, x86_64), torch 2.13.0, 2 threads``."""
    gpu = f"{info['gpu']}, " if info.get("gpu") else ""
    return (f"{gpu}{info.get('cpu', '?')} ({info.get('cpu_count', '?')} CPUs, {info.get('arch', '?')}), "
            f"torch {info.get('torch', '?')}, {info.get('threads', '?')} threads")


#: Device names every settings object accepts (``auto``: CUDA when available, else CPU).
Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)


def resolve_device(name: str):
    """The torch device of a device setting: ``auto`` -> CUDA when available, else CPU.

    An :class:`recon.errors.InputError` for a name not in :data:`DEVICES` and for ``cuda``
    on a machine without CUDA.
    """
    import torch

    from recon.errors import InputError

    if name not in DEVICES:
        raise InputError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but CUDA is not available on this machine "
                         "(choose device cpu or auto)")
    return torch.device(name)


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (Linux; empty elsewhere)."""
    return frozenset((_cpuinfo("flags") or "").split())


def native_bf16(device) -> bool:
    """True where bfloat16 arithmetic is native: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX-BF16 (elsewhere bf16 is emulated and slower than fp32)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device.type == "cpu" and bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def bf16_autocast(device, enabled: bool = True):
    """``torch.autocast`` to bfloat16 on ``device``'s type when ``enabled``, a no-op context
    otherwise: how inference (``precision=bf16``), training (``train.precision``) and the
    benchmark switch the network to bf16."""
    import torch

    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


#: environment variable with the default intra-op thread setting (``auto`` or a count)
THREADS_ENV = "CRUNET_THREADS"


def _usable_cpus() -> set[int]:
    """The CPUs this process may run on (``sched_getaffinity``: a container's or ``taskset``'s limit)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def usable_cores() -> int:
    """Cores this process may run on (``sched_getaffinity``: a container's or ``taskset``'s limit)."""
    return len(_usable_cpus())


#: seconds over which :func:`busy_cores` watches the cores
BUSY_WINDOW = 0.1


def _cpu_ticks(cpus: set[int]) -> tuple[int, int] | None:
    """``(busy, total)`` clock ticks of the CPUs ``cpus`` since boot, from ``/proc/stat`` (Linux);
    None where it cannot be read."""
    busy = total = 0
    try:
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
                    continue
                user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in (fields + ["0"] * 8)[:8])
                busy += user + nice + system + irq + softirq + steal
                total += user + nice + system + idle + iowait + irq + softirq + steal
    except (OSError, ValueError):
        return None
    return (busy, total) if total else None


def busy_cores(window: float = BUSY_WINDOW) -> float | None:
    """How many of this process's cores other work keeps busy now: the busy fraction of the
    CPUs of :func:`usable_cores` over ``window`` seconds (``/proc/stat``, Linux; this process
    sleeps meanwhile), times their count. None where ``/proc/stat`` cannot be read."""
    cpus = _usable_cpus()
    first = _cpu_ticks(cpus)
    if first is None:
        return None
    time.sleep(window)
    second = _cpu_ticks(cpus)
    if second is None or second[1] <= first[1]:
        return None
    return len(cpus) * (second[0] - first[0]) / (second[1] - first[1])


def free_cores() -> int:
    """Cores this process may use that other work is not using now: :func:`usable_cores` minus
    :func:`busy_cores`, rounded, at least 1 (minus the 1-minute load average where the cores'
    counters cannot be read).

    Not the load average alone: it trails the last minute, so a command started right after
    another one (files reconstructed one after another) counted the finished one's work as
    load and ran on half the cores of an idle 2-core machine."""
    usable = usable_cores()
    busy = busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:  # not available on this platform
            busy = 0.0
    return max(1, min(usable, int(usable - busy + 0.5)))


def choose_threads(setting: str | int | None = None, long_running: bool = False) -> int:
    """Set torch's intra-op threads from ``setting`` (``auto``, a count, or None: ``$CRUNET_THREADS``,
    else ``auto``) and return the count.

    ``auto`` for a command that runs and ends = :func:`free_cores` when called: on a busy
    machine fewer threads than cores, since threads waiting for a core make every
    parallel region wait for its slowest thread. For a server (``long_running``) the
    load at start says little about the hours after it: ``auto`` = :func:`usable_cores`,
    and the model runner shares them between its lanes under load
    (:mod:`recon.scheduler`)."""
    import torch

    from recon.errors import InputError

    if setting is None:
        setting = os.environ.get(THREADS_ENV) or "auto"
    text = str(setting).strip().lower()
    if text == "auto":
        n = usable_cores() if long_running else free_cores()
    else:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise InputError(f"threads must be 'auto' or a count >= 1, got {setting!r}"
                             + (f" (from ${THREADS_ENV})" if setting == os.environ.get(THREADS_ENV) else ""))
    torch.set_num_threads(n)
    limit_numpy_blas()
    _CHOSEN.append(n)
    return n


def limit_numpy_blas() -> None:
    """Keep numpy's BLAS to one thread for the rest of the process.

    torch holds the cores (its OpenMP threads); numpy's OpenBLAS keeps its own threads
    spinning for a while after each call, and on a 2-core machine they then compete with
    torch's next parallel region. Measured (2 threads, 128 x 128, 12 frames, 10 coils, 5
    runs, median): crunet_ca 0.42 s a slice after the noise estimate's numpy eigenvalues,
    0.33 s with numpy's BLAS at one thread (the hard-DC model without the estimate: 0.33);
    CG-SENSE 0.61 against 0.50 s. numpy's BLAS work here is small (noise estimates, coil
    whitening), so one thread costs it little. Uses threadpoolctl, which sets the limit on
    the BLAS libraries loaded when it runs: numpy's, imported here first."""
    import numpy  # noqa: F401  (loads the BLAS whose threads are limited)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


_CHOSEN: list[int] = []  # counts set by choose_threads in this process


def set_up_process(threads: str | int | None = None, long_running: bool = False) -> int:
    """What every computing process does first, in this order: one malloc arena (before any of
    its threads allocates: :func:`limit_malloc_arenas`), its torch threads (:func:`choose_threads`,
    whose count it returns) and reuse of freed large arrays (:func:`reuse_freed_memory`)."""
    limit_malloc_arenas()
    n = choose_threads(threads, long_running=long_running)
    reuse_freed_memory()
    return n


def threads_chosen() -> bool:
    """Whether :func:`choose_threads` already ran in this process (the CLI runs it at start)."""
    return bool(_CHOSEN)


#: glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
#: arrays below this size come from the heap and are reused (see :func:`reuse_freed_memory`)
MMAP_THRESHOLD = 256 << 20
#: free memory kept at the heap's top before it is given back to the system: an eighth of the
#: machine's memory (:func:`trim_threshold`), within these bounds
TRIM_THRESHOLD_MIN, TRIM_THRESHOLD_MAX = 512 << 20, 8 << 30


def trim_threshold(memory: int | None = None) -> int:
    """Bytes of freed memory a process keeps at its heap's top: an eighth of ``memory``
    (default: :func:`physical_memory`), at least 512 MiB and at most 8 GiB.

    A slice's working set rises and falls by more than its final size during a
    reconstruction; when that swing exceeds the threshold, glibc gives the top of the heap
    back at each fall and the next rise faults every page in again. Measured (shipped
    crunet_ca, the demo's 192 x 192 x 20 frames x 15 coils, 2 threads, this project's 2-core
    24 GiB machine): 512 MiB let 140,000-290,000 page faults through per slice and the whole
    slice (maps, network, refinement) took 4.5-5.0 s; 3 GiB (this rule here): no faults after the
    first slice, 4.3-4.5 s. The 128 x 128 x 12 x 10 benchmark slice swings less than 512 MiB
    (unchanged). What a process keeps is at most its own peak, which it reaches again with the
    next slice of the same size.
    """
    memory = physical_memory() if memory is None else memory
    return int(min(max(memory // 8, TRIM_THRESHOLD_MIN), TRIM_THRESHOLD_MAX))


def _mallopt(param: int, value: int, env: str) -> bool:
    """glibc ``mallopt(param, value)``; False when ``$env`` is set (the user's setting wins) or off glibc."""
    import ctypes
    import ctypes.util

    if os.environ.get(env):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(param, int(value)))
    except (OSError, AttributeError):
        return False


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Cap glibc's malloc arenas for a long-running multi-threaded server; True when applied.

    glibc gives threads their own arenas (up to 8 per core) and keeps freed memory in
    them, so a server whose connection threads each touch large arrays grows. Measured
    with ``crunet bench --what server`` (crunet_ca, 128 x 128, 3 slices per client):
    idle 1123 -> 895 MiB, peak with 8 clients 2688 -> 2046 MiB, throughput unchanged.
    One arena, not two: a thread's own arena grows in heaps of at most 64 MiB, which glibc
    maps afresh and unmaps as they empty, so the model's worker threads faulted the pages of
    every large tensor in again (the demo's 192 x 192 x 20-frame x 15-coil slice in a worker
    thread: 1.1 million page faults and 8.1 s, against none and 5.4 s in the main thread's
    arena). ``crunet bench --what server --sizes 192 --coils 15``: 1 client 0.300 -> 0.352
    slices/s (one slice at a time 0.253 -> 0.334, first image 4.5 -> 3.1 s), 4 clients 0.336 ->
    0.387 (first image 14.9 -> 10.6 s), peak memory 3547 -> 3737 MiB; at 128 x 128 within noise.
    ``$MALLOC_ARENA_MAX`` set by the user wins; no effect (False) off glibc.
    """
    return _mallopt(_M_ARENA_MAX, arenas, "MALLOC_ARENA_MAX")


def reuse_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim: int | None = None) -> bool:
    """Let glibc reuse freed large arrays instead of mapping fresh pages for each; True when applied.

    By default glibc maps every allocation above 128 KiB-32 MiB afresh and unmaps it on
    free, so each new k-space-sized tensor of a reconstruction (FFT outputs, coil images)
    pays the kernel's page faults again. Serving arrays below ``mmap_threshold`` from
    the heap and keeping up to ``trim`` bytes of free heap (default :func:`trim_threshold`,
    from the machine's memory) makes them reuse memory.
    Measured (crunet_ca forward, 128 x 128 x 12 frames x 10 coils, this project's 2-core
    CPU): bf16 0.65 -> 0.54 s at 1 thread, 0.35 -> 0.30 s at 2 threads; fp32 -7 %. The
    cost: up to ``trim`` bytes of freed memory stays with the process (the server
    benchmark reports its RSS). ``$MALLOC_MMAP_THRESHOLD_`` / ``$MALLOC_TRIM_THRESHOLD_``
    set by the user win; no effect (False) off glibc.
    """
    a = _mallopt(_M_MMAP_THRESHOLD, mmap_threshold, "MALLOC_MMAP_THRESHOLD_")
    b = _mallopt(_M_TRIM_THRESHOLD, trim_threshold() if trim is None else trim, "MALLOC_TRIM_THRESHOLD_")
    return a and b
