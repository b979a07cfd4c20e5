"""Training and validation samples: simulated on the fly, or read from ISMRMRD files.

Every sample is a dict of tensors (no batch axis)::

    k       complex64 [t, c, y, x]  undersampled centred k-space (zeros off the mask)
    mask    bool      [t, y]        sampled phase-encode lines
    maps    complex64 [c, y, x]     coil maps given to the network (unit sum of squares)
    target  complex64 [t, y, x]     ground truth a reconstruction with these maps can recover
    acceleration  int64 []          R of the mask
    scale   float32   []            the factor k and target were divided by

Simulated samples (:class:`SimulatedCine`) go through exactly what inference does with a
raw file, so there is no train/inference mismatch:

1. an acquisition drawn from an :class:`recon.simulate.acquisition.AcquisitionSpace`
   (``data.train_space`` for training and in-distribution validation,
   ``data.heldout_space`` for the held-out-acquisition validation): matrix, FOV,
   readout oversampling, frames, coil family and count, noise level and correlation,
   R, shifted mask, phase model, intensity, line order;
2. magnitude frames ``[t, ny, nx]``: a slice of a real cine series (training patients
   for training, the ``holdout`` patients for validation), augmented (random 90-degree
   rotation, flips, temporal reversal and roll), a random crop fitted to the matrix,
   resampled to the frame count; or the dynamic phantom for a ``phantom_fraction`` of
   the training samples (and always when there are no real series);
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
   central (ACS) k-space lines (:func:`normalisation_scale`), a number computable from
   measured data alone whatever R is. The models normalise their input themselves, so
   this only makes loss values comparable between samples.

Training scenes: step 3 is the costliest, so one simulated slice (a *scene*: anatomy,
acquisition, noise on every ky line) gives ``scene_reuse`` consecutive training samples,
each with its own R, mask shift and strip (steps 4-7); the ESPIRiT maps of a scene are
estimated once (the ACS block is the same whatever R).

Reproducibility: a training sample depends only on ``(seed, epoch, index)``, a
validation sample only on ``(val_seed, i)`` and its set, whatever the process, worker or
rank that makes it.
"""

from __future__ import annotations

import glob
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from recon.errors import InputError
from recon.kspace import normalisation_scale  # noqa: F401  (re-exported: used by the engine)
from recon.fft import fftc, ifftc
from recon.simulate.acquisition import Acquisition, AcquisitionSpace
from recon.masks import cine_mask
from recon.simulate.cine import SimulatedSlice, resample_cycle, simulate_slice, to_slice_data
from recon.simulate.phantom import cine_phantom
from recon.simulate.realdata import default_data_dir, fit_to_matrix, list_series
from recon.train.config import DataConfig

KEYS = ("k", "mask", "maps", "target", "acceleration", "scale")
_TRAIN_STREAM, _VAL_STREAM, _XVAL_STREAM = 0, 1, 2

#: Sample sources by split: ``train`` (training samples), ``val`` (held-out patients,
#: training acquisitions), ``xval`` (held-out patients, held-out acquisitions).
SPLITS = ("train", "val", "xval")


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


@dataclass
class Scene:
    """One simulated slice (anatomy + acquisition) from which training samples are cut.

    ``sim`` holds noise on every ky line, so any mask of the space can be applied;
    ``maps`` (ESPIRiT from the ACS, the same block whatever R) and ``target`` are filled
    by the first sample made from the scene.
    """

    sim: SimulatedSlice
    acq: Acquisition
    maps: np.ndarray | None = None
    target: np.ndarray | None = None


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

    mask = cine_mask(acq.matrix[0], acq.acceleration, acq.n_acs, acq.frames, acq.shifted_mask)
    s = to_slice_data(replace(scene.sim, mask=mask), acq)
    if scene.maps is None and cfg.maps == "true":
        scene.maps = unit_maps(scene.sim.csm)
    p = prepare(s, maps=scene.maps)
    k, maps = p.kspace.numpy(), p.maps.numpy()
    if scene.maps is None:
        scene.maps = maps
    if scene.target is None:
        scene.target = project_reference(scene.sim.image, scene.sim.csm, maps)
    target = scene.target
    if strip:
        t, _, ny, nx = k.shape
        w = strip_width(cfg.pixels_per_sample, t, ny, nx)
        k, maps, target = readout_strip(k, maps, target, strip_start(target, w, rng), w)
    return _finish(k, mask, maps, target, acq.acceleration)


def simulate_sample(cfg: DataConfig, magnitude: np.ndarray, acq: Acquisition, rng: np.random.Generator,
                    strip: bool) -> dict[str, torch.Tensor]:
    """Steps 3-7 of the module docstring for one sample of magnitude frames ``[acq.frames, *acq.matrix]``."""
    scene = simulate_scene(cfg, magnitude, acq, rng, noise_everywhere=False)
    return scene_sample(cfg, scene, acq, rng, strip)


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
    """On-the-fly simulated samples (module docstring) of one split (:data:`SPLITS`).

    ``train``: ``sample(epoch, index)``, acquisitions from ``train_space`` with R drawn
    from it, training strips, training series. ``val`` / ``xval``: ``sample(0, i)`` for
    ``i < val_samples``, whole slices of the held-out series at R = ``val_acceleration``,
    acquisitions from ``train_space`` (``val``) or ``heldout_space`` (``xval``).
    """

    def __init__(self, cfg: DataConfig, seed: int = 0, split: str = "train"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.cfg, self.seed, self.split = cfg, int(seed), split
        train_files, val_files = split_series(cfg)
        files = train_files if split == "train" else val_files
        self.pool = SeriesPool(files) if files else None
        self.space: AcquisitionSpace = cfg.heldout_space if split == "xval" else cfg.train_space
        self._scene: tuple[tuple[int, int], Scene] | None = None

    def __len__(self) -> int:
        return self.cfg.val_samples if self.split != "train" else 2**31 - 1

    @property
    def uses_real_images(self) -> bool:
        return self.pool is not None

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        if self.split == "train":
            return np.random.default_rng([_TRAIN_STREAM, self.seed, epoch, index])
        stream = _VAL_STREAM if self.split == "val" else _XVAL_STREAM
        return np.random.default_rng([stream, self.cfg.val_seed, index])

    def magnitude(self, rng: np.random.Generator, frames: int, matrix: tuple[int, int]) -> np.ndarray:
        """Step 2: magnitude frames ``[frames, ny, nx]`` in [0, 1]."""
        cfg = self.cfg
        use_phantom = self.pool is None or (self.split == "train" and rng.random() < cfg.phantom_fraction)
        if use_phantom:
            view = "sax" if rng.random() < 0.5 else "lax"
            mag = cine_phantom(frames, tuple(matrix), view, rng)
            if cfg.augment:
                mag = augment_series(mag, rng)
                if mag.shape[1:] != tuple(matrix):  # rotated by 90 degrees: fit back
                    mag = fit_to_matrix(mag, tuple(matrix))
        else:
            series = self.pool.frames(int(rng.integers(len(self.pool))))
            if cfg.augment:
                series = augment_series(series, rng)
            series = random_crop_fit(series, tuple(matrix), cfg.crop_scale, rng)
            mag = resample_cycle(series, frames)
        mag = np.ascontiguousarray(mag, dtype=np.float32)
        return mag / max(float(mag.max()), 1e-12)

    def acquisition(self, rng: np.random.Generator) -> Acquisition:
        """Step 1: R from the space for training, ``val_acceleration`` for validation."""
        return self.space.draw(rng, acceleration=None if self.split == "train" else self.cfg.val_acceleration)

    def sample(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        """Validation: sample ``index`` of the fixed set. Training: a variant of scene
        ``index // scene_reuse`` (the last scene is kept, so consecutive samples of one
        scene simulate it once): its own R and mask shift from the space and its own
        strip; everything depends only on ``(seed, epoch, index)``."""
        if self.split != "train":
            rng = self.rng(epoch, index)
            acq = self.acquisition(rng)
            return simulate_sample(self.cfg, self.magnitude(rng, acq.frames, acq.matrix), acq, rng, strip=False)
        scene = self.scene(epoch, index // self.cfg.scene_reuse)
        rng = np.random.default_rng([_TRAIN_STREAM, self.seed, epoch, index, 1])
        acq = replace(scene.acq, acceleration=int(rng.choice(self.space.accelerations)),
                      shifted_mask=bool(rng.random() < self.space.shifted_mask))
        return scene_sample(self.cfg, scene, acq, rng, strip=True)

    def scene(self, epoch: int, number: int) -> Scene:
        """Training scene ``number`` of ``epoch`` (simulated on first use, the last one kept)."""
        key = (epoch, number)
        if self._scene is None or self._scene[0] != key:
            rng = self.rng(epoch, number)
            acq = self.acquisition(rng)
            self._scene = (key, simulate_scene(self.cfg, self.magnitude(rng, acq.frames, acq.matrix), acq, rng))
        return self._scene[1]


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
    :func:`recon.pipeline.prepare` (readout oversampling removed). Maps: the file's
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
        from recon.pipeline import prepare

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
            gt = project_reference(gt, unit_maps(np.asarray(csm)), maps)
        item = _RawSlice(p.kspace.numpy(), p.mask.numpy(), maps, gt, int(s.acceleration))
        self._cache[entry] = item
        return item

    def sample(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        n = len(self.entries)
        if self.split == "val":
            item, rng = self._load(self.entries[index % n]), None
        else:
            perm = np.random.default_rng([_TRAIN_STREAM, self.seed, epoch, index // n]).permutation(n)
            item = self._load(self.entries[int(perm[index % n])])
            rng = np.random.default_rng([_TRAIN_STREAM, self.seed, epoch, index, 1])
        k, maps, target = item.k, item.maps, item.target
        if rng is not None:
            t, _, ny, nx = k.shape
            width = strip_width(self.cfg.pixels_per_sample, t, ny, nx)
            k, maps, target = readout_strip(k, maps, target, strip_start(target, width, rng), width)
        return _finish(k, item.mask, maps, target, item.acceleration)


def make_source(cfg: DataConfig, seed: int, split: str):
    """The sample source of ``cfg.source`` for ``split`` (:data:`SPLITS`); None when the
    source has no such split (raw files have no held-out-acquisition set: ``xval``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if cfg.source == "ismrmrd":
        return None if split == "xval" else RawFileSlices(cfg, seed, split)
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
