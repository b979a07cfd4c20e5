"""Benchmark: one training step (forward, loss, backward, AdamW) of a run config, per arithmetic.

The step is :meth:`recon.train.engine.Trainer.train_step` itself, on the run's first training
sample (epoch 0, index 0: the config's own crop, frames and coils, so the shape a training run
really sees), in ``fp32`` and, where bf16 is native (:func:`recon.machine.native_bf16`), under
bf16 autocast (``train.precision: bf16``); elsewhere bf16 is emulated and ``n/a``. Variants
alternate over ``repeats`` rounds after one untimed step each. Reported per variant: median
seconds per step, ratio to fp32, GFLOP/s of the step's convolutions and matrix products
(:func:`crunet.bench.arithmetic.count_flops`, forward and backward) and their fraction of the
device's measured matmul rate: how near the machine's limit training runs.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

VARIANTS = ("fp32", "bf16")


def bench_train_step(config: str | Path, repeats: int = 5, device: str = "auto",
                     variants: tuple[str, ...] = VARIANTS) -> dict:
    """Seconds per training step of the run config at ``config`` in each of ``variants``
    (module docstring) at the current thread count -> a JSON-ready dict."""
    from crunet.bench.arithmetic import count_flops, emulated_bf16_note, matmul_rates, rate_fields
    from recon.errors import InputError
    from recon.machine import resolve_device
    from recon.pipeline import sync_device
    from recon.train.config import load_run_config
    from recon.train.data import collate
    from recon.train.engine import Trainer

    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise InputError(f"unknown training variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    dev = resolve_device(device)
    cfg = load_run_config(config)
    threads = torch.get_num_threads()
    runs: dict = {}
    trainers: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in variants:
            note = emulated_bf16_note(dev) if v == "bf16" else None
            if note:
                runs[v] = {"seconds": None, "note": note}
                continue
            train = replace(cfg.train, precision=v, device=dev.type, threads=threads)
            trainers[v] = Trainer(replace(cfg, train=train), Path(tmp) / v, progress=False)
            runs[v] = {"all_seconds": []}
        if not trainers:
            raise InputError("no training variant can run here: " + "; ".join(r["note"] for r in runs.values()))
        first = next(iter(trainers.values()))
        batch = collate([first.train_source.sample(0, 0)])
        for trainer in trainers.values():  # warm-up, untimed
            trainer.train_step(batch)
        for _ in range(repeats):
            for v, trainer in trainers.items():
                sync_device(trainer.device)
                t0 = time.perf_counter()
                trainer.train_step(batch)
                sync_device(trainer.device)
                runs[v]["all_seconds"].append(time.perf_counter() - t0)
        flops = count_flops(lambda: first.train_step(batch), inference=False)
        n_params = first.n_params
    rates = matmul_rates(dev)
    base = float(np.median(runs["fp32"]["all_seconds"])) if "fp32" in trainers else None
    for v in trainers:
        row = runs[v]
        row["seconds"] = float(np.median(row["all_seconds"]))
        row["ratio_to_fp32"] = row["seconds"] / base if base else None
        row.update(rate_fields(flops, row["seconds"], rates, v))
    return {"config": str(config), "device": str(dev), "threads": threads, "repeats": repeats,
            "batch_shape": {k: list(t.shape) for k, t in batch.items() if t.ndim > 1},
            "parameters": n_params, "gflop_per_step": flops / 1e9, "matmul_gflops": rates, "variants": runs}
