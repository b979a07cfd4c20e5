"""Multi-coil, undersampled cine raw data from a phantom or a real magnitude series.

One forward model (:func:`simulate_slice`) for ``crunet simulate`` and for the
training data, driven by an :class:`recon.simulate.acquisition.Acquisition`: magnitude
frames ``[t, y, x]`` (phantom or real series) x background phase -> embed in the
readout-oversampled FOV -> multiply by the coil maps of the acquisition's array ->
centred FFT -> intensity scale -> complex Gaussian noise with inter-coil covariance ->
line mask -> ISMRMRD acquisitions (:func:`to_slice_data` assembles them back the way
the reader does). The noise-free coil-combined reference and the true maps (on the recon
grid) are stored in the same file as references (see :mod:`recon.io.raw`).

The reference is what a parallel-imaging reconstruction with unit-norm coil maps
(ESPIRiT, SENSE) recovers from fully sampled noise-free data: the object ``x``
weighted by the array's sum-of-squares sensitivity, ``x * sqrt(sum_c |S_c|^2)``;
its magnitude equals the root-sum-of-squares of the noise-free coil images, the
reference CMRxRecon and fastMRI use.

SNR definition: the SNR of the fully sampled, coil-combined image a reader would see:
``snr`` = mean magnitude of the reference ``x * sqrt(sum_c |S_c|^2)`` over the object
(pixels above 10 % of its maximum) divided by the per-coil noise standard deviation
``sigma`` (for unit-sum-of-squares combination the combined image's noise std is
``sigma`` too, before inter-coil correlation); with the orthonormal FFT the k-space
noise std is the same number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.fft import fft2c
from recon.io.acquisitions import CineTiming, scan_to_acquisitions, slice_to_acquisitions
from recon.io.assemble import assemble_slices
from recon.io.header import CineProtocol, CineScan, build_cine_header, encoding_info
from recon.io.raw import write_raw
from recon.kspace import center_crop
from recon.masks import acs_indices
from recon.simulate.acquisition import Acquisition
from recon.simulate.coil_noise import correlated_noise, noise_covariance
from recon.simulate.coils import coil_maps
from recon.simulate.phantom import cine_phantom, smooth_phase
from recon.simulate.realdata import fit_to_matrix, load_cine_series
from recon.slicedata import Geometry, SliceData, slice_geometry

VIEWS = ("sax", "lax")


@dataclass(frozen=True)
class SimulationConfig(CineScan):
    """What ``crunet simulate`` makes. ``source`` is ``"phantom"`` or a ``.npz`` cine series.

    The scan fields (matrix, field of view, slices, phases, coils, R, ACS, heart rate,
    view, ...) are those of :class:`recon.io.header.CineScan`, which the header states
    too (:meth:`protocol`). With the simulator's own fields (coil family, SNR, noise
    correlation, mask shift, calibration, line order) they become one
    :class:`recon.simulate.acquisition.Acquisition` per slice (:meth:`acquisition`),
    the same description the training data are drawn as.
    """

    slice_gap_mm: float = 2.0
    shifted_mask: bool = False
    calibration: str = "frame"
    snr: float = 40.0
    coil_family: str = "wrap"
    noise_correlation: float = 0.1
    ordering: str = "segmented"
    source: str = "phantom"
    noise_scan: bool = True
    noise_samples: int = 2048
    seed: int = 0
    timing: CineTiming = field(default_factory=CineTiming)

    def acquisition(self) -> Acquisition:
        """The per-slice acquisition this scan describes (validated)."""
        return Acquisition(
            matrix=tuple(self.matrix), fov_mm=tuple(self.fov_mm), readout_oversampling=self.readout_oversampling,
            frames=self.n_phases, coil_family=self.coil_family, n_coils=self.n_coils, snr=self.snr,
            noise_correlation=self.noise_correlation, acceleration=self.acceleration, n_acs=self.n_acs,
            shifted_mask=self.shifted_mask, calibration=self.calibration, ordering=self.ordering,
        ).validate()

    def validate(self) -> "SimulationConfig":
        if self.view not in VIEWS:
            raise InputError(f"view must be one of {VIEWS}, got '{self.view}'")
        for name in ("n_slices", "n_phases", "n_coils", "acceleration", "readout_oversampling"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if min(self.matrix) < 16:
            raise InputError(f"matrix {self.matrix} too small (>= 16 x 16)")
        if not 0 <= self.n_acs <= self.matrix[0]:
            raise InputError(f"n_acs = {self.n_acs} must lie in [0, {self.matrix[0]}]")
        if self.snr <= 0:
            raise InputError(f"snr must be positive, got {self.snr}")
        self.acquisition()  # the remaining acquisition fields
        if self.source != "phantom" and not Path(self.source).is_file():
            raise InputError(f"image source '{self.source}' is neither 'phantom' nor an existing .npz file")
        return self

    def protocol(self) -> CineProtocol:
        """The header description of this scan (its scan fields, the line timing's TR)."""
        return protocol(self.acquisition(), n_slices=self.n_slices, slice_thickness_mm=self.slice_thickness_mm,
                        tr_ms=self.timing.tr_ms, heart_rate_bpm=self.heart_rate_bpm, view=self.view)


def protocol(acq: Acquisition, n_slices: int = CineScan.n_slices,
             slice_thickness_mm: float = CineScan.slice_thickness_mm, tr_ms: float = CineProtocol.tr_ms,
             heart_rate_bpm: float = CineScan.heart_rate_bpm, view: str = CineScan.view) -> CineProtocol:
    """The ISMRMRD header description (:class:`CineProtocol`) of an acquisition."""
    return CineProtocol(
        matrix=tuple(acq.matrix), fov_mm=tuple(acq.fov_mm), slice_thickness_mm=slice_thickness_mm,
        readout_oversampling=acq.readout_oversampling, n_phases=acq.frames, n_slices=n_slices,
        n_coils=acq.n_coils, acceleration=acq.acceleration, n_acs=acq.n_acs,
        calibration_mode="interleaved" if acq.shifted_mask else "embedded",
        tr_ms=tr_ms, heart_rate_bpm=heart_rate_bpm, view=view, protocol_name=f"crunet_cine_{view}",
    )


@dataclass
class SimulatedSlice:
    """One simulated slice. Shapes: image ``[t, y, x]`` (the object), csm ``[c, y, x]``
    (recon grid), kspace ``[t, c, ky, kx_os]`` (fully sampled, encoded grid; noisy on
    every line the mask acquires in some frame, noise free on lines never acquired),
    mask ``[t, ky]``, noise std ``sigma`` and inter-coil covariance ``noise_cov [c, c]``;
    :attr:`reference` ``[t, y, x]`` is the ground truth a method is scored against
    (see the module docstring)."""

    image: np.ndarray
    csm: np.ndarray
    kspace: np.ndarray
    mask: np.ndarray
    geometry: Geometry
    sigma: float
    noise_cov: np.ndarray | None = None

    @property
    def reference(self) -> np.ndarray:
        """Ground truth ``x * sqrt(sum_c |S_c|^2)``, complex64 ``[t, y, x]``."""
        return (self.image * np.sqrt((np.abs(self.csm) ** 2).sum(axis=0))).astype(np.complex64)


def resample_cycle(frames: np.ndarray, n_phases: int) -> np.ndarray:
    """Periodic linear interpolation of a cardiac cycle ``[t0, y, x]`` to ``[n_phases, y, x]``."""
    t0 = frames.shape[0]
    if t0 == n_phases:
        return frames.astype(np.float32)
    pos = np.arange(n_phases) * t0 / n_phases
    lo = np.floor(pos).astype(int) % t0
    hi = (lo + 1) % t0
    w = (pos - np.floor(pos))[:, None, None]
    return ((1 - w) * frames[lo] + w * frames[hi]).astype(np.float32)


def _magnitude_frames(cfg: SimulationConfig, slice_number: int, rng: np.random.Generator) -> np.ndarray:
    if cfg.source == "phantom":
        return cine_phantom(cfg.n_phases, tuple(cfg.matrix), cfg.view, rng)
    with np.load(cfg.source) as f:
        n_src_slices = f["cine"].shape[0] if "cine" in f and f["cine"].ndim == 4 else 1
    if n_src_slices > 1:
        mid = n_src_slices // 2
        index = int(np.clip(mid + slice_number - cfg.n_slices // 2, 0, n_src_slices - 1))
    else:
        index = None
    series = load_cine_series(cfg.source, index)
    series = fit_to_matrix(series, tuple(cfg.matrix))
    return resample_cycle(series, cfg.n_phases)


def background_phase(shape: tuple[int, int], model: str, rng: np.random.Generator) -> np.ndarray:
    """Background phase ``[ny, nx]`` (float32, radians) of ``model`` (see
    :attr:`recon.simulate.acquisition.Acquisition.phase_model`)."""
    if model == "smooth":
        return smooth_phase(shape, rng)
    if model == "strong":
        return smooth_phase(shape, rng, max_rad=3 * np.pi)
    if model == "ramp":
        ny, nx = shape
        cy, cx = rng.uniform(-2.0, 2.0, size=2)  # cycles across the FOV
        yy, xx = np.meshgrid(np.arange(ny) / ny, np.arange(nx) / nx, indexing="ij")
        return (2 * np.pi * (cy * yy + cx * xx) + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    raise InputError(f"unknown phase model {model!r}")


def body_axes(magnitude: np.ndarray, fov_mm: tuple[float, float], margin: float = 1.0,
              level: float = 0.1, coverage: float = 0.99) -> tuple[float, float]:
    """Semi-axes ``(y, x)`` in mm of a centred ellipse around the anatomy of ``magnitude [t, y, x]``.

    The anatomy is where the mean magnitude over the frames exceeds ``level`` times its
    99th percentile; the ellipse has the aspect ratio of that support's extents (98th
    percentile of ``|y|`` and ``|x|`` from the image centre) and holds ``coverage`` of
    it, times ``margin``. Pixel ``i`` sits at ``(i - n // 2) * fov / n``, as in
    :func:`recon.simulate.coils.coil_sensitivities`. At least a tenth of the FOV.
    """
    mean = np.abs(np.asarray(magnitude)).mean(axis=0)
    ny, nx = mean.shape
    support = mean > level * max(float(np.percentile(mean, 99)), 1e-12)
    iy, ix = np.nonzero(support)
    if len(iy) < 4:
        return (0.5 * fov_mm[0] * margin, 0.5 * fov_mm[1] * margin)
    y = (iy - ny // 2) * fov_mm[0] / ny
    x = (ix - nx // 2) * fov_mm[1] / nx
    ey = max(float(np.percentile(np.abs(y), 98)), 0.05 * fov_mm[0])
    ex = max(float(np.percentile(np.abs(x), 98)), 0.05 * fov_mm[1])
    scale = float(np.percentile(np.sqrt((y / ey) ** 2 + (x / ex) ** 2), 100 * coverage))
    return (ey * scale * margin, ex * scale * margin)


def simulate_slice(
    magnitude: np.ndarray,
    acq: Acquisition,
    rng: np.random.Generator,
    noise_cov: np.ndarray | None = None,
    sigma: float | None = None,
    geometry: Geometry | None = None,
    coil_grid: int = 48,
    noise_everywhere: bool = False,
) -> SimulatedSlice:
    """The forward model: one slice of multi-coil raw data (module docstring).

    Parameters
    ----------
    magnitude : float ``[t, ny, nx]`` object magnitude on the recon grid
        (``t = acq.frames``, ``(ny, nx) = acq.matrix``).
    acq : the acquisition (coils, noise, mask, phase model, intensity, ...).
    rng : source of the phase, coils, noise covariance and noise.
    noise_cov : inter-coil noise covariance ``[c, c]``; drawn when None.
    sigma : noise std in data units; from ``acq.snr`` and this slice when None.
    geometry : slice position/orientation stamped on the acquisitions.
    coil_grid : the coil fields are computed on this grid and interpolated
        (:func:`recon.simulate.coils.coil_maps`).
    noise_everywhere : noise on every ky line (so that any mask may be applied later);
        by default only on the lines the acquisition's mask acquires in some frame.
    """
    acq.validate()
    ny, nx = acq.matrix
    if tuple(magnitude.shape) != (acq.frames, ny, nx):
        raise InputError(f"magnitude frames {tuple(magnitude.shape)} do not match the acquisition "
                         f"({acq.frames}, {ny}, {nx})")
    osf = acq.readout_oversampling
    image = (magnitude * np.exp(1j * background_phase((ny, nx), acq.phase_model, rng))).astype(np.complex64)
    nx_os = nx * osf
    fov_os = (acq.fov_mm[0], acq.fov_mm[1] * osf)
    # the array wraps the body the image shows, outside it (never through the anatomy)
    body = body_axes(magnitude, acq.fov_mm, acq.body_margin)
    csm_os = coil_maps(acq.n_coils, (ny, nx_os), fov_os, rng, grid=coil_grid, family=acq.coil_family,
                       body_axes_mm=body, standoff_mm=acq.standoff_mm, radius_scale=acq.radius_scale)
    padded = np.zeros((acq.frames, ny, nx_os), dtype=np.complex64)
    x0 = nx_os // 2 - nx // 2
    padded[:, :, x0:x0 + nx] = image
    image *= np.float32(acq.intensity)
    kspace = fft2c(padded[:, None] * csm_os[None]).astype(np.complex64) * np.float32(acq.intensity)
    csm = center_crop(csm_os, (ny, nx))
    if sigma is None:
        sigma = noise_sigma(image * np.sqrt((np.abs(csm) ** 2).sum(axis=0)), acq.snr)
    if noise_cov is None:
        noise_cov = noise_covariance(acq.n_coils, rng, correlation=acq.noise_correlation)
    mask = acq.mask()
    # noise on the lines some frame acquires (the others are never written, and
    # generating noise is the costliest step of a simulation)
    rows = np.arange(ny) if noise_everywhere else np.flatnonzero(mask.any(axis=0))
    noise_shape = (acq.frames, acq.n_coils, len(rows), nx_os)
    kspace[:, :, rows] += sigma * correlated_noise(noise_shape, noise_cov, rng)
    geom = geometry if geometry is not None else slice_geometry("sax", 0, 1, 10.0)
    return SimulatedSlice(image, np.ascontiguousarray(csm), kspace, mask, geom, sigma, noise_cov)


def to_slice_data(sim: SimulatedSlice, acq: Acquisition, slice_index: int = 0) -> SliceData:
    """A simulated slice as the reader would deliver it from a raw file.

    The slice goes through the same code as a raw file's: acquisitions in the order of
    ``acq.ordering`` (:func:`recon.io.acquisitions.slice_to_acquisitions`), header from
    :func:`protocol`, then :func:`recon.io.assemble.assemble_slices`, so training
    data and inference data share every step after the scanner.
    """
    prot = protocol(acq)
    header = build_cine_header(prot)
    heads, data = slice_to_acquisitions(sim.kspace, sim.mask, acs_indices(acq.matrix[0], acq.n_acs), slice_index,
                                        sim.geometry, ordering=acq.ordering,
                                        calibration_only_lines=acq.calibration_in_every_frame)
    heads["idx"]["slice"] = 0
    (s,) = assemble_slices(heads, data, encoding_info(header), header)
    s.slice_index = slice_index
    return s


def noise_sigma(image: np.ndarray, snr: float) -> float:
    """Noise std giving ``snr`` = mean magnitude of ``image`` over its object / std (object: > 10 % of max)."""
    mag = np.abs(image)
    return float(mag[mag > 0.1 * mag.max()].mean() / snr)


@dataclass
class SimulatedScan:
    """A simulated multi-slice scan before it is written: header, slices, noise scan ``[c, n]``."""

    config: SimulationConfig
    slices: list[SimulatedSlice]
    noise: np.ndarray | None
    sigma: float

    def acquisitions(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """Headers and data of every acquisition, noise scan first (scanner order)."""
        cfg = self.config
        return scan_to_acquisitions(
            [(s.kspace, s.mask, s.geometry) for s in self.slices],
            acs_indices(cfg.matrix[0], cfg.n_acs), cfg.timing, self.noise, ordering=cfg.ordering,
            calibration_only_lines=cfg.acquisition().calibration_in_every_frame,
        )


def simulate_scan(cfg: SimulationConfig) -> SimulatedScan:
    """Simulate ``cfg.n_slices`` slices sharing one coil noise covariance and noise level."""
    cfg.validate()
    acq = cfg.acquisition()
    rng = np.random.default_rng(cfg.seed)
    cov = noise_covariance(cfg.n_coils, rng, correlation=cfg.noise_correlation)
    slices, sigma = [], None  # sigma fixed by the first slice, then the same for the scan
    for s in range(cfg.n_slices):
        geom = slice_geometry(cfg.view, s, cfg.n_slices, cfg.slice_thickness_mm + cfg.slice_gap_mm)
        sim = simulate_slice(_magnitude_frames(cfg, s, rng), acq, rng, cov, sigma, geom)
        sigma = sim.sigma
        slices.append(sim)
    noise = None
    if cfg.noise_scan:
        noise = sigma * correlated_noise((cfg.n_coils, 1, cfg.noise_samples), cov, rng)[:, 0]
    return SimulatedScan(cfg, slices, noise, sigma)


def write_slice_file(path: str | Path, sim: SimulatedSlice, acq: Acquisition, noise_samples: int = 2048,
                     seed: int = 0) -> Path:
    """One simulated slice as an ISMRMRD raw file, acquired with ``acq``'s mask (R, ACS,
    shift) and line order, a noise scan first (``noise_samples`` per coil with the slice's
    covariance and sigma; needs ``sim.noise_cov``) and the references ``ground_truth`` and
    ``csm``. ``sim.kspace`` must hold noise on every line the mask acquires."""
    mask = acq.mask()
    noise = None
    if noise_samples and sim.noise_cov is not None:
        rng = np.random.default_rng(seed)
        noise = sim.sigma * correlated_noise((acq.n_coils, 1, noise_samples), sim.noise_cov, rng)[:, 0]
    headers, data = scan_to_acquisitions([(sim.kspace, mask, sim.geometry)], acs_indices(acq.matrix[0], acq.n_acs),
                                         noise=noise, ordering=acq.ordering,
                                         calibration_only_lines=acq.calibration_in_every_frame)
    return write_raw(path, build_cine_header(protocol(acq)), headers, data,
                     references={"ground_truth": [sim.reference], "csm": [sim.csm]})


def simulate_to_file(cfg: SimulationConfig, path: str | Path) -> dict:
    """Simulate a scan and write it as one ISMRMRD raw file; returns a summary dict.

    The file holds the noise scan (optional) first, then the slices one after the
    other (see :func:`recon.io.acquisitions.scan_to_acquisitions`); the references
    ``ground_truth`` and ``csm`` are stored per slice.
    """
    scan = simulate_scan(cfg)
    headers, data = scan.acquisitions()
    write_raw(path, build_cine_header(cfg.protocol()), headers, data, references={
        "ground_truth": [s.reference for s in scan.slices], "csm": [s.csm for s in scan.slices]})
    return {
        "path": str(path), "slices": cfg.n_slices, "phases": cfg.n_phases, "coils": cfg.n_coils,
        "matrix": list(cfg.matrix), "acceleration": cfg.acceleration, "acs_lines": cfg.n_acs,
        "acquisitions": int(len(headers)), "source": cfg.source, "view": cfg.view,
        "mask": "shifted per frame" if cfg.shifted_mask else "same in every frame",
        "noise_sigma": scan.sigma,
        "config": asdict(cfg),
    }
