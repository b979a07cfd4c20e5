"""Stored noise dependencies and Gadgetron's dependency query, as ``crunet serve`` plays them.

How Gadgetron 4 does it (read in its sources, gadgets/mri_core/NoiseAdjustGadget.cpp and
dependencyquery/NoiseSummaryGadget.cpp, DependencyQueryWriter.cpp, and
apps/clients/gadgetron_ismrmrd_client):

* **Storing.** NoiseAdjustGadget gathers the noise lines of a stream
  (``ACQ_IS_NOISE_MEASUREMENT``) into the coil covariance ``sum(n n^H) / (N - 1)`` and
  stores it, with the noise dwell time and the coil labels, under the stream's
  ``measurementInformation/measurementID``: at the first imaging line, or at the end
  of a noise-only stream (a separate noise measurement, usually replayed with
  ``-c default_measurement_dependencies.xml``).
* **Using.** A stream whose header lists a ``measurementDependency`` of type ``Noise``
  loads the stored covariance of that measurement id and whitens with it; its own
  noise lines are then ignored. Nothing stored: the stream's own noise lines are used.
* **Querying.** Before replaying such a file, the stock client opens a separate
  connection, sends a CONFIG_SCRIPT whose chain is NoiseSummaryGadget (property
  ``noise_file`` = ``GadgetronNoiseCovarianceMatrix_<id>``) + DependencyQueryWriter,
  then CLOSE, and accepts only message 1019 back: ``uint64`` length + an ISMRMRD Meta
  XML with ``status`` ``success`` or ``failed``, and on success
  ``noise_dwell_time_us``, ``min_sigma``, ``max_sigma``, ``mean_sigma`` and ``channels``
  (sigma of a coil = sqrt of its covariance diagonal). Anything else aborts it.

One deliberate difference: Gadgetron's ``mean_sigma`` is the *sum* of the coil sigmas
(NoiseSummaryGadget never divides); here it is their mean. The client only prints it.

The store lives in the server process (:class:`NoiseStore`, bounded, newest kept);
a restart forgets it, and the stock client then prints its "Dependent noise
measurement not found" warning and the data's own noise scan is used, as in Gadgetron.
"""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass

import ismrmrd
import numpy as np

from recon.errors import InputError

log = logging.getLogger("crunet.dependencies")

#: Prefix of the ``noise_file`` property the stock client sends (Gadgetron strips it).
LEGACY_PREFIX = "GadgetronNoiseCovarianceMatrix_"
#: Chains of Gadgetron's own that only store a noise measurement (NoiseAdjustGadget alone).
NOISE_CHAIN_NAMES = ("default_measurement_dependencies.xml", "default_measurement_dependencies_ismrmrd_storage.xml")


@dataclass(frozen=True)
class NoiseRecord:
    """A stored noise measurement: coil covariance ``[c, c]`` (normalised by N - 1)."""

    covariance: np.ndarray
    dwell_us: float
    samples: int
    labels: tuple[str, ...] = ()

    @property
    def channels(self) -> int:
        return int(self.covariance.shape[0])

    def sigmas(self) -> np.ndarray:
        """Per-coil noise std: sqrt of the covariance diagonal."""
        return np.sqrt(np.maximum(np.real(np.diag(self.covariance)), 0.0))


def noise_record(noise: list[np.ndarray], dwell_us: float, labels: tuple[str, ...] = ()) -> NoiseRecord:
    """The record of noise lines ``[c, n]`` each; InputError if they cannot make a covariance."""
    if not noise:
        raise InputError("no noise lines")
    channels = {n.shape[0] for n in noise}
    if len(channels) != 1:
        raise InputError(f"noise lines with different channel counts {sorted(channels)}")
    samples = np.concatenate(noise, axis=1).astype(np.complex128)
    if not np.isfinite(samples).all():
        raise InputError("noise scan contains NaN or infinite samples")
    n = samples.shape[1]
    if n < 2:
        raise InputError("noise scan has fewer than 2 samples")
    covariance = (samples @ samples.conj().T) / (n - 1)
    return NoiseRecord(covariance, float(dwell_us), int(n), tuple(labels) if len(labels) == samples.shape[0] else ())


def whitening_from_covariance(covariance: np.ndarray) -> np.ndarray:
    """``W = L^-1`` (complex64) with ``covariance = L L^H``: white, unit-variance noise after ``W y``."""
    try:
        chol = np.linalg.cholesky(np.asarray(covariance, dtype=np.complex128))
    except np.linalg.LinAlgError:
        raise InputError("noise covariance is not positive definite (dead or duplicated channel?)") from None
    return np.linalg.inv(chol).astype(np.complex64)


def reorder_to_labels(record: NoiseRecord, labels: tuple[str, ...]) -> NoiseRecord:
    """The record with its channels in the order of ``labels`` (the data's coil names).

    As NoiseAdjustGadget: same names in another order are reordered; anything else
    (other names, other counts, no labels) is used as stored.
    """
    if not record.labels or tuple(labels) == record.labels or sorted(labels) != sorted(record.labels):
        return record
    order = [record.labels.index(name) for name in labels]
    cov = record.covariance[np.ix_(order, order)]
    return NoiseRecord(cov, record.dwell_us, record.samples, tuple(labels))


class NoiseStore:
    """Noise records by measurement id, thread-safe, at most ``capacity`` (oldest dropped)."""

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._items: OrderedDict[str, NoiseRecord] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, measurement_id: str, record: NoiseRecord) -> None:
        with self._lock:
            self._items.pop(measurement_id, None)
            self._items[measurement_id] = record
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        log.info("noise dependency '%s' stored: %d channels, %d samples, dwell %g us",
                 measurement_id, record.channels, record.samples, record.dwell_us)

    def get(self, measurement_id: str) -> NoiseRecord | None:
        with self._lock:
            return self._items.get(measurement_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


# ----------------------------------------------------------------- header fields


def measurement_id(header) -> str:
    info = getattr(header, "measurementInformation", None)
    return str(getattr(info, "measurementID", None) or "").strip() if info is not None else ""


def noise_dependency(header) -> str:
    """The measurement id of the header's ``Noise`` dependency ('' when none), case-insensitive as Gadgetron."""
    info = getattr(header, "measurementInformation", None)
    for dep in getattr(info, "measurementDependency", None) or []:
        if str(dep.dependencyType or "").strip().lower() == "noise" and dep.measurementID:
            return str(dep.measurementID).strip()
    return ""


def coil_labels(header) -> tuple[str, ...]:
    system = getattr(header, "acquisitionSystemInformation", None)
    return tuple(str(c.coilName or "") for c in (getattr(system, "coilLabel", None) or []))


# ----------------------------------------------------------------- the query


def summary_meta(record: NoiseRecord | None) -> str:
    """The Meta XML of a 1019 reply: ``status`` failed, or success with the noise statistics."""
    meta = ismrmrd.Meta()
    if record is None:
        meta["status"] = "failed"
        return meta.serialize()
    sig = record.sigmas()
    meta["noise_dwell_time_us"] = f"{record.dwell_us:.9g}"
    meta["min_sigma"] = f"{float(sig.min()):.9g}"
    meta["max_sigma"] = f"{float(sig.max()):.9g}"
    meta["mean_sigma"] = f"{float(sig.mean()):.9g}"
    meta["channels"] = str(record.channels)
    meta["status"] = "success"
    return meta.serialize()


def _local(tag: str) -> str:
    """Tag without its XML namespace (the stock client's chain uses Gadgetron's)."""
    return tag.rsplit("}", 1)[-1]


def _property(gadget: ET.Element, wanted: str) -> str | None:
    """A gadget property in either chain format: ``<property name= value=/>`` or ``<name>/<value>`` children."""
    for prop in gadget:
        if _local(prop.tag) != "property":
            continue
        pname = prop.get("name")
        value = prop.get("value")
        for child in prop:
            if _local(child.tag) == "name":
                pname = (child.text or "").strip()
            elif _local(child.tag) == "value":
                value = child.text or ""
        if pname == wanted:
            return (value or "").strip()
    return None


def _gadgets(root: ET.Element) -> list[tuple[str, ET.Element]]:
    """``(classname, element)`` of every gadget in a chain of either format."""
    out = []
    for el in root.iter():
        if _local(el.tag) != "gadget":
            continue
        cls = el.get("classname") or next((c.text or "" for c in el if _local(c.tag) == "classname"), "")
        out.append((cls.strip(), el))
    return out


def parse_chain(chain_xml: str | bytes, source: str) -> ET.Element:
    try:
        return ET.fromstring(chain_xml)
    except ET.ParseError as exc:
        raise InputError(f"{source}: not valid XML ({exc})") from None


def query_target(root: ET.Element) -> str | None:
    """For a dependency-query chain (a NoiseSummaryGadget in it): the measurement id it asks for, else None."""
    for cls, el in _gadgets(root):
        if cls == "NoiseSummaryGadget":
            target = _property(el, "noise_file") or ""
            return target[len(LEGACY_PREFIX):] if target.startswith(LEGACY_PREFIX) else target
    return None


def is_noise_chain(root: ET.Element) -> bool:
    """A chain that only adjusts noise (NoiseAdjustGadget and no external gadget): it stores a noise measurement."""
    has_external = any(_local(el.tag) == "external" for el in root.iter())
    return not has_external and any(cls == "NoiseAdjustGadget" for cls, _ in _gadgets(root))
