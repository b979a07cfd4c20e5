"""Multi-coil, undersampled cine raw data from a phantom or a real magnitude series.

Pipeline per slice: magnitude frames ``[t, y, x]`` (phantom or real series) x smooth
phase -> embed in the readout-oversampled FOV -> multiply by coil maps -> centred
FFT -> complex Gaussian noise with inter-coil covariance -> line mask -> ISMRMRD
acquisitions. The noise-free coil-combined reference and the true maps (on the recon
grid) are stored in the same file as references (see :mod:`recon.io.raw`).

The reference is what a parallel-imaging reconstruction with unit-norm coil maps
(ESPIRiT, SENSE) recovers from fully sampled noise-free data: the object ``x``
weighted by the array's sum-of-squares sensitivity, ``x * sqrt(sum_c |S_c|^2)``;
its magnitude equals the root-sum-of-squares of the noise-free coil images, the
reference CMRxRecon and fastMRI use.

SNR definition: ``snr`` = mean |x| over the object (pixels above 10 % of the
maximum) divided by the per-coil noise standard deviation in image space, for a
coil of unit sensitivity; with the orthonormal FFT the k-space noise std is the
same number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.fft import fft2c
from recon.io.acquisitions import CineTiming, scan_to_acquisitions
from recon.io.header import CineProtocol, build_cine_header
from recon.io.raw import write_raw
from recon.kspace import center_crop
from recon.masks import acs_indices, cine_mask
from recon.simulate.coils import coil_sensitivities, correlated_noise, noise_covariance
from recon.simulate.phantom import cine_phantom, smooth_phase
from recon.simulate.realdata import fit_to_matrix, load_cine_series
from recon.slicedata import Geometry

VIEWS = ("sax", "lax")


@dataclass(frozen=True)
class SimulationConfig:
    """What ``crunet simulate`` makes. ``source`` is ``"phantom"`` or a ``.npz`` cine series."""

    n_slices: int = 1
    n_phases: int = 12
    n_coils: int = 10
    matrix: tuple[int, int] = (128, 128)
    fov_mm: tuple[float, float] = (320.0, 320.0)
    slice_thickness_mm: float = 8.0
    slice_gap_mm: float = 2.0
    readout_oversampling: int = 2
    acceleration: int = 8
    n_acs: int = 24
    shifted_mask: bool = False
    snr: float = 40.0
    view: str = "sax"
    source: str = "phantom"
    noise_scan: bool = True
    noise_samples: int = 2048
    heart_rate_bpm: float = 60.0
    seed: int = 0
    timing: CineTiming = field(default_factory=CineTiming)

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
        if self.source != "phantom" and not Path(self.source).is_file():
            raise InputError(f"image source '{self.source}' is neither 'phantom' nor an existing .npz file")
        return self

    def protocol(self) -> CineProtocol:
        return CineProtocol(
            matrix=tuple(self.matrix), fov_mm=tuple(self.fov_mm),
            slice_thickness_mm=self.slice_thickness_mm,
            readout_oversampling=self.readout_oversampling, n_phases=self.n_phases,
            n_slices=self.n_slices, n_coils=self.n_coils, acceleration=self.acceleration,
            n_acs=self.n_acs, calibration_mode="interleaved" if self.shifted_mask else "embedded",
            tr_ms=self.timing.tr_ms, heart_rate_bpm=self.heart_rate_bpm, view=self.view,
            protocol_name=f"crunet_cine_{self.view}",
        )


@dataclass
class SimulatedSlice:
    """One simulated slice. Shapes: image ``[t, y, x]`` (the object), csm ``[c, y, x]``
    (recon grid), kspace ``[t, c, ky, kx_os]`` (noisy, fully sampled, encoded grid),
    mask ``[t, ky]``; :attr:`reference` ``[t, y, x]`` is the ground truth a method is
    scored against (see the module docstring)."""

    image: np.ndarray
    csm: np.ndarray
    kspace: np.ndarray
    mask: np.ndarray
    geometry: Geometry
    sigma: float

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


def slice_geometry(view: str, slice_number: int, n_slices: int, spacing_mm: float) -> Geometry:
    """Oblique double-angulated orientation typical of a SAX stack or a LAX view."""
    if view == "sax":
        normal = np.array([-0.55, 0.45, 0.70])
        read = np.array([0.78, 0.62, 0.0])
    else:
        normal = np.array([0.45, 0.85, -0.27])
        read = np.array([0.88, -0.47, 0.0])
    normal /= np.linalg.norm(normal)
    read = read - normal * (read @ normal)
    read /= np.linalg.norm(read)
    phase = np.cross(normal, read)
    center = np.array([12.0, -35.0, 20.0])
    pos = center + (slice_number - (n_slices - 1) / 2) * spacing_mm * normal
    t3 = lambda v: tuple(float(np.float32(a)) for a in v)  # noqa: E731
    return Geometry(t3(pos), t3(read), t3(phase), t3(normal), (0.0, 0.0, -1200.0))


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


def simulate_slice(
    cfg: SimulationConfig,
    slice_number: int,
    rng: np.random.Generator,
    noise_cov: np.ndarray | None = None,
    sigma: float | None = None,
) -> SimulatedSlice:
    """Simulate one slice (see the module docstring for the pipeline).

    ``noise_cov`` is the inter-coil noise covariance ``[c, c]`` (drawn from ``rng``
    when None); ``sigma`` the noise std (from ``cfg.snr`` and this slice when None).
    """
    ny, nx = cfg.matrix
    osf = cfg.readout_oversampling
    mag = _magnitude_frames(cfg, slice_number, rng)
    image = (mag * np.exp(1j * smooth_phase((ny, nx), rng))).astype(np.complex64)
    nx_os = nx * osf
    fov_os = (cfg.fov_mm[0], cfg.fov_mm[1] * osf)
    # the array wraps the body, whose size follows the recon FOV, not the oversampled one
    body = (0.33 * cfg.fov_mm[0], 0.47 * cfg.fov_mm[1])
    csm_os = coil_sensitivities(cfg.n_coils, (ny, nx_os), fov_os, rng, body_axes_mm=body)
    padded = np.zeros((cfg.n_phases, ny, nx_os), dtype=np.complex64)
    x0 = nx_os // 2 - nx // 2
    padded[:, :, x0:x0 + nx] = image
    kspace = fft2c(padded[:, None] * csm_os[None]).astype(np.complex64)
    if sigma is None:
        sigma = noise_sigma(image, cfg.snr)
    if noise_cov is None:
        noise_cov = noise_covariance(cfg.n_coils, rng)
    kspace += sigma * correlated_noise(kspace.shape, noise_cov, rng)
    mask = cine_mask(ny, cfg.acceleration, cfg.n_acs, cfg.n_phases, cfg.shifted_mask)
    geom = slice_geometry(cfg.view, slice_number, cfg.n_slices,
                          cfg.slice_thickness_mm + cfg.slice_gap_mm)
    csm = center_crop(csm_os, (ny, nx))
    return SimulatedSlice(image, np.ascontiguousarray(csm), kspace, mask, geom, sigma)


def noise_sigma(image: np.ndarray, snr: float) -> float:
    """Noise std giving ``snr`` = mean object magnitude / std (object: > 10 % of max)."""
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
            acs_indices(cfg.matrix[0], cfg.n_acs), cfg.timing, self.noise,
        )


def simulate_scan(cfg: SimulationConfig) -> SimulatedScan:
    """Simulate ``cfg.n_slices`` slices sharing one coil noise covariance and noise level."""
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    cov = noise_covariance(cfg.n_coils, rng)
    slices, sigma = [], None  # sigma fixed by the first slice, then the same for the scan
    for s in range(cfg.n_slices):
        sim = simulate_slice(cfg, s, rng, cov, sigma)
        sigma = sim.sigma
        slices.append(sim)
    noise = None
    if cfg.noise_scan:
        noise = sigma * correlated_noise((cfg.n_coils, 1, cfg.noise_samples), cov, rng)[:, 0]
    return SimulatedScan(cfg, slices, noise, sigma)


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
