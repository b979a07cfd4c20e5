"""How near a network runs to the machine's arithmetic limit: FLOPs of one call and the
device's measured matrix-multiply rate.

The network's work is almost all convolutions, which torch lowers to matrix multiplies;
the rate of one large square matmul at the same thread count is therefore the practical
ceiling for it on that device (``fraction`` = network GFLOP/s / matmul GFLOP/s).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

#: Side of the square matmul timed for the rate: large enough to run at the BLAS's peak on
#: a CPU (2 x 2048^3 = 17 GFLOP, about 0.1-0.2 s on 2 AVX2 cores) and to fill a GPU.
MATMUL_SIZE = 2048


def count_flops(fn: Callable[[], object], inference: bool = True) -> int:
    """FLOPs of convolutions and matrix multiplies in one call of ``fn`` (torch's
    ``FlopCounterMode``; FFTs and elementwise ops are not counted), under inference mode
    unless ``inference=False`` (a training step: its backward pass counts too)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(inference), counter:
        fn()
    return int(counter.get_total_flops())


def matmul_rate(device: torch.device, dtype: torch.dtype = torch.float32, size: int = MATMUL_SIZE,
                repeats: int = 5, tf32: bool = False) -> float:
    """Median GFLOP/s of a ``size`` x ``size`` by ``size`` x ``size`` matmul in ``dtype`` on
    ``device`` at the current thread count (one untimed call first; on CUDA, TF32 only
    when ``tf32``)."""
    from recon.pipeline import sync_device

    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
    seconds = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            a @ b
            sync_device(device)
            if i:
                seconds.append(time.perf_counter() - t0)
    return 2 * size**3 / float(np.median(seconds)) / 1e9


def emulated_bf16_note(device: torch.device) -> str | None:
    """The ``n/a`` note of a bf16 variant where bf16 is not native on ``device``
    (:func:`recon.machine.native_bf16`), else None. Emulated bf16 times the emulation, not the
    hardware (measured: the shipped crunet_ca's network 15x fp32's time at 64 x 64 on the AVX2
    CPU), and at the paper size it would hold a benchmark for hours."""
    from recon.machine import native_bf16

    return None if native_bf16(device) else f"n/a: bf16 is emulated on this {device.type.upper()}"


def matmul_rates(device: torch.device, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of the matmul in each arithmetic the device runs natively: ``fp32`` always,
    ``tf32`` on CUDA, ``bf16`` where :func:`recon.machine.native_bf16` (elsewhere bf16 is
    emulated and its rate says nothing about the hardware)."""
    from recon.machine import native_bf16

    rates = {"fp32": matmul_rate(device, repeats=repeats)}
    if device.type == "cuda":
        rates["tf32"] = matmul_rate(device, repeats=repeats, tf32=True)
        torch.backends.cuda.matmul.allow_tf32 = False
    if native_bf16(device):
        rates["bf16"] = matmul_rate(device, torch.bfloat16, repeats=repeats)
    return rates


def rate_fields(flops: int, seconds: float, rates: dict[str, float], arithmetic: str) -> dict:
    """A timed variant's ``gflops`` (``flops`` in ``seconds``), ``fraction_of_matmul`` (of the
    ``arithmetic``'s rate in ``rates``, None where it was not measured: not native) and
    ``fraction_of_fp32_matmul``."""
    gflops = flops / seconds / 1e9
    own = rates.get(arithmetic)
    return {"gflops": gflops, "fraction_of_matmul": gflops / own if own else None,
            "fraction_of_fp32_matmul": gflops / rates["fp32"]}
