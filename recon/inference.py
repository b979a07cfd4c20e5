"""Learned reconstruction at inference: trained weights as a method.

``run_method("crunet_ca", problem)`` (weights by name, see
:func:`recon.weights.resolve_weights`) and ``run_method("model", problem,
weights="path/to/dir")`` both end here: the weights directory written by
:func:`recon.weights.save_weights` is loaded once per (directory, device) through
:func:`recon.weights.load_weights` (SHA-256 manifest checked), k-space is scaled as
in training (:func:`recon.kspace.normalisation_scale`), the model runs and the scale
is undone. The forward runs in the device's model runner (:mod:`recon.scheduler`),
shared by every connection of the process: bounded forwards in flight, concurrent
slices of one shape batched on CUDA.

``precision`` (an option of a named learned method, e.g. ``crunet_ca:precision=fp32``):
``bf16`` runs the network's convolutions and matrix products under bfloat16 autocast
(FFTs and data consistency stay complex64); ``auto`` (the default) does so where bf16
is native (:func:`recon.machine.native_bf16`: AVX512-BF16 / AMX CPUs, CUDA GPUs) and
keeps fp32 elsewhere. Measured with ``crunet validate`` on the held-out cases at R = 8
(crunet_ca, 3 cases per set): PSNR change -0.01 dB on held-out patients (worst case
-0.02), 0.00 dB on held-out acquisitions, SSIM within 0.0003; 1.6x faster on this
project's AVX512-BF16 CPU (1 thread, 128 x 128, 12 frames, 10 coils).

``tta`` (e.g. ``crunet_ca:tta=4``): test-time augmentation over exact symmetries of the
problem (:mod:`recon.symmetry`), ``tta`` forwards per slice. Off by default: measured on
the report's held-out series (patient SCD0000401, 15 dipole coils, SNR 50: an acquisition
no model was trained on), R = 8, crunet_ca, slices 0 and 4: +0.01 to +0.03 dB for
``tta=2`` and ``4``, -0.03 dB for ``8`` (slice 0: 39.82 / 39.84 / 39.85 / 39.79 dB for
1 / 2 / 4 / 8), at 2-8x the time. The trained network is already close to equivariant
to these maps (its training data held every orientation and both directions of time).

``mean_consistency`` (e.g. ``crunet_ca:mean_consistency=off``): ``auto`` (the default) runs
the weights as their ``config.yaml`` says; ``on`` / ``off`` switch CRUNet-MR's temporal-mean
consistency (:class:`recon.sense.TemporalMeanConsistency`, no parameters) for this call.
It assumes that a line's mean over the frames that sampled it is its mean over all frames:
right for a breath-held cine, wrong where the whole image moves. Measured on four held-out
scenes with a shifted R-8 mask whose whole image moves along y by ``A sin(2 pi t / T)``
pixels (``crunet_ca`` with it on / off, L+S): A = 0: 45.10 / 41.39 / 40.67 dB; A = 2: 40.54 /
39.98 / 38.84; A = 4: 38.27 / 38.58 / 38.13 (worst scene -1.3 dB against off). Switch it off
for free-breathing (real-time) series on a mask that moves from frame to frame; on a mask with
the same lines in every frame it changes nothing.

``refine`` (e.g. ``crunet_ca:refine=off``): after the network, CG-SENSE around its images,
``argmin_x ||A x - d||^2 + sum_p lam_p |x_p - x_net,p|^2`` (:func:`recon.baselines.sense.sense_with_prior`).
The cascades' k-space replacement uses the coils' encoding only partly, and the learned prior
smooths what moves: this step unfolds what the network got wrong as far as the coils and the
noise allow. ``motion`` (the default, :data:`DEFAULT_REFINE`): the per-pixel weight of
:func:`recon.refine.motion_weight`, the MAP weight of a prior whose error is small where nothing
moves and grows with the images' local temporal std, scaled by the measured inconsistency level
(noise or coil-map misfit), :data:`MOTION_ITERATIONS` CG steps; skipped, with a warning, where no
noise level can be measured (no noise scan and no line sampled in every frame). ``off``: the
network's images. ``auto`` or a number ``lam``: one weight everywhere (``auto``: SENSE's own,
:func:`recon.baselines.sense.auto_lam`; 30 CG iterations).

How ``motion``'s constants were chosen and what they give (crunet_ca, R 4 and 8, full-FOV / moving-
region PSNR, dB; 2026-12-02). Chosen on the training-acquisition cases of ``crunet validate`` (cases
0-5 of ``val``: held-out patient, training acquisition space) among four settings of
``(STATIC, MOVING, FLOOR)`` with the noise or the inconsistency level: with the noise level the
high-SNR case lost 2.9-3.5 dB (its coil maps, not the noise, limit the data); with the
inconsistency level and ``(0.03, 1.0, 0.01)``: R 4 +1.32 / +3.28 (worst case +0.05), R 8 +0.49 /
+1.66 (worst -0.18); ``MOVING = 3`` gained more on average and lost up to 1.4 on low-SNR cases.
Then, never used for the choice: held-out acquisitions (``xval`` cases 0-5 at R 4, 0-2 at R 8)
R 4 +0.99 / +2.64 (every case up, +0.13 to +2.03), R 8 +0.36 / +0.72 (every case up), R 24 (10
CG steps, 6 cases per set) +0.17 full FOV (-0.04 to +0.67; training acquisitions +0.11, -0.85
to +1.66); the 18-case R 8 validation with 10 steps is in ``README.md``; the report's
held-out series (`crunet report`'s raw file, 11 slices, 15 dipole coils, SNR 50) R 4 43.34 / 34.72
-> 45.46 / 40.91 (every slice up, +0.97 to +3.11, in the heart +0.81 to +11.0; BART's temporal TV
38.80 and L+S 36.51 in the heart there), R 8: see ``README.md`` (all of these with 30 CG steps;
10 give the same images within 0.02 dB). Cost: 10 CG steps and the weight, 0.18-0.19 of the
16-channel network's time on the bench slice (idle, fp32, 1-2 threads, since the normal operator's
column form, :mod:`recon.line_normal`; 0.33-0.38 before: `README.md`). The single-weight forms (measured before): ``auto`` gave +2 to +6 dB at R 4 on the report
series but -0.15 to -2.9 on low-SNR, few-coil cases; ``refine=0.1`` on six
fresh validate cases +0.10 (held-out acquisitions) and -0.99 (training acquisitions).
The same step inside every cascade (``data_consistency: cg``, :class:`recon.models.config.CRUNetConfig`)
did not survive a fine-tuning of the shipped weights (``configs/cpu/crunet_ca_cg.yaml``).

``torch.compile`` is not used: measured on the same CPU and slice (crunet_ca, bf16, 1
thread, nothing else running), the compiled model took 0.83-0.96x the eager time per
slice after 146 s of compilation for each new input shape (the frame loop of the
recurrent cells is unrolled), a loss for a server that sees each series' shape a few
times; on a CPU without native bf16 (AVX2, fp32, 2 threads, shifted-mask bench slice,
2026-12-03) it took 1.12x the eager time after 134 s. ``crunet bench --what network``
measures it again on any machine (on a GPU with CUDA graphs, ``configs/gpu/bench.sh``).
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from pathlib import Path
from typing import Literal, get_args

import torch

from recon.errors import InputError
from recon.kspace import normalisation_scale
from recon.machine import bf16_autocast, native_bf16
from recon.noise import auto_or_number
from recon.problem import SliceProblem, weighting_noise_level
from recon.scheduler import runner_for

log = logging.getLogger("crunet.inference")

#: Arithmetic of the network at inference: ``fp32``, ``bf16`` autocast, or ``auto``
#: (bf16 where it is native, see :func:`recon.machine.native_bf16`).
Precision = Literal["auto", "fp32", "bf16"]

_CACHE: dict[tuple[str, str], tuple[torch.nn.Module, object]] = {}
_LOCK = threading.Lock()


def load_cached(weights: str | Path, device: torch.device | str):
    """``(model, ModelConfig)`` of a weights directory or name, loaded (and checked) once per device."""
    from recon.weights import load_weights, resolve_weights

    directory = resolve_weights(weights)
    key = (str(directory.resolve()), str(device))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_weights(directory, device)
        return _CACHE[key]


#: ``refine`` with the per-pixel weight of :func:`recon.refine.motion_weight`.
MOTION = "motion"
#: What a learned method's ``refine`` is unless given (module docstring).
DEFAULT_REFINE = MOTION
#: CG iterations of ``refine=motion``, started from the network's images: 10 gave the images of 30
#: within 0.02 dB over the full field of view and 0.14 dB in the moving region (3 cases, R 4), at a
#: third of the time; ``auto`` and a number keep SENSE's 30 (the measurements quoted above).
MOTION_ITERATIONS = 10

#: Temporal-mean consistency at inference: as the weights' config (``auto``), or switched.
MeanConsistency = Literal["auto", "on", "off"]


def learned(p: SliceProblem, weights: str = "", precision: Precision = "auto", tta: int = 1,
            mean_consistency: MeanConsistency = "auto", refine: float | str = DEFAULT_REFINE) -> torch.Tensor:
    """Reconstruct ``p`` with the trained model in ``weights`` -> complex64 ``[t, y, x]``.

    ``weights`` : a weights directory, or the name of installed weights (``crunet_ca``).
    ``precision`` : ``auto``, ``fp32`` or ``bf16`` (autocast of the network's real-valued layers).
    ``tta`` : test-time augmentation, 1 (none), 2, 4 or 8: the mean of ``g^-1 model(g p)`` over
        that many exact symmetries of the problem (time reversal, reflections;
        :data:`recon.symmetry.TTA_SETS`); costs ``tta`` forwards.
    ``mean_consistency`` : ``auto`` (as the weights' config), ``on`` or ``off`` (CRUNet-MR only;
        see the module docstring).
    ``refine`` : ``off``, ``motion`` (per-pixel weight from the measured noise and the images'
        motion, :func:`recon.refine.motion_weight`), ``auto`` or a Tikhonov weight >= 0: CG-SENSE
        around the network's images (see the module docstring).
    """
    from recon.symmetry import TTA_SETS

    if precision not in get_args(Precision):
        raise InputError(f"precision must be one of {', '.join(get_args(Precision))}, got {precision!r}")
    if tta not in TTA_SETS:
        raise InputError(f"tta must be one of {', '.join(map(str, TTA_SETS))}, got {tta!r}")
    if not weights:
        raise InputError("method 'model' needs the option weights=<directory with model.safetensors, "
                         "config.yaml and manifest.json, or the name of installed weights such as crunet_ca>")
    if mean_consistency not in get_args(MeanConsistency):
        raise InputError(f"mean_consistency must be one of {', '.join(get_args(MeanConsistency))}, "
                         f"got {mean_consistency!r}")
    refine_lam = None
    if refine not in ("off", MOTION):  # "auto" or a number >= 0 (InputError otherwise)
        value = auto_or_number(refine, f"refine (or off, or {MOTION})")
        refine_lam = "auto" if value is None else value
    model, cfg = load_cached(weights, p.kspace.device)
    temporal = None if mean_consistency == "auto" else mean_consistency == "on"
    if temporal is not None and cfg.name != "crunet":
        raise InputError(f"mean_consistency={mean_consistency} is a CRUNet-MR setting; {weights} is {cfg.name}")
    if precision == "auto":
        precision = "bf16" if native_bf16(p.kspace.device) else "fp32"
    noise = torch.tensor([weighting_noise_level(p)], dtype=torch.float32) if getattr(model, "uses_noise", False) else None
    outs = []
    for g in TTA_SETS[tta]:
        k, mask, maps = g.problem(p).batched()
        key = (id(model), precision, temporal, tuple(k.shape), tuple(mask.shape), tuple(maps.shape), k.dtype,
               maps.dtype)
        outs.append(g.image(runner_for(k.device).call(key, partial(_forward, model, precision, temporal),
                                                      (k, mask, maps, noise))))
    x = (outs[0] if tta == 1 else torch.stack(outs).mean(0)).to(torch.complex64)
    if refine != "off":
        from recon.baselines.sense import sense_with_prior

        if refine == MOTION:
            from recon.refine import motion_skip_reason, motion_weight

            why = motion_skip_reason(p)  # the weight needs the noise level: a noise scan, or lines to measure it on
            if why is not None:
                log.warning("refine=motion skipped, the network's images are returned (%s)", why)
            else:
                x = sense_with_prior(p, x, lam=motion_weight(p, x), n_iter=MOTION_ITERATIONS)
        else:
            x = sense_with_prior(p, x, lam=refine_lam)
    return x


def _forward(model: torch.nn.Module, precision: str, temporal: bool | None, items) -> list[torch.Tensor]:
    """The network on a batch of slices of one shape: ``[(k [1, t, c, y, x], mask, maps, noise), ...]``
    -> ``[x [t, y, x], ...]``; k-space (and the noise level ``[1]``, None for a model that takes
    none) scaled per slice as in training and the scale undone; ``temporal``: CRUNet-MR's
    temporal-mean consistency switched on or off (None: as configured)."""
    k, mask, maps = ((torch.cat(parts) if len(parts) > 1 else parts[0]) for parts in zip(*(i[:3] for i in items)))
    scale = normalisation_scale(k).to(k.real.dtype)
    extra = {} if temporal is None else {"temporal_mean": temporal}
    if items[0][3] is not None:
        extra["noise"] = torch.cat([i[3] for i in items]).to(k.device, scale.dtype) / scale
    with torch.inference_mode(), bf16_autocast(k.device, precision == "bf16"):
        x = model(k / scale.view(-1, 1, 1, 1, 1), mask, maps, **extra) * scale.view(-1, 1, 1, 1)
    return list(x.unbind(0))
