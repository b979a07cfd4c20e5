"""How one training or validation sample is made (the sources of :mod:`recon.train.data`
draw what goes in: the acquisition, the magnitude frames, the random streams).

Every sample is a dict of tensors (no batch axis; keys :data:`KEYS`)::

    k       complex64 [t, c, y, x]  undersampled centred k-space (zeros off the mask)
    mask    bool      [t, y]        sampled phase-encode lines
    maps    complex64 [c, y, x]     coil maps given to the network (unit sum of squares)
    target  complex64 [t, y, x]     ground truth a reconstruction with these maps can recover
    acceleration  int64 []          R of the mask
    scale   float32   []            the factor k and target were divided by
    noise   float32   []            per-coil noise std of k (divided by scale too): the
                                    simulated level (what a noise scan measures), or
                                    for raw files as inference measures it
                                    (:func:`recon.problem.weighting_noise_level`)

Simulated samples (:class:`recon.train.data.SimulatedCine`) go through exactly what
inference does with a raw file, so there is no train/inference mismatch:

1. an acquisition drawn from an :class:`recon.simulate.acquisition.AcquisitionSpace`
   (``data.train_space`` for training and in-distribution validation,
   ``data.heldout_space`` for the held-out-acquisition validation): matrix, FOV,
   readout oversampling, frames, coil family and count, noise level and correlation,
   R, shifted mask, phase model, intensity, line order;
2. magnitude frames ``[t, ny, nx]``: a slice of a real cine series (training patients
   for training, the ``holdout`` patients for validation; :mod:`recon.train.series`),
   augmented (random 90-degree rotation, flips, temporal reversal and roll:
   :func:`augment_series`; with ``data.deform``, a random rotation, scaling and elastic
   warp: :func:`deform_series`), a random crop fitted to the matrix (:func:`random_crop_fit`),
   resampled to the frame count; or the dynamic phantom for a ``phantom_fraction`` of
   the training samples (and always when there are no real series); then moved
   circularly along y by a random number of rows (:func:`move_along_y`);
3. the forward model :func:`recon.simulate.cine.simulate_slice` (the one ``crunet simulate``
   uses): background phase, the coil array's maps, FFT, noise, mask;
4. :func:`recon.simulate.cine.to_slice_data`: the lines become ISMRMRD acquisitions and are
   assembled back by the raw-data assembler, then :func:`recon.pipeline.prepare` removes the
   readout oversampling and estimates ESPIRiT maps from the ACS (``maps: espirit``, as at
   inference; ``maps: true`` gives the simulated maps instead, for ablations);
5. target ``sum_c conj(maps_c) S_c x`` (noise free; ``S`` the true sensitivities): the
   part of the object a reconstruction with these maps can represent; with the true maps
   it is ``x * sqrt(sum_c |S_c|^2)``, the reference stored in simulated raw files;
6. training samples only: a readout strip (docs/design.md §4) cut in image space on the recon
   grid (every ky line kept, so the aliasing of the mask is that of the full FOV), as
   wide as ``pixels_per_sample / (frames * ny)`` (multiple of 8, at least 16): the
   compute per step stays about constant whatever the matrix and frame count; its
   position favours columns that hold the object (:func:`strip_start`);
7. scale: k and target are divided by the RMS image magnitude estimated from the
   central (ACS) k-space lines (:func:`recon.kspace.normalisation_scale`), a number
   computable from measured data alone whatever R is. The models normalise their input
   themselves, so this only makes loss values comparable between samples.

Steps 1-2 are :meth:`recon.train.data.SimulatedCine.acquisition` and
:meth:`~recon.train.data.SimulatedCine.magnitude`; steps 3-7 are here
(:func:`simulate_scene`, :func:`scene_sample`, :func:`simulate_sample`).

Training scenes: step 3 is the costliest, so one simulated slice (a *scene*: anatomy,
acquisition, noise on every ky line) gives ``scene_reuse`` consecutive training samples,
each with its own R, mask shift and strip (steps 4-7); the ESPIRiT maps of a scene are
estimated once (the ACS block is the same whatever R).

Nothing here draws a random number of its own: every draw comes from the generator it
is given, so a sample depends only on the streams its source seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from recon.fft import fftc, ifftc
from recon.kspace import normalisation_scale
from recon.simulate.acquisition import Acquisition
from recon.simulate.cine import SimulatedSlice, simulate_slice, to_slice_data
from recon.simulate.realdata import fit_to_matrix
from recon.train.config import DataConfig

#: The keys of every sample (and batch), in order.
KEYS = ("k", "mask", "maps", "target", "acceleration", "scale", "noise")


# ---------------------------------------------------------------------------
# building blocks


def unit_maps(s: np.ndarray) -> np.ndarray:
    """Maps ``S / sqrt(sum_c |S_c|^2)`` (0 where all coils are 0)."""
    r = np.sqrt((np.abs(s) ** 2).sum(axis=0, keepdims=True))
    return np.where(r > 0, s / np.where(r > 0, r, 1), 0).astype(np.complex64)


def project_reference(image: np.ndarray, csm: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """``sum_c conj(maps_c) csm_c image``: the object seen through ``maps``.

    image ``[t, y, x]``, csm and maps ``[c, y, x]`` -> complex64 ``[t, y, x]``.
    """
    weight = (np.conj(maps) * csm).sum(axis=0)
    return (image * weight[None]).astype(np.complex64)


def strip_width(pixels: int | None, frames: int, ny: int, nx: int) -> int:
    """Readout width of a training strip holding about ``pixels`` pixels over all frames.

    A multiple of 8, at least 16 (or ``nx`` when smaller), at most ``nx``; ``None`` = ``nx``.
    """
    if pixels is None:
        return nx
    w = 8 * int(round(pixels / (frames * ny) / 8))
    return int(min(nx, max(16, w)))


def strip_start(target: np.ndarray, width: int, rng: np.random.Generator, uniform_share: float = 0.2) -> int:
    """First column of a training strip of ``width`` over ``target [t, y, x]``.

    Drawn with probability ``(1 - uniform_share) * E(x0) / sum E + uniform_share / n``, ``E(x0)``
    the target energy inside the strip: most strips hold object (strips of empty
    background teach little), a few hold anything.
    """
    nx = target.shape[-1]
    n = nx - width + 1
    if n <= 1:
        return 0
    column = (np.abs(target) ** 2).sum(axis=(0, 1))
    energy = np.convolve(column, np.ones(width), mode="valid")[:n]
    total = energy.sum()
    p = np.full(n, 1.0 / n) if total <= 0 else (1 - uniform_share) * energy / total + uniform_share / n
    return int(rng.choice(n, p=p / p.sum()))


def readout_strip(k: np.ndarray, maps: np.ndarray, target: np.ndarray, x0: int, width: int):
    """Columns ``x0 .. x0 + width`` of k-space (cut in image space), maps and target.

    k ``[t, c, y, x]`` (centred k-space), maps ``[c, y, x]``, target ``[t, y, x]``; the cut
    is along the readout ``x``, so every ky line and the mask stay as they are.
    """
    if width >= k.shape[-1]:
        return k, maps, target
    k = fftc(ifftc(k, dims=(-1,))[..., x0:x0 + width], dims=(-1,))
    return k, np.ascontiguousarray(maps[..., x0:x0 + width]), np.ascontiguousarray(target[..., x0:x0 + width])


def random_crop_fit(series: np.ndarray, shape: tuple[int, int], scale: tuple[float, float],
                    rng: np.random.Generator, seam_rows: int = 0) -> np.ndarray:
    """A random crop of ``series [T, H, W]`` with the aspect ratio of ``shape``, fitted to ``shape``.

    The crop side is ``U(scale)`` times the largest crop of that aspect ratio. With
    ``seam_rows`` > 0 the crop is made periodic along y (:func:`join_cut_rows`): that many
    rows of what lies beyond one cut (the series' own rows, or the crop mirrored where the
    series ends) are cross-faded into the other end, so a circular move along y
    (:func:`move_along_y`) leaves no seam.
    """
    _, h, w = series.shape
    ny, nx = shape
    if h * nx > w * ny:
        hc, wc = w * ny / nx, float(w)
    else:
        hc, wc = float(h), h * nx / ny
    s = rng.uniform(*scale)
    hh, ww = max(1, min(h, round(hc * s))), max(1, min(w, round(wc * s)))
    y0 = int(rng.integers(0, h - hh + 1))
    x0 = int(rng.integers(0, w - ww + 1))
    if seam_rows <= 0:
        return fit_to_matrix(series[:, y0:y0 + hh, x0:x0 + ww], shape)
    b = min(int(seam_rows), ny)
    extra = int(np.ceil(b * hh / ny)) + 1  # source rows that become the b output rows beyond the cut
    cols = series[:, :, x0:x0 + ww]
    if y0 + hh + extra <= h:  # rows below the crop
        ext, at_end = cols[:, y0:y0 + hh + extra], True
    elif y0 - extra >= 0:  # rows above it
        ext, at_end = cols[:, y0 - extra:y0 + hh], False
    else:  # the crop spans the series: mirror it beyond its bottom cut
        crop = cols[:, y0:y0 + hh]
        ext, at_end = np.concatenate([crop, crop[:, ::-1][:, :extra]], axis=1), True
    rows = round(ny * ext.shape[1] / hh)
    fitted = fit_to_matrix(ext, (rows, nx))
    return join_cut_rows(fitted, ny, b, at_end)


def join_cut_rows(x: np.ndarray, ny: int, b: int, beyond_at_end: bool) -> np.ndarray:
    """``[t, ny, nx]`` from ``x [t, ny + e, nx]`` whose ``e`` extra rows continue the image beyond
    one cut (after its last row when ``beyond_at_end``, before its first otherwise): the ``b``
    rows nearest the cut continue into the opposite end with linear weights, so row ``ny - 1``
    and row 0 are neighbours, as on a periodic phase-encode axis."""
    if not beyond_at_end:  # the same, upside down
        return np.ascontiguousarray(join_cut_rows(x[:, ::-1], ny, b, True)[:, ::-1])
    e = x.shape[1] - ny
    out = x[:, :ny].copy()
    if e < 1 or b < 1:
        return out
    b = min(b, e, ny)
    w = (np.arange(b, 0, -1) / (b + 1)).astype(np.float32)[None, :, None]  # near 1 at the cut, -> 0
    out[:, :b] = w * x[:, ny:ny + b] + (1 - w) * out[:, :b]  # row 0 continues row ny - 1
    return out


def augment_series(series: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random 90-degree rotation, up-down / left-right flips, temporal reversal and roll
    of a magnitude series ``[T, H, W]`` (a cardiac cycle is periodic, so both are valid cines)."""
    series = np.rot90(series, k=int(rng.integers(4)), axes=(1, 2))
    if rng.random() < 0.5:
        series = series[:, ::-1]
    if rng.random() < 0.5:
        series = series[:, :, ::-1]
    if rng.random() < 0.5:
        series = series[::-1]
    return np.roll(series, int(rng.integers(series.shape[0])), axis=0)


def deform_series(series: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """The same random smooth warp of every frame of ``series [T, H, W]`` (new anatomy from the few
    training patients): a rotation by up to 45 degrees (the 90-degree steps are
    :func:`augment_series`'), an anisotropic scaling by up to ``exp(+-0.2 * strength)`` per axis,
    and an elastic displacement field (white noise smoothed over an eighth of the side) whose
    largest shift is ``0.03 * strength`` of the side. Cubic interpolation; the field of view's
    edges are continued by reflection. ``strength`` 0 returns the series unchanged (no draw)."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    if strength <= 0:
        return series
    t, h, w = series.shape
    side = float(max(h, w))
    angle = np.deg2rad(rng.uniform(-45.0, 45.0))
    sy, sx = np.exp(rng.uniform(-0.2, 0.2, size=2) * strength)
    field = gaussian_filter(rng.standard_normal((2, h, w)), sigma=(0, side / 8, side / 8), mode="wrap")
    field *= 0.03 * strength * side / max(float(np.abs(field).max()), 1e-12)
    yy, xx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    cos, sin = np.cos(angle), np.sin(angle)  # output pixel -> source pixel: rotate, then scale
    src_y = (cos * yy - sin * xx) / sy + (h - 1) / 2 + field[0]
    src_x = (sin * yy + cos * xx) / sx + (w - 1) / 2 + field[1]
    out = np.empty(series.shape, dtype=np.float32)
    for i in range(t):
        out[i] = map_coordinates(np.asarray(series[i], dtype=np.float32), (src_y, src_x), order=3, mode="mirror")
    return np.clip(out, 0.0, None)  # cubic overshoot below zero on a magnitude image


def move_along_y(mag: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Frames ``[t, ny, nx]`` moved circularly along y (the phase-encode axis) by a random number of rows.

    Every Cartesian image is periodic along its phase-encode axis, and on a scanner the
    object sits anywhere in it; a crop of a real series, though, is cut at its edges,
    and always at the field of view's edge, where a network that sees that edge
    (zero padding) learns to find it: the shipped crunet_ca lost 1.4-7.4 dB on its
    held-out validation slices moved by 1-8 rows. Moved, the cut lies at a random row
    and the field of view's edge carries no information.
    """
    return np.roll(mag, int(rng.integers(mag.shape[1])), axis=1)


# ---------------------------------------------------------------------------
# one simulated sample


@dataclass
class Scene:
    """One simulated slice (anatomy + acquisition) from which training samples are cut.

    ``sim`` holds noise on every ky line, so any mask of the space can be applied;
    ``maps`` and ``target`` are filled by the first sample made from the scene with each
    mask, keyed by :attr:`Acquisition.calibration` and the mask (ESPIRiT's second set is
    merged from every sampled line, :mod:`recon.coils.merge`; one key for the simulated
    maps of ``maps: true``).
    """

    sim: SimulatedSlice
    acq: Acquisition
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    target: dict[str, np.ndarray] = field(default_factory=dict)


def simulate_scene(cfg: DataConfig, magnitude: np.ndarray, acq: Acquisition, rng: np.random.Generator,
                   noise_everywhere: bool = True) -> Scene:
    """Step 3 of the module docstring: the forward model on magnitude frames ``[acq.frames, *acq.matrix]``."""
    return Scene(simulate_slice(magnitude, acq, rng, coil_grid=cfg.coil_grid, noise_everywhere=noise_everywhere),
                 acq)


def scene_sample(cfg: DataConfig, scene: Scene, acq: Acquisition, rng: np.random.Generator | None,
                 strip: bool) -> dict[str, torch.Tensor]:
    """Steps 4-7 of the module docstring: ``scene`` acquired with ``acq``'s mask (R, ACS,
    shifted), through the raw-data path; a training strip (position from ``rng``) when
    ``strip``, else the whole recon matrix."""
    from recon.pipeline import prepare

    mask = acq.mask()
    s = to_slice_data(replace(scene.sim, mask=mask), acq)
    # the true maps do not depend on the acquisition; estimated maps depend on the ACS and,
    # through the second ESPIRiT set's merge (recon.coils.merge), on every sampled line
    key = f"{acq.calibration}:{np.packbits(mask).tobytes().hex()}" if cfg.maps == "espirit" else "true"
    if key not in scene.maps and cfg.maps == "true":
        scene.maps[key] = unit_maps(scene.sim.csm)
    p = prepare(s, maps=scene.maps.get(key))
    k, maps = p.kspace.numpy(), p.maps.numpy()
    scene.maps.setdefault(key, maps)
    if key not in scene.target:
        scene.target[key] = project_reference(scene.sim.image, scene.sim.csm, maps)
    target = scene.target[key]
    if strip:
        t, _, ny, nx = k.shape
        w = strip_width(cfg.pixels_per_sample, t, ny, nx)
        k, maps, target = readout_strip(k, maps, target, strip_start(target, w, rng), w)
    return finish_sample(k, mask, maps, target, acq.acceleration, scene.sim.sigma)


def simulate_sample(cfg: DataConfig, magnitude: np.ndarray, acq: Acquisition, rng: np.random.Generator,
                    strip: bool) -> dict[str, torch.Tensor]:
    """Steps 3-7 of the module docstring for one sample of magnitude frames ``[acq.frames, *acq.matrix]``."""
    scene = simulate_scene(cfg, magnitude, acq, rng, noise_everywhere=False)
    return scene_sample(cfg, scene, acq, rng, strip)


def finish_sample(k, mask, maps, target, acceleration: int, noise: float) -> dict[str, torch.Tensor]:
    """The sample dict (:data:`KEYS`) of numpy or torch arrays, k, target and the noise
    std ``noise`` of k divided by the normalisation scale (step 7)."""
    k = torch.as_tensor(np.ascontiguousarray(k)).to(torch.complex64)
    mask = torch.as_tensor(np.ascontiguousarray(mask)).to(torch.bool)
    maps = torch.as_tensor(np.ascontiguousarray(maps)).to(torch.complex64)
    target = torch.as_tensor(np.ascontiguousarray(target)).to(torch.complex64)
    scale = normalisation_scale(k[None])[0]
    return {"k": k / scale, "mask": mask, "maps": maps, "target": target / scale,
            "acceleration": torch.tensor(int(acceleration)), "scale": scale.float(),
            "noise": (float(noise) / scale).float()}
