"""The reconstruction chain as objects: what the XML chain does, in-process.

:class:`SliceReconstructor` is the external gadget's core: one bucket (one slice)
in, ISMRMRD images out, through :mod:`recon.pipeline`. :class:`ChainAssembler`
plays the Gadgetron stages in front of it in ``xml_configs/crunet.xml``, as
Gadgetron's sources define them:

* :class:`NoiseAdjust` (NoiseAdjustGadget): pre-whitening with the stream's noise
  scan, or with the stored noise measurement the header depends on
  (:mod:`gadgets.dependencies`); the noise lines are consumed, and the stream's
  noise is stored under its measurement id for later streams;
* readout oversampling is removed inside the pipeline (``recon.kspace.to_recon_grid``),
  equivalent to RemoveROOversamplingGadget;
* :class:`SliceTrigger` (AcquisitionAccumulateTriggerGadget, ``trigger_dimension=slice``,
  no sorting): a bucket is sent when ``idx.slice`` changes from one acquisition to the
  next, and at the end of the stream; ``ACQ_LAST_IN_SLICE`` plays no part.

:class:`ChainSession` is assembler + reconstructor, synchronous (``crunet recon``);
``crunet serve`` runs the reconstructor in a worker thread of its own.

A slice that fails yields a :class:`ChainError` item (sent to clients as TEXT, and
under Gadgetron as the marker image of :func:`failure_image`) and the other slices
go on; nothing received is dropped silently: every acquisition is reconstructed,
named in an error, or counted as ignored (auxiliary lines) in ``ignored``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import ismrmrd
import numpy as np

from gadgets.bucket import Bucket, bucket_to_slice, split_for_bucket
from gadgets.dependencies import (NoiseRecord, NoiseStore, coil_labels, measurement_id, noise_dependency,
                                  noise_record, reorder_to_labels, whitening_from_covariance)
from gadgets.settings import GadgetSettings
from recon.errors import InputError
from recon.io import flags as F
from recon.io.header import encoding_info
from recon.io.images import check_index
from recon.noise import NOISE_SIGMA_KEY, noise_scale, sigma_from_noise_scan, whitened_sigma
from recon.pipeline import slice_to_images

log = logging.getLogger("crunet.chain")

#: Marker images of failed slices go to series ``series_index + FAILED_SERIES_OFFSET`` (mod 65536).
FAILED_SERIES_OFFSET = 1000


@dataclass(frozen=True)
class ChainError:
    """A failure to report to the client (as TEXT) without stopping the chain.

    slices : the slice indices the failure concerns (empty: not one slice's);
    acquisition : header of the failed bucket's first acquisition (geometry of the marker image).
    """

    message: str
    slices: tuple[int, ...] = ()
    acquisition: ismrmrd.AcquisitionHeader | None = field(default=None, compare=False, repr=False)


def failed_series_index(series_index: int) -> int:
    return (int(series_index) + FAILED_SERIES_OFFSET) % 65536


def failure_image(error: ChainError, encoding, series_index: int, image_index: int) -> ismrmrd.Image:
    """The marker image of a failed slice, for peers that accept no TEXT (Gadgetron 4).

    A zero magnitude image of the recon matrix in series ``series_index + 1000``,
    with the geometry and indices of the slice's first acquisition; its meta say
    ``CrunetStatus=failed``, ``CrunetError=<reason>`` and
    ``ImageComment=crunet FAILED slice N: <reason>``.
    """
    nx, ny = int(encoding.recon_matrix[0]), int(encoding.recon_matrix[1])
    acq = error.acquisition if error.acquisition is not None else ismrmrd.AcquisitionHeader()
    img = ismrmrd.Image.from_array(np.zeros((1, 1, ny, nx), np.float32), acquisition=acq,
                                   image_type=ismrmrd.IMTYPE_MAGNITUDE, image_index=image_index,
                                   image_series_index=failed_series_index(series_index), transpose=False)
    img.field_of_view[:] = tuple(np.float32(v) for v in encoding.recon_fov_mm)
    reason = error.message.split(": ", 2)[-1] if error.slices else error.message
    slices = ", ".join(map(str, error.slices)) or "?"
    img.attribute_string = ismrmrd.Meta({
        "DataRole": "Image",
        "ImageProcessingHistory": ["PYTHON", "CRUNET"],
        "ImageComment": f"crunet FAILED slice {slices}: {reason}"[:1000],
        "CrunetStatus": "failed",
        "CrunetError": reason[:1000],
        "Keep_image_geometry": 1,
    }).serialize()
    return img


def _bucket_slices(bucket: Bucket) -> tuple[int, ...]:
    return tuple(sorted({int(a.idx.slice) for a in list(bucket.data) + list(bucket.ref)}))


def _first_header(bucket: Bucket) -> ismrmrd.AcquisitionHeader | None:
    acqs = list(bucket.data) + list(bucket.ref)
    return ismrmrd.AcquisitionHeader.from_buffer_copy(bytes(acqs[0].getHead())) if acqs else None


def _slice_failure(bucket: Bucket, reason: str) -> ChainError:
    slices = _bucket_slices(bucket)
    return ChainError(f"crunet: slice {', '.join(map(str, slices))}: {reason}", slices, _first_header(bucket))


class SliceReconstructor:
    """Bucket -> images, with running image indices across slices."""

    def __init__(self, header: ismrmrd.xsd.ismrmrdHeader, settings: GadgetSettings = GadgetSettings()):
        self.header = header
        self.encoding = encoding_info(header, source="header")
        self.settings = settings
        self.config = settings.recon_config()
        self.next_index = 1
        self.failures = 0
        self.seconds: list[float] = []

    def bucket(self, bucket: Bucket, noise_sigma: float | None = None, number: bool = True) -> list[ismrmrd.Image]:
        """Reconstruct the slice in ``bucket``; raises InputError on bad data.

        ``noise_sigma`` : the k-space noise std of the data after the chain's noise
        adjustment (None: unknown, the methods estimate it from the data). ``number`` :
        give the images the series' next image indices; False leaves them numbered from 1
        for a later :meth:`number` (slices reconstructed side by side, numbered in the
        order they are sent)."""
        t0 = time.perf_counter()
        s = bucket_to_slice(bucket, self.encoding, self.header)
        if noise_sigma is not None:
            s.extra[NOISE_SIGMA_KEY] = noise_sigma
        images, _ = slice_to_images(s, self.config)
        self.seconds.append(time.perf_counter() - t0)
        log.info("slice %d: %d images in %.2f s (%s)", s.slice_index, len(images), self.seconds[-1],
                 self.config.method)
        return self.number(images) if number else images

    def number(self, images: list[ismrmrd.Image]) -> list[ismrmrd.Image]:
        """Give ``images`` the series' next image indices, in order."""
        check_index("image_index", self.next_index + len(images) - 1)
        for i, im in enumerate(images):
            im.image_index = self.next_index + i
        self.next_index += len(images)
        return images

    def safe_number(self, images: list[ismrmrd.Image], bucket: Bucket) -> list:
        """Like :meth:`number`, but a failure (image indices used up) becomes a :class:`ChainError` item."""
        try:
            return self.number(images)
        except InputError as exc:
            log.error("slice %s: %s", list(_bucket_slices(bucket)), exc)
            return [_slice_failure(bucket, str(exc))]

    def safe_bucket(self, bucket: Bucket, noise_sigma: float | None = None, number: bool = True) -> list:
        """Like :meth:`bucket`, but a failure becomes a :class:`ChainError` item."""
        slices = list(_bucket_slices(bucket))
        try:
            return self.bucket(bucket, noise_sigma, number)
        except InputError as exc:
            log.error("slice %s: %s", slices, exc)
            reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure of one slice is reported, others go on
            log.exception("slice %s failed", slices)
            reason = f"internal error: {type(exc).__name__}: {exc}"
        return [_slice_failure(bucket, reason)]

    def failure_image(self, error: ChainError) -> ismrmrd.Image:
        """The marker image of ``error`` (see :func:`failure_image`), numbered in its own series."""
        self.failures += 1
        return failure_image(error, self.encoding, self.settings.series_index, self.failures)


class NoiseAdjust:
    """NoiseAdjustGadget: whiten with the stream's noise scan or a stored noise dependency.

    With ``enabled`` False nothing is whitened, loaded or stored; the stream's noise
    scan still gives the noise level of the data.
    """

    def __init__(self, header, enabled: bool = True, store: NoiseStore | None = None):
        self.enabled = enabled
        self.store = store if enabled else None
        self.own_id = measurement_id(header)
        self.labels = coil_labels(header)
        self._noise: list[np.ndarray] = []
        self._dwell = 0.0
        self._stored = False
        self._whiten: np.ndarray | None = None
        self.loaded: NoiseRecord | None = None
        self.source = "none"
        dependency = noise_dependency(header)
        if self.store is not None and dependency:
            record = self.store.get(dependency)
            if record is None:
                log.warning("noise dependency '%s' is not stored; using the stream's noise scan, if any", dependency)
            else:
                self.loaded = reorder_to_labels(record, self.labels)
                self.source = f"stored noise dependency '{dependency}'"

    def noise(self, acq: ismrmrd.Acquisition) -> None:
        """A noise line: gathered, unless a stored dependency is in use (then ignored, as Gadgetron)."""
        if self.loaded is None:
            self._noise.append(np.array(acq.data, dtype=np.complex64))
            self._dwell = acq.sample_time_us

    @property
    def has_noise(self) -> bool:
        return self.loaded is not None or bool(self._noise)

    def record(self) -> NoiseRecord:
        """The noise in use (InputError if the stream's noise scan cannot make one)."""
        return self.loaded if self.loaded is not None else noise_record(self._noise, self._dwell, self.labels)

    def store_own(self) -> None:
        """Store the stream's own noise scan under its measurement id (once, when there is one)."""
        if self._stored or self.store is None or self.loaded is not None or not self._noise:
            return
        self._stored = True
        if not self.own_id:
            log.info("noise scan not stored: the header has no measurementID")
            return
        try:
            self.store.put(self.own_id, self.record())
        except InputError as exc:
            log.warning("noise scan of '%s' not stored: %s", self.own_id, exc)

    def matrix(self) -> np.ndarray | None:
        """The whitening matrix, or None (no noise, or switched off); InputError if unusable."""
        if self._whiten is None and self.enabled and self.has_noise:
            if self.source == "none":
                self.source = "the stream's noise scan"
            self._whiten = whitening_from_covariance(self.record().covariance)
        return self._whiten

    def drop(self) -> None:
        """Give up on noise adjustment (after an unusable noise scan)."""
        self._noise, self.loaded, self.enabled = [], None, False

    @property
    def dwell_us(self) -> float:
        return self.loaded.dwell_us if self.loaded is not None else self._dwell

    def sigma(self, acq: ismrmrd.Acquisition, whitened: bool) -> float | None:
        """k-space noise std of the imaging data as they leave noise adjustment: known
        after whitening (:func:`recon.noise.whitened_sigma`), from the noise scan when
        there is one but no whitening, else None (estimated from the data later)."""
        if whitened:
            return whitened_sigma(acq.sample_time_us, self.dwell_us)
        if not self._noise:
            return None
        try:
            return sigma_from_noise_scan(np.concatenate(self._noise, axis=1), self._dwell, acq.sample_time_us)
        except InputError as exc:
            log.warning("noise scan gives no noise level (%s); it is estimated from the data", exc)
            return None

    def apply(self, acq: ismrmrd.Acquisition, w: np.ndarray) -> ChainError | None:
        if acq.data.shape[0] != w.shape[0]:
            return ChainError(f"crunet: acquisition {acq.scan_counter} has {acq.data.shape[0]} channels, "
                              f"the noise scan {w.shape[0]}; acquisition not reconstructed")
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite data are refused per slice later
            acq.data[:] = noise_scale(acq.sample_time_us, self.dwell_us) * (w @ acq.data)
        return None


class SliceTrigger:
    """AcquisitionAccumulateTriggerGadget with ``trigger_dimension=slice`` and no sorting.

    Every non-noise acquisition goes into the one open bucket; before adding one whose
    ``idx.slice`` differs from the previous acquisition's, the open bucket is sent.
    :meth:`flush` sends what is left at the end of the stream.
    """

    def __init__(self):
        self._open: list[ismrmrd.Acquisition] = []
        self._previous: int | None = None

    def add(self, acq: ismrmrd.Acquisition, keep: bool = True) -> list[list[ismrmrd.Acquisition]]:
        """Take one acquisition (``keep`` False: it counts for the trigger but is not kept)."""
        s = int(acq.idx.slice)
        out = self.flush() if self._previous is not None and s != self._previous else []
        self._previous = s
        if keep:
            self._open.append(acq)
        return out

    def flush(self) -> list[list[ismrmrd.Acquisition]]:
        out, self._open = ([self._open] if self._open else []), []
        return out

    def open_slices(self) -> list[int]:
        """Slice indices in the bucket not yet sent."""
        return sorted({int(a.idx.slice) for a in self._open})


class ChainAssembler:
    """Noise adjust -> accumulate and trigger per slice: acquisitions in, buckets (or errors) out."""

    def __init__(self, header, settings: GadgetSettings = GadgetSettings(), store: NoiseStore | None = None):
        self.noise = NoiseAdjust(header, settings.noise_adjust, store)
        self.trigger = SliceTrigger()
        self.noise_sigma: float | None = None
        self._sigma_known = False  # noise level of the data decided (at the first imaging line)
        self.ignored = 0
        self.received = 0

    def acquisition(self, acq: ismrmrd.Acquisition) -> list:
        """Take one acquisition; returns the buckets (and errors) it completes."""
        self.received += 1
        fl = np.uint64(acq.flags)
        if F.has(fl, F.NOISE):
            self.noise.noise(acq)
            return []
        self.noise.store_own()
        if F.has(fl, F.NON_IMAGING):  # counts for the trigger, not reconstructed
            self.ignored += 1
            return self._add(acq, keep=False)
        out: list = []
        try:
            w = self.noise.matrix()
        except InputError as exc:
            self.noise.drop()
            w = None
            out.append(ChainError(f"crunet: noise scan unusable, continuing without noise adjustment: {exc}"))
        if not self._sigma_known:
            self.noise_sigma = self.noise.sigma(acq, whitened=w is not None)
            self._sigma_known = True
            log.info("noise adjustment: %s", self.noise.source if w is not None else "none")
        err = self.noise.apply(acq, w) if w is not None else None
        if err is not None:
            return out + [err] + self._add(acq, keep=False)
        return out + self._add(acq, keep=True)

    def _add(self, acq: ismrmrd.Acquisition, keep: bool) -> list:
        return [split_for_bucket(b) for b in self.trigger.add(acq, keep=keep)]

    def close(self) -> list:
        """End of stream: the open bucket, if any."""
        self.noise.store_own()
        return [split_for_bucket(b) for b in self.trigger.flush()]


class ChainSession:
    """:class:`ChainAssembler` + :class:`SliceReconstructor`, synchronous (``crunet recon``)."""

    def __init__(self, header: ismrmrd.xsd.ismrmrdHeader, settings: GadgetSettings = GadgetSettings(),
                 store: NoiseStore | None = None):
        self.recon = SliceReconstructor(header, settings)
        self.assembler = ChainAssembler(header, settings, store)
        self.settings = settings

    @property
    def received(self) -> int:
        return self.assembler.received

    @property
    def ignored(self) -> int:
        return self.assembler.ignored

    def _run(self, items: list) -> list:
        out = []
        for item in items:
            if isinstance(item, Bucket):
                out += self.recon.safe_bucket(item, noise_sigma=self.assembler.noise_sigma)
            else:
                out.append(item)
        return out

    def acquisition(self, acq: ismrmrd.Acquisition) -> list:
        """Take one acquisition; returns images/errors of a slice it completes."""
        return self._run(self.assembler.acquisition(acq))

    def close(self) -> list:
        """End of stream: reconstruct the slice still open."""
        return self._run(self.assembler.close())
