"""Benchmark: the SENSE normal operator ``A^H A`` of a line mask in each of its forms, in one run.

The forms (:class:`recon.sense.SenseOperator`'s ``normal_form``): ``fft`` (two 2D FFTs per coil
image), ``rows`` (the DFT's sampled rows) and ``columns`` (one matrix per readout column,
:mod:`recon.line_normal`). Each form is built once (its first application, timed apart as
``build_s``) and then applied ``repeats`` times, the forms alternating so that load from other
processes hits all alike. The slice is random (unit-norm random maps, a CMRxRecon-style mask with
24 calibration lines, the same lines in every frame, or with ``shifted`` a lattice moving one line
per frame): the operator's cost does not depend on the image, but the column form's does on how
many frames share their lines. Also reported per form: 10 CG-SENSE steps (``recon.sense.cg_sense``,
the refinement's and SENSE's solver) and the largest difference from the ``fft`` form's result
relative to its peak; and the form SENSE and CG pick for the slice (``normal_form="auto"``).
"""

from __future__ import annotations

import time

import numpy as np
import torch

#: Forms timed, the reference first.
FORMS = ("fft", "rows", "columns")
CG_STEPS = 10


def bench_normal_forms(shape: tuple[int, int] = (128, 128), frames: int = 12, coils: int = 10,
                       acceleration: int = 8, repeats: int = 5, seed: int = 0, shifted: bool = False) -> dict:
    """Seconds of ``A^H A`` and of 10 CG steps per form on the CPU (module docstring) -> a
    JSON-ready dict; ``forms`` maps each form to ``build_s``, ``seconds`` (median application),
    ``cg_seconds`` (median), ``ratio_to_fft``, ``cg_ratio_to_fft``, ``max_rel_diff`` (or
    ``note`` where the form does not apply); ``chosen`` is the form the reconstruction uses."""
    from recon.errors import InputError
    from recon.machine import describe_machine
    from recon.masks import cine_mask
    from recon.sense import SenseOperator, cg_sense

    ny, nx = shape
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(1, coils, ny, nx, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().square().sum(1, keepdim=True).sqrt()
    mask = torch.as_tensor(cine_mask(ny, acceleration, n_frames=frames, shifted=shifted))[None]  # [1, t, y]
    x = torch.randn(1, frames, ny, nx, dtype=torch.complex64, generator=g)
    k = SenseOperator(maps, mask, normal_form="fft").forward(x)
    ops, rows, reference = {}, {}, None
    for form in FORMS:
        try:
            ops[form] = SenseOperator(maps, mask, normal_form=form)
        except InputError as exc:
            rows[form] = {"note": str(exc)}
            continue
        start = time.perf_counter()
        out = ops[form].normal(x)
        rows[form] = {"build_s": time.perf_counter() - start, "seconds_all": [], "cg_seconds_all": []}
        if form == "fft":
            reference = out
        else:
            rows[form]["max_rel_diff"] = float((out - reference).abs().max() / reference.abs().max())
    for _ in range(repeats):
        for form, op in ops.items():
            start = time.perf_counter()
            op.normal(x)
            rows[form]["seconds_all"].append(time.perf_counter() - start)
            start = time.perf_counter()
            cg_sense(k, maps, mask, lam=0.01, n_iter=CG_STEPS, tol=0.0, normal_form=form)
            rows[form]["cg_seconds_all"].append(time.perf_counter() - start)
    for form in ops:
        row = rows[form]
        row["seconds"] = float(np.median(row["seconds_all"]))
        row["cg_seconds"] = float(np.median(row["cg_seconds_all"]))
        row["ratio_to_fft"] = row["seconds"] / rows["fft"]["seconds"]
        row["cg_ratio_to_fft"] = row["cg_seconds"] / rows["fft"]["cg_seconds"]
    return {**describe_machine("cpu"), "shape": [ny, nx], "frames": frames, "coils": coils,
            "acceleration": acceleration, "shifted_mask": shifted, "lines": int(mask[0, 0].sum()),
            "repeats": repeats, "cg_steps": CG_STEPS, "chosen": SenseOperator(maps, mask).normal_form_used, "forms": rows}
