"""The reconstruction chain as one object: what the XML chain does, in-process.

:class:`SliceReconstructor` is the external gadget's core: one bucket (one slice)
in, ISMRMRD images out, through :mod:`recon.pipeline`. :class:`ChainSession`
plays the whole chain of ``xml_configs/crunet.xml`` for the standalone server and
``crunet recon``: noise adjustment (pre-whitening with the noise scan),
accumulation per slice and a trigger when a slice is complete
(``ACQ_LAST_IN_SLICE``, or at the end of the stream), then the same
:class:`SliceReconstructor`. Readout oversampling is removed inside the
pipeline (``recon.kspace.to_recon_grid``), equivalent to RemoveROOversamplingGadget.

A slice that fails yields a :class:`ChainError` item (sent to clients as a TEXT
message) and the other slices go on; nothing received is dropped silently: every
acquisition is either reconstructed, or named in an error, or counted as ignored
(auxiliary lines) in :attr:`ChainSession.ignored`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import ismrmrd
import numpy as np

from gadgets.bucket import Bucket, bucket_to_slice, split_for_bucket
from gadgets.settings import GadgetSettings
from recon.errors import InputError
from recon.io import flags as F
from recon.io.header import encoding_info
from recon.noise import NOISE_SIGMA_KEY, noise_scale, sigma_from_noise_scan, whitened_sigma, whitening_matrix
from recon.pipeline import slice_to_images

log = logging.getLogger("crunet.chain")


@dataclass(frozen=True)
class ChainError:
    """A failure to report to the client (as TEXT) without stopping the chain."""

    message: str


class SliceReconstructor:
    """Bucket -> images, with running image indices across slices."""

    def __init__(self, header: ismrmrd.xsd.ismrmrdHeader, settings: GadgetSettings = GadgetSettings()):
        self.header = header
        self.encoding = encoding_info(header, source="header")
        self.settings = settings
        self.config = settings.recon_config()
        self.next_index = 1
        self.seconds: list[float] = []
        #: k-space noise std of the data after the chain's noise adjustment (None: unknown,
        #: the methods estimate it from the data)
        self.noise_sigma: float | None = None

    def bucket(self, bucket: Bucket) -> list[ismrmrd.Image]:
        """Reconstruct the slice in ``bucket``; raises InputError on bad data."""
        t0 = time.perf_counter()
        s = bucket_to_slice(bucket, self.encoding, self.header)
        if self.noise_sigma is not None:
            s.extra[NOISE_SIGMA_KEY] = self.noise_sigma
        images, _ = slice_to_images(s, self.config, start_index=self.next_index)
        self.next_index += len(images)
        self.seconds.append(time.perf_counter() - t0)
        log.info("slice %d: %d images in %.2f s (%s)", s.slice_index, len(images), self.seconds[-1],
                 self.config.method)
        return images

    def safe_bucket(self, bucket: Bucket) -> list:
        """Like :meth:`bucket`, but a failure becomes a :class:`ChainError` item."""
        slices = sorted({int(a.idx.slice) for a in list(bucket.data) + list(bucket.ref)})
        try:
            return self.bucket(bucket)
        except InputError as exc:
            log.error("slice %s: %s", slices, exc)
            return [ChainError(f"crunet: slice {', '.join(map(str, slices))}: {exc}")]
        except Exception as exc:  # noqa: BLE001 - any failure of one slice is reported, others go on
            log.exception("slice %s failed", slices)
            return [ChainError(f"crunet: slice {', '.join(map(str, slices))}: internal error: "
                               f"{type(exc).__name__}: {exc}")]


class ChainSession:
    """Noise adjust -> accumulate per slice -> trigger -> :class:`SliceReconstructor`."""

    def __init__(self, header: ismrmrd.xsd.ismrmrdHeader, settings: GadgetSettings = GadgetSettings()):
        self.recon = SliceReconstructor(header, settings)
        self.settings = settings
        self._noise: list[np.ndarray] = []
        self._noise_dwell = 0.0
        self._whiten: np.ndarray | None = None
        self._noise_usable = settings.noise_adjust
        self._sigma_known = False  # noise level of the data decided (at the first imaging line)
        self._pending: dict[int, list[ismrmrd.Acquisition]] = {}
        self.ignored = 0
        self.received = 0

    def _noise_matrix(self) -> np.ndarray | None:
        if self._whiten is None and self._noise and self._noise_usable:
            self._whiten = whitening_matrix(np.concatenate(self._noise, axis=1))
        return self._whiten

    def _data_noise_sigma(self, acq: ismrmrd.Acquisition, whitened: bool) -> float | None:
        """k-space noise std of the imaging data as they leave noise adjustment: known
        after whitening (:func:`recon.noise.whitened_sigma`), from the noise scan when
        there is one but no whitening, else None (estimated from the data later)."""
        if whitened:
            return whitened_sigma(acq.sample_time_us, self._noise_dwell)
        if not self._noise:
            return None
        try:
            return sigma_from_noise_scan(np.concatenate(self._noise, axis=1), self._noise_dwell, acq.sample_time_us)
        except InputError as exc:
            log.warning("noise scan gives no noise level (%s); it is estimated from the data", exc)
            return None

    def acquisition(self, acq: ismrmrd.Acquisition) -> list:
        """Take one acquisition; returns images/errors of a slice it completes."""
        self.received += 1
        fl = np.uint64(acq.flags)
        if F.has(fl, F.NOISE):
            self._noise.append(np.array(acq.data, dtype=np.complex64))
            self._noise_dwell = acq.sample_time_us
            return []
        if F.has(fl, F.NON_IMAGING):
            self.ignored += 1
            return []
        try:
            w = self._noise_matrix()
        except InputError as exc:
            self._noise, self._noise_usable = [], False
            self._pending.setdefault(int(acq.idx.slice), []).append(acq)
            return [ChainError(f"crunet: noise scan unusable, continuing without noise adjustment: {exc}")]
        if not self._sigma_known:
            self.recon.noise_sigma = self._data_noise_sigma(acq, whitened=w is not None)
            self._sigma_known = True
        if w is not None:
            if acq.data.shape[0] != w.shape[0]:
                return [ChainError(f"crunet: acquisition {acq.scan_counter} has {acq.data.shape[0]} channels, "
                                   f"the noise scan {w.shape[0]}; acquisition not reconstructed")]
            scale = noise_scale(acq.sample_time_us, self._noise_dwell)
            acq.data[:] = scale * (w @ acq.data)
        s = int(acq.idx.slice)
        self._pending.setdefault(s, []).append(acq)
        if F.has(fl, F.LAST_IN_SLICE):
            return self._trigger(s)
        return []

    def _trigger(self, s: int) -> list:
        acqs = self._pending.pop(s)
        return self.recon.safe_bucket(split_for_bucket(acqs))

    def close(self) -> list:
        """End of stream: reconstruct every slice still pending."""
        out = []
        for s in sorted(self._pending):
            out += self._trigger(s)
        return out
