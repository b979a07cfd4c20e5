"""Training and validation samples: simulated on the fly, or read from ISMRMRD files.

Every sample is a dict of tensors (no batch axis)::

    k       complex64 [t, c, y, x]  undersampled centred k-space (zeros off the mask)
    mask    bool      [t, y]        sampled phase-encode lines
    maps    complex64 [c, y, x]     coil maps given to the network (unit sum of squares)
    target  complex64 [t, y, x]     ground truth a unit-norm-maps reconstruction recovers
    acceleration  int64 []          R of the mask
    scale   float32   []            the factor k and target were divided by

Simulated samples (:class:`SimulatedCine`), per sample:

1. magnitude frames ``[t, ny, nx]``: a real cine series from ``shared/data`` (random
   series and slice, random crop of the matrix's aspect ratio, fitted to the matrix,
   resampled to ``frames`` phases with a random start phase, random flips) or the
   dynamic phantom (random SAX/LAX view); the phantom only when no real series exist
   (``images: auto``) or for a ``phantom_fraction`` of the samples;
2. object ``x = magnitude * exp(i * smooth phase)``;
3. coil sensitivities ``S [c, ny, nx]`` (Biot-Savart surface-loop array,
   :func:`recon.simulate.coils.coil_sensitivities`, on a coarse grid and interpolated)
   and coil images ``S x`` at the full matrix;
4. readout strip (design.md §4): the coil images are cropped along the readout ``x`` in
   image space *after* the coils are applied, then Fourier transformed, so every ky
   line is kept and the ky aliasing of the mask is that of the full FOV;
5. k-space ``F (S x)`` plus complex Gaussian noise with a random inter-coil covariance
   (SNR log-uniform in ``snr``), masked with a CMRxRecon line mask: R drawn from
   ``accelerations`` plus ``acs_lines`` central lines, the same in every frame;
6. maps: the true ``S / sqrt(sum_c |S_c|^2)`` (``maps: true``) or ESPIRiT from the noisy
   full-width ACS averaged over frames (``maps: espirit``), cropped to the strip;
7. target ``sum_c conj(maps_c) S_c x`` (noise free): with the true maps this is
   ``x * sqrt(sum_c |S_c|^2)``, the reference of :attr:`recon.simulate.cine.SimulatedSlice.reference`;
8. scale: k and target are divided by the RMS image magnitude estimated from the
   central (ACS) k-space lines (:func:`normalisation_scale`), a number computable from
   measured data alone whatever R is. The models normalise their input themselves, so
   this only makes loss values comparable between samples.

Reproducibility: a training sample depends only on ``(seed, epoch, index)``, a
validation sample only on ``(val_seed, i)`` (``numpy.random.default_rng`` of those
numbers), whatever the process, worker or rank that makes it.
"""

from __future__ import annotations

import glob
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recon.errors import InputError
from recon.kspace import normalisation_scale  # noqa: F401  (re-exported: used by the engine)
from recon.fft import fft2c, fftc, ifftc
from recon.masks import cine_mask
from recon.simulate.cine import noise_sigma, resample_cycle
from recon.simulate.coils import coil_sensitivities, correlated_noise, noise_covariance
from recon.simulate.phantom import cine_phantom, smooth_phase
from recon.simulate.realdata import default_data_dir, fit_to_matrix, list_series
from recon.train.config import DataConfig

KEYS = ("k", "mask", "maps", "target", "acceleration", "scale")
_TRAIN_STREAM, _VAL_STREAM = 0, 1


# ---------------------------------------------------------------------------
# building blocks


def _cubic_matrix(n_fine: int, n_coarse: int) -> np.ndarray:
    """``[n_fine, n_coarse]`` cubic-convolution (Keys, a = -0.5) interpolation weights.

    Fine pixel ``i`` (position ``(i - n_fine // 2) / n_fine`` of the FOV) maps to coarse
    index ``(i - n_fine // 2) * n_coarse / n_fine + n_coarse // 2``; indices beyond the
    edges are clamped (edge values repeated).
    """
    pos = (np.arange(n_fine) - n_fine // 2) * (n_coarse / n_fine) + n_coarse // 2
    base = np.floor(pos).astype(int)
    frac = pos - base
    w = np.zeros((n_fine, n_coarse))
    for off in (-1, 0, 1, 2):
        d = np.abs(frac - off)
        kern = np.where(d <= 1, 1.5 * d**3 - 2.5 * d**2 + 1,
                        np.where(d < 2, -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2, 0.0))
        np.add.at(w, (np.arange(n_fine), np.clip(base + off, 0, n_coarse - 1)), kern)
    return w


def simulated_coils(n_coils: int, shape: tuple[int, int], fov_mm: tuple[float, float],
                    rng: np.random.Generator, grid: int = 48) -> np.ndarray:
    """Coil sensitivities ``[c, ny, nx]`` simulated on a ``grid x grid`` mesh, cubic-interpolated.

    The pixel positions follow :func:`coil_sensitivities` (pixel ``i`` at
    ``(i - n // 2) * fov / n``), so the interpolated maps sample the same fields; the
    fields are smooth inside the body (the differences, < 0.01 of the peak, sit next to
    the wires), and the direct computation costs ~10x more at 128 x 128.
    """
    ny, nx = shape
    gy, gx = min(grid, ny), min(grid, nx)
    coarse = coil_sensitivities(n_coils, (gy, gx), fov_mm, rng)
    if (gy, gx) == (ny, nx):
        return coarse
    wy = _cubic_matrix(ny, gy).astype(np.complex64)
    wx = _cubic_matrix(nx, gx).astype(np.complex64)
    return (wy[None] @ coarse @ wx.T[None]).astype(np.complex64)


def unit_maps(s: np.ndarray) -> np.ndarray:
    """Maps ``S / sqrt(sum_c |S_c|^2)`` (0 where all coils are 0)."""
    r = np.sqrt((np.abs(s) ** 2).sum(axis=0, keepdims=True))
    return np.where(r > 0, s / np.where(r > 0, r, 1), 0).astype(np.complex64)


def random_crop_fit(series: np.ndarray, shape: tuple[int, int], scale: tuple[float, float],
                    rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``series [T, H, W]`` with the aspect ratio of ``shape``, fitted to ``shape``.

    The crop side is ``U(scale)`` times the largest crop of that aspect ratio.
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
    return fit_to_matrix(series[:, y0:y0 + hh, x0:x0 + ww], shape)


def _npz_array_shape(path: Path, name: str) -> tuple[int, ...]:
    """Shape of array ``name`` in an ``.npz`` archive, read from its header only."""
    try:
        with zipfile.ZipFile(path) as z, z.open(f"{name}.npy") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, _ = read(f)
    except KeyError:
        raise InputError(f"{path}: no array {name!r}") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable .npz archive ({exc})") from None
    return tuple(shape)


class SeriesPool:
    """The slices of real cine series files (``cine`` arrays, see :mod:`recon.simulate.realdata`).

    entries : ``(path, slice_index)`` for every slice (``None`` for a 3-D series).
    A file is read once, on first use of one of its slices, and kept in memory as
    stored (int16: ~130 MB for ``shared/data``); :meth:`preload` reads all of them
    (before DataLoader workers fork, so they share the arrays).
    """

    def __init__(self, files: list[Path]):
        self.entries: list[tuple[Path, int | None]] = []
        for f in files:
            shape = _npz_array_shape(f, "cine")
            if len(shape) == 4:
                self.entries += [(f, i) for i in range(shape[0])]
            elif len(shape) == 3:
                self.entries.append((f, None))
            else:
                raise InputError(f"{f}: 'cine' has shape {shape}; expected (slices, phases, H, W) or (phases, H, W)")
        self._arrays: dict[Path, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def _array(self, path: Path) -> np.ndarray:
        if path not in self._arrays:
            with np.load(path, allow_pickle=False) as z:
                self._arrays[path] = z["cine"]
        return self._arrays[path]

    def preload(self) -> None:
        for path, _ in self.entries:
            self._array(path)

    def frames(self, i: int) -> np.ndarray:
        """float32 ``[T, H, W]`` of entry ``i``, divided by its maximum (as ``load_cine_series``)."""
        path, index = self.entries[i]
        arr = self._array(path)
        series = (arr if index is None else arr[index]).astype(np.float32)
        peak = float(series.max()) if series.size else 0.0
        if not np.isfinite(series).all() or series.min() < 0 or peak <= 0:
            raise InputError(f"{path}: slice {index} is not a valid magnitude series (negative, non-finite or all 0)")
        return series / np.float32(peak)


def split_series(cfg: DataConfig) -> tuple[list[Path], list[Path]]:
    """Real series files for training and for validation (``holdout``), per ``cfg.images``."""
    if cfg.images == "phantom":
        return [], []
    d = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
    files = list_series(d) if d is not None and d.is_dir() else []
    if cfg.images == "real" and not files:
        raise InputError(f"data.images is 'real' but no .npz cine series were found (data_dir: {d})")
    held = set(cfg.holdout)
    train = [f for f in files if f.stem not in held]
    val = [f for f in files if f.stem in held]
    if files and not train:
        raise InputError("every real series is held out for validation; nothing is left to train on")
    return train, val


# ---------------------------------------------------------------------------
# one simulated sample


def simulate_sample(cfg: DataConfig, magnitude: np.ndarray, rng: np.random.Generator,
                    acceleration: int, strip_width: int | None) -> dict[str, torch.Tensor]:
    """Steps 2-8 of the module docstring for magnitude frames ``[t, ny, nx]``."""
    t, ny, nx = magnitude.shape
    x = (magnitude * np.exp(1j * smooth_phase((ny, nx), rng))).astype(np.complex64)
    s = simulated_coils(cfg.coils, (ny, nx), cfg.fov_mm, rng, cfg.coil_grid)
    coil_images = x[:, None] * s[None]  # [t, c, ny, nx], full matrix
    sigma = noise_sigma(x, float(np.exp(rng.uniform(*np.log(cfg.snr)))))
    cov = noise_covariance(cfg.coils, rng)
    if cfg.maps == "espirit":
        from recon.coils.espirit import espirit_maps
        from recon.masks import acs_indices

        acs = acs_indices(ny, cfg.acs_lines)
        calib = fft2c(coil_images.mean(axis=0))[:, acs]  # time-averaged ACS, full width
        calib = calib + sigma / np.sqrt(t) * correlated_noise(calib.shape, cov, rng)
        maps = np.asarray(espirit_maps(calib.astype(np.complex64), (ny, nx)))
    else:
        maps = unit_maps(s)
    w = nx if strip_width is None else int(strip_width)
    x0 = int(rng.integers(0, nx - w + 1))
    coil_images = coil_images[..., x0:x0 + w]
    maps = np.ascontiguousarray(maps[..., x0:x0 + w])
    target = (coil_images * maps[None].conj()).sum(axis=1)
    k = fft2c(coil_images)
    k = k + sigma * correlated_noise(k.shape, cov, rng)
    mask = cine_mask(ny, acceleration, cfg.acs_lines, t)
    k = k * mask[:, None, :, None]
    return _finish(k, mask, maps, target, acceleration)


def _finish(k, mask, maps, target, acceleration: int) -> dict[str, torch.Tensor]:
    k = torch.as_tensor(np.ascontiguousarray(k)).to(torch.complex64)
    mask = torch.as_tensor(np.ascontiguousarray(mask)).to(torch.bool)
    maps = torch.as_tensor(np.ascontiguousarray(maps)).to(torch.complex64)
    target = torch.as_tensor(np.ascontiguousarray(target)).to(torch.complex64)
    scale = normalisation_scale(k[None])[0]
    return {"k": k / scale, "mask": mask, "maps": maps, "target": target / scale,
            "acceleration": torch.tensor(int(acceleration)), "scale": scale.float()}


# ---------------------------------------------------------------------------
# sample sources


class SimulatedCine:
    """On-the-fly simulated samples (module docstring); ``split`` is ``train`` or ``val``.

    Training samples: ``sample(epoch, index)``, R drawn from ``accelerations``, strip
    ``strip_width``. Validation samples: ``sample(0, i)`` for ``i < val_samples``, R =
    ``val_acceleration``, width ``val_strip_width``, from the held-out series (or
    phantoms when there are none).
    """

    def __init__(self, cfg: DataConfig, seed: int = 0, split: str = "train"):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.cfg, self.seed, self.split = cfg, int(seed), split
        train_files, val_files = split_series(cfg)
        files = train_files if split == "train" else val_files
        self.pool = SeriesPool(files) if files else None

    def __len__(self) -> int:
        return self.cfg.val_samples if self.split == "val" else 2**31 - 1

    @property
    def uses_real_images(self) -> bool:
        return self.pool is not None

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        if self.split == "train":
            return np.random.default_rng([_TRAIN_STREAM, self.seed, epoch, index])
        return np.random.default_rng([_VAL_STREAM, self.cfg.val_seed, index])

    def magnitude(self, rng: np.random.Generator) -> np.ndarray:
        """Step 1: magnitude frames ``[frames, ny, nx]`` in [0, 1]."""
        cfg = self.cfg
        use_phantom = self.pool is None or (self.split == "train" and rng.random() < cfg.phantom_fraction)
        if use_phantom:
            view = "sax" if rng.random() < 0.5 else "lax"
            mag = cine_phantom(cfg.frames, tuple(cfg.matrix), view, rng)
        else:
            series = self.pool.frames(int(rng.integers(len(self.pool))))
            if cfg.flips:
                series = np.roll(series, int(rng.integers(series.shape[0])), axis=0)
            series = random_crop_fit(series, tuple(cfg.matrix), cfg.crop_scale, rng)
            mag = resample_cycle(series, cfg.frames)
        if cfg.flips:
            if rng.random() < 0.5:
                mag = mag[:, ::-1]
            if rng.random() < 0.5:
                mag = mag[:, :, ::-1]
        mag = np.ascontiguousarray(mag, dtype=np.float32)
        return mag / max(float(mag.max()), 1e-12)

    def sample(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(epoch, index)
        cfg = self.cfg
        if self.split == "train":
            r, width = int(rng.choice(cfg.accelerations)), cfg.strip_width
        else:
            r, width = cfg.val_acceleration, cfg.val_strip_width
        return simulate_sample(cfg, self.magnitude(rng), rng, r, width)


def _expand_files(patterns: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for p in patterns:
        hits = sorted(glob.glob(str(Path(p).expanduser())))
        if not hits:
            raise InputError(f"no raw file matches {p!r}")
        files += [Path(h) for h in hits]
    return files


@dataclass
class _RawSlice:
    k: np.ndarray
    mask: np.ndarray
    maps: np.ndarray
    target: np.ndarray
    acceleration: int


class RawFileSlices:
    """Slices of ISMRMRD raw files that carry a ``ground_truth`` reference.

    k-space, mask and maps come from :func:`recon.io.raw.read_raw` and
    :func:`recon.problem.prepare` (readout oversampling removed). Maps: the file's
    ``csm`` reference normalised to unit sum of squares (``maps: true``) or ESPIRiT
    from the ACS. With ESPIRiT maps and a ``csm`` reference, the target is re-projected
    onto the ESPIRiT maps (``sum_c conj(E_c) S_c gt``) so its phase matches what a
    reconstruction with those maps can recover. Training samples are a per-epoch
    permutation of all slices with a random readout strip; validation samples are
    the slices of ``val_files`` at full width.
    """

    def __init__(self, cfg: DataConfig, seed: int = 0, split: str = "train"):
        self.cfg, self.seed, self.split = cfg, int(seed), split
        self.files = _expand_files(cfg.train_files if split == "train" else cfg.val_files)
        self.entries: list[tuple[Path, int]] = []
        self._cache: dict[tuple[Path, int], _RawSlice] = {}
        from recon.io.raw import read_raw

        for f in self.files:
            n = len(read_raw(f).slices)
            self.entries += [(f, i) for i in range(n)]
        if not self.entries:
            raise InputError(f"no slices in {[str(f) for f in self.files]}")

    def __len__(self) -> int:
        return len(self.entries) if self.split == "val" else 2**31 - 1

    def _load(self, entry: tuple[Path, int]) -> _RawSlice:
        if entry in self._cache:
            return self._cache[entry]
        from recon.io.raw import read_raw, read_reference
        from recon.problem import prepare

        path, i = entry
        raw = read_raw(path)
        s = raw.slices[i]
        gt = read_reference(path, "ground_truth", i)
        if gt is None:
            raise InputError(f"{path}: slice {i} has no 'ground_truth' reference to train against")
        csm = read_reference(path, "csm", i)
        if self.cfg.maps == "true":
            if csm is None:
                raise InputError(f"{path}: data.maps is 'true' but the file has no 'csm' reference")
            p = prepare(s, maps=unit_maps(np.asarray(csm)))
        else:
            p = prepare(s)
        maps = p.maps.numpy()
        gt = np.asarray(gt, dtype=np.complex64).reshape(p.kspace.shape[0], *p.kspace.shape[-2:])
        if self.cfg.maps == "espirit" and csm is not None:
            gt = (unit_maps(np.asarray(csm))[None] * gt[:, None] * maps[None].conj()).sum(axis=1)
        item = _RawSlice(p.kspace.numpy(), p.mask.numpy(), maps, gt, int(s.acceleration))
        self._cache[entry] = item
        return item

    def sample(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        n = len(self.entries)
        if self.split == "val":
            item, width, rng = self._load(self.entries[index % n]), self.cfg.val_strip_width, None
        else:
            perm = np.random.default_rng([_TRAIN_STREAM, self.seed, epoch, index // n]).permutation(n)
            item = self._load(self.entries[int(perm[index % n])])
            width, rng = self.cfg.strip_width, np.random.default_rng([_TRAIN_STREAM, self.seed, epoch, index, 1])
        k, maps, target = item.k, item.maps, item.target
        nx = k.shape[-1]
        if width is not None and width < nx:
            x0 = int(rng.integers(0, nx - width + 1)) if rng is not None else nx // 2 - width // 2
            k = fftc(ifftc(k, dims=(-1,))[..., x0:x0 + width], dims=(-1,))
            maps, target = maps[..., x0:x0 + width], target[..., x0:x0 + width]
        return _finish(k, item.mask, maps, target, item.acceleration)


def make_source(cfg: DataConfig, seed: int, split: str):
    """The sample source of ``cfg.source`` for ``split`` (``train`` or ``val``)."""
    if cfg.source == "ismrmrd":
        return RawFileSlices(cfg, seed, split)
    return SimulatedCine(cfg, seed, split)


# ---------------------------------------------------------------------------
# epochs, sharding, batching


def global_index(step: int, rank: int, world_size: int, batch_size: int, b: int) -> int:
    """Index (within the epoch) of batch element ``b`` of ``rank`` at ``step``.

    The global batch of a step is ``world_size * batch_size`` consecutive indices,
    rank ``r`` taking the ``r``-th block: a run on ``W`` processes with batch ``B``
    sees the same samples per step as one process with batch ``W * B``
    (DistributedSampler-equivalent sharding of the on-the-fly stream).
    """
    return (step * world_size + rank) * batch_size + b


class EpochView(torch.utils.data.Dataset):
    """Map-style dataset of one epoch's samples for one rank (item ``j`` = step ``j // B``, element ``j % B``)."""

    def __init__(self, source, epoch: int, steps: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.source, self.epoch, self.steps = source, int(epoch), int(steps)
        self.batch_size, self.rank, self.world_size = int(batch_size), int(rank), int(world_size)

    def __len__(self) -> int:
        return self.steps * self.batch_size

    def __getitem__(self, j: int) -> dict[str, torch.Tensor]:
        step, b = divmod(int(j), self.batch_size)
        return self.source.sample(self.epoch, global_index(step, self.rank, self.world_size, self.batch_size, b))


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch; samples of different shapes are an InputError."""
    shapes = {tuple(s["k"].shape) for s in samples}
    if len(shapes) > 1:
        raise InputError(f"samples of different shapes {sorted(shapes)} cannot share a batch: "
                         "use batch_size 1 or a strip_width")
    return {key: torch.stack([s[key] for s in samples]) for key in KEYS}


def epoch_loader(source, epoch: int, steps: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 workers: int = 0) -> torch.utils.data.DataLoader:
    """Batches of one epoch for one rank, in step order."""
    view = EpochView(source, epoch, steps, batch_size, rank, world_size)
    return torch.utils.data.DataLoader(view, batch_size=batch_size, shuffle=False, num_workers=workers,
                                       collate_fn=collate, persistent_workers=False)


def validation_set(source, rank: int = 0, world_size: int = 1) -> list[dict[str, torch.Tensor]]:
    """This rank's share (``i % world_size == rank``) of the fixed validation samples."""
    return [source.sample(0, i) for i in range(len(source)) if i % world_size == rank]
