"""Training and validation samples: simulated on the fly, or read from ISMRMRD files.

The sample sources, one per split (:data:`SPLITS`), each with ``sample(epoch, index)``
giving a sample dict (:mod:`recon.train.samples`, which also tells how a simulated
sample is made):

- :class:`SimulatedCine`: on-the-fly simulated samples. It draws the acquisition from
  the split's acquisition space (step 1) and the magnitude frames from the real series
  of the split's patients (:mod:`recon.train.series`) or the phantom (step 2), and hands
  them to :mod:`recon.train.samples` (steps 3-7); training samples come from *scenes*
  reused ``scene_reuse`` times, the last scene kept;
- :class:`RawFileSlices`: slices of ISMRMRD raw files with a ``ground_truth`` reference.

:func:`make_source` picks one by ``data.source``. Then the loader: one epoch of one
rank as a map-style dataset (:class:`EpochView`, :func:`global_index` for the
sharding), batches (:func:`collate`, :func:`epoch_loader`) and the fixed validation
set (:func:`validation_set`).

Reproducibility: a training sample depends only on ``(seed, epoch, index)``, a
validation sample only on ``(val_seed, i)`` and its set, whatever the process, worker or
rank that makes it.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recon.errors import InputError
from recon.simulate.acquisition import Acquisition, AcquisitionSpace
from recon.simulate.cine import resample_cycle
from recon.simulate.phantom import cine_phantom
from recon.simulate.realdata import fit_to_matrix
from recon.train.config import DataConfig
from recon.train.samples import (KEYS, Scene, augment_series, deform_series, finish_sample, move_along_y,
                                 project_reference, random_crop_fit, readout_strip, scene_sample, simulate_sample,
                                 simulate_scene, strip_start, strip_width, unit_maps)
from recon.train.series import SeriesPool, split_series

_TRAIN_STREAM, _VAL_STREAM, _XVAL_STREAM = 0, 1, 2

#: Sample sources by split: ``train`` (training samples), ``val`` (held-out patients,
#: training acquisitions), ``xval`` (held-out patients, held-out acquisitions).
SPLITS = ("train", "val", "xval")


# ---------------------------------------------------------------------------
# sample sources


class SimulatedCine:
    """On-the-fly simulated samples (:mod:`recon.train.samples`) of one split (:data:`SPLITS`).

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
                if self.split == "train":  # validation sets stay those of every other run
                    series = deform_series(series, rng, cfg.deform)
            series = random_crop_fit(series, tuple(matrix), cfg.crop_scale, rng,
                                     seam_rows=cfg.seam_rows if cfg.augment else 0)
            mag = resample_cycle(series, frames)
        if cfg.augment:
            mag = move_along_y(mag, rng)
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
        acq = self.space.vary_mask(scene.acq, rng)
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
    noise: float  # per-coil k-space noise std as inference measures it (recon.problem.weighting_noise_level)


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
        from recon.problem import weighting_noise_level

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
        item = _RawSlice(p.kspace.numpy(), p.mask.numpy(), maps, gt, int(s.acceleration),
                         weighting_noise_level(p))
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
        return finish_sample(k, item.mask, maps, target, item.acceleration, item.noise)


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
